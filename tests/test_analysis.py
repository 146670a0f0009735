"""Exact rule analysis: each finding is decided by z3 and its witness confirmed by `evaluate`."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import re2
from hypothesis import given, settings
from hypothesis import strategies as st

from hdrpolicy import ir, resyntax
from hdrpolicy.analysis import analyse
from hdrpolicy.budget import DEFAULT_STEPS
from hdrpolicy.diagnostics import Diagnostic, Severity, Source
from hdrpolicy.evaluate import evaluate, fires
from hdrpolicy.pipeline import check_source
from hdrpolicy.regular import Algebra, Re, Unsupported

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "policies"

THREE = """\
policy "three"

deny 403 "admins" when path starts_with "/admin"
deny 403 "admins" when path starts_with "/admin/"
deny 401 "who" when header a == "x" and header a == "y"
deny 404 "gone" when path == "/old"
deny 404 "gone" when path == "/old" or path == "/older"
"""


def _analyse(text: str, steps: int = 10**6) -> tuple[ir.Policy, list[Diagnostic]]:
    checked = check_source(Source("t.hp", text), "t")
    assert checked.policy is not None and checked.ok, checked.diagnostics
    return checked.policy, analyse(checked.policy, checked.source, steps)


def _witness(d: Diagnostic) -> list[tuple[bytes, bytes]]:
    """Re-read the witness from the note: `METHOD PATH (host H; name: "v", …)`."""
    note = next(n for n in d.notes if n.startswith("witness: "))
    m = re.match(r"witness: (\S+) (\S+) \(host (\S+); (.*?)\) is ", note)
    assert m, note
    headers = [
        (b":method", m[1].encode()),
        (b":path", m[2].encode()),
        (b":authority", m[3].encode()),
    ]
    if m[4] != "no headers":
        for name, value in re.findall(r'([\w-]+): "([^"\\]*)"', m[4]):
            headers.append((name.encode(), value.encode()))
    return headers


def test_shadowed_contradictory_and_redundant_get_exactly_three_warnings() -> None:
    policy, found = _analyse(THREE)
    assert [(d.code, d.span.line) for d in found] == [("HP401", 4), ("HP402", 5), ("HP403", 6)]
    shadowed, contradiction, redundant = found
    assert "line 3" in shadowed.message
    assert (
        contradiction.message == 'condition is always false: `header a == "x" and header a == "y"`'
    )
    # Every witness is a request the reference evaluator decides as the finding says.
    decision = evaluate(policy, _witness(shadowed))
    assert decision.rule is policy.rules[0]
    decision = evaluate(policy, _witness(redundant))
    assert decision.rule is policy.rules[3]
    without = policy.model_copy(
        update={"rules": [r for r in policy.rules if r is not policy.rules[3]]}
    )
    assert evaluate(without, _witness(redundant)).status == 404


def test_allow_that_makes_a_deny_partly_dead() -> None:
    policy, found = _analyse(
        'allow when method == "OPTIONS"\ndeny 401 "creds" when not header authorization exists\n'
    )
    # One note, on the allow, naming the deny it overrides; not a warning.
    [finding] = found
    assert (finding.code, finding.span.line, finding.severity) == ("HP404", 1, Severity.NOTE)
    assert "deny rule at line 2 " in finding.message
    decision = evaluate(policy, _witness(finding))
    assert decision.allowed and decision.rule is policy.rules[0]
    assert fires(policy.rules[1], decision.values, [])


@pytest.mark.parametrize(
    ("condition", "value"),
    [
        ('path starts_with "/a" and path == "/b"', "false"),
        ('header a matches "x^y"', "false"),  # `^` after a character never holds
        (r'header a matches "\\bx\\Bx"', None),
        (r'header a matches "^\\b" and header a matches "^[^a-z0-9_A-Z]"', "false"),
        (r'header a matches "(?m)a$b"', "false"),  # a value never holds a newline
        ('header a matches "^$" and header a contains "q"', "false"),
        ("header a exists or not header a exists", "true"),
        ('host == "a" and host == "A" ignoring case', None),
        ('method == "GET" and method == "put" ignoring case', "false"),
        ('path matches "[?]"', "false"),  # the path never holds its query string
        ('header a == "x" ignoring case and header a == "X"', None),
        ('header a starts_with "ab" and header a ends_with "ba" and header a == "aba"', None),
        ('header a == "ab" ignoring case and header a starts_with "A"', None),
        (
            'header a starts_with "x" ignoring case and not header a starts_with "x" '
            'and not header a starts_with "X"',
            "false",
        ),
        ('header a contains "bc" and not header a contains "b"', "false"),
        ('header a in ["x", "y"] and header a not in ["x"] and header a != "y"', "false"),
        ('path ends_with "/" or not path ends_with "/"', "true"),
        (r'header a matches "[^\\d\\D]"', "false"),  # a class no character is in
        ('host contains "a" and host == "b"', "false"),
        ('method == ""', "false"),
        ('header a == "" and header a exists', None),
        ('header a matches "^ "', "false"),  # values are trimmed
    ],
)
def test_constant_conditions(condition: str, value: str | None) -> None:
    _, found = _analyse(f"deny 403 when {condition}\ndeny 401 when header b exists\n")
    codes = [d for d in found if d.code == "HP402"]
    if value is None:
        assert codes == []
    else:
        assert [d.message.split(":")[0] for d in codes] == [f"condition is always {value}"]


def test_examples_have_no_surprising_findings() -> None:
    text = (EXAMPLES / "header-authorization.hp").read_text()
    assert _analyse(text)[1] == []


def test_a_spent_budget_is_one_unknown_at_the_rule_where_it_stopped() -> None:
    policy, found = _analyse(THREE, steps=0)
    [stop] = found
    assert stop.code == "HP405" and stop.span == policy.rules[0].span
    assert "budget of 0 steps is spent" in stop.message
    assert stop.help is not None and "--budget" in stop.help
    # A budget that covers the first rules keeps their findings and names the rule it stopped at.
    for steps in range(1, 400):
        _, found = _analyse(THREE, steps=steps)
        if [d.code for d in found] == ["HP401", "HP402", "HP405"]:
            assert found[-1].span.line == 6 and "budget" in found[-1].message
            break
    else:
        raise AssertionError("no budget stops between the findings")


PATTERNS = st.sampled_from(
    [
        "^/api/",
        "bot",
        "^a+b?$",
        "(?i)curl",
        "[0-9]{2,3}",
        "x|y",
        ".",
        "^$",
        "(?i)[k-m]",
        r"\d+\.x",
        "[^a-c]z",
        "a{2,}",
        "(a|b)*c",
        "^(?:ab|c)+$",
        r"\w\s\W",
        "[a\\-]",
        # Assertions anywhere, in context.
        r"\bab\b",
        r"\Bb",
        r"a\b",
        r"\b",
        r"\B",
        "x^y",
        "(^a|b$)",
        "a$|^b",
        r"(?m)^a$",
        r"(?m)a$\n^b",
        r"\Aa|b\z",
        r"(\ba|b\b){1,3}",
        r"(?:a\b)?b",
        # Flags, groups and escapes.
        "(?s)a.b",
        "a.b",
        "(?i:A)b",
        "a(?i)B|c",
        "(?P<n>ab)+",
        "(?<n>a)b",
        "[[:alpha:]]+",
        "[[:^digit:]]",
        r"\Qa.b\E",
        r"\141",
        r"\x61\x{62}",
        "a{3,5}",
        "(ab){2}",
        "a*?b+?",
        "(?U)a+",
        r"[\d-]",
    ]
)
ALPHABET = st.text(st.sampled_from("abAB_kK01 .-\n\u212a\u017f"), max_size=6)


def _search(pattern: str) -> tuple[Algebra, Re]:
    node = resyntax.parse(pattern)
    assert not isinstance(node, resyntax.Untranslatable), node
    alg = Algebra()
    return alg, alg.search(node)


@settings(max_examples=1500, derandomize=True, deadline=None)
@given(PATTERNS, ALPHABET)
def test_regular_terms_agree_with_re2(pattern: str, text: str) -> None:
    """The terms the analysis decides with mean what RE2 (the evaluator) means."""
    alg, term = _search(pattern)
    assert alg.accepts(term, text) == (re2.search(pattern, text) is not None)


def test_large_repetitions_are_translated_without_unrolling() -> None:
    alg, term = _search("^a{1000}$")
    assert alg.accepts(term, "a" * 1000) and not alg.accepts(term, "a" * 999)
    alg, term = _search("^(ab){2,1000}$")
    assert alg.accepts(term, "ab" * 600) and not alg.accepts(term, "ab" * 1001)


def _untranslatable(pattern: str) -> str:
    node = resyntax.parse(pattern)
    if isinstance(node, resyntax.Untranslatable):
        return node.construct
    try:
        Algebra().search(node)
    except Unsupported as exc:
        return str(exc)
    raise AssertionError(f"{pattern} was translated")


@pytest.mark.parametrize(
    ("pattern", "construct"),
    [
        (r"\pL", r"\p{L}"),
        (r"\p{Greek}x", r"\p{Greek}"),
        (r"\PN", r"\P{N}"),
        ("(?i)é", "non-ASCII"),
        (r"(\bx)+", "inside `*`, `+`"),
        (r"(a\b){20}", "a large `{m,n}`"),
    ],
)
def test_untranslatable_regexes_name_their_construct(pattern: str, construct: str) -> None:
    assert construct in _untranslatable(pattern)


def test_untranslatable_pattern_is_reported_on_its_own_rule_only() -> None:
    text = 'deny 403 when header a matches "\\\\pLx"\ndeny 401 when header a == "x"\n'
    _, found = _analyse(text)
    [finding] = found
    assert (finding.code, finding.span.line, finding.span.column) == ("HP405", 1, 15)
    assert r"\p{L}" in finding.message
    assert finding.help is not None and "not reported" in finding.help


def test_word_boundaries_are_analysed_exactly() -> None:
    """`\\b` used to be unknown and reported on the next rule; now it is decided."""
    text = 'deny 403 when header a matches "\\\\bx\\\\b"\ndeny 401 when header a == "x"\n'
    policy, found = _analyse(text)
    [finding] = found
    assert (finding.code, finding.span.line) == ("HP401", 2)
    assert evaluate(policy, _witness(finding)).rule is policy.rules[0]


def test_generated_200_rule_policy_is_analysed_completely() -> None:
    """The bench's policy: every finding decided (no HP405); timing is the bench's job."""
    spec = importlib.util.spec_from_file_location(
        "bench", ROOT / "benchmarks" / "bench_analysis.py"
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    policy, found = _analyse(bench.generated(200), steps=DEFAULT_STEPS)
    codes = {d.code for d in found}
    assert codes == {"HP404"}
    for d in found[:20]:
        decision = evaluate(policy, _witness(d))
        assert decision.allowed and decision.rule is not None
