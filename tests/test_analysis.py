"""Exact rule analysis: each finding is decided by z3 and its witness confirmed by `evaluate`."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import re2
import z3
from hypothesis import given, settings
from hypothesis import strategies as st

from hdrpolicy import ir
from hdrpolicy.analysis import analyse
from hdrpolicy.diagnostics import Diagnostic, Severity, Source
from hdrpolicy.evaluate import evaluate, fires
from hdrpolicy.pipeline import check_source
from hdrpolicy.regular import Algebra
from hdrpolicy.smt import string_val, translate_regex

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


def _analyse(text: str, budget_ms: int = 20_000) -> tuple[ir.Policy, list[Diagnostic]]:
    checked = check_source(Source("t.hp", text), "t")
    assert checked.policy is not None and checked.ok, checked.diagnostics
    return checked.policy, analyse(checked.policy, checked.source, budget_ms)


def _witness(d: Diagnostic) -> list[tuple[bytes, bytes]]:
    """Re-read the witness from the note: `METHOD PATH (host 'H'); name: 'v', …`."""
    note = next(n for n in d.notes if n.startswith("witness: "))
    m = re.match(r"witness: (\S+) (\S+) \(host '([^']*)'\); (.*?) is ", note)
    assert m, note
    headers = [
        (b":method", m[1].encode()),
        (b":path", m[2].encode()),
        (b":authority", m[3].encode()),
    ]
    for name, value in re.findall(r"([\w-]+): '([^']*)'", m[4]):
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
    assert "deny rules at line 2 " in finding.message
    decision = evaluate(policy, _witness(finding))
    assert decision.allowed and decision.rule is policy.rules[0]
    assert fires(policy.rules[1], decision.values, [])


@pytest.mark.parametrize(
    ("condition", "value"),
    [
        ('path starts_with "/a" and path == "/b"', "false"),
        ('header a matches "x^y"', None),  # not translated: unknown, so no finding
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


def test_a_spent_budget_is_one_unknown() -> None:
    _, found = _analyse(THREE, budget_ms=0)
    assert [d.code for d in found] == ["HP405"]


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
    ]
)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(PATTERNS, st.text(st.sampled_from("abckKmxyz019./-_ \u212a\u017f"), max_size=6))
def test_regex_translation_agrees_with_re2(pattern: str, text: str) -> None:
    regex = translate_regex(pattern)
    assert regex is not None
    solver = z3.Solver()
    solver.add(z3.InRe(string_val(text), regex))
    assert (solver.check() == z3.sat) == (re2.search(pattern, text) is not None)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(PATTERNS, st.text(st.sampled_from("abckKmxyz019./-_ \u212a\u017f"), max_size=6))
def test_regular_terms_agree_with_re2(pattern: str, text: str) -> None:
    """The derivative-based terms the analysis decides with mean what RE2 means."""
    regex = translate_regex(pattern)
    assert regex is not None
    alg = Algebra()
    assert alg.accepts(alg.from_z3(regex), text) == (re2.search(pattern, text) is not None)


def test_untranslatable_regex_is_unknown_never_a_guess() -> None:
    text = r'deny 403 when header a matches "\\bx"' + '\ndeny 401 when header a == "x"\n'
    _, found = _analyse(text)
    assert [d.code for d in found if d.code in ("HP401", "HP402")] == []


@pytest.mark.slow
def test_generated_200_rule_policy_is_analysed_completely() -> None:
    """The bench's policy: every finding decided (no HP405); timing is the bench's job."""
    spec = importlib.util.spec_from_file_location(
        "bench", ROOT / "benchmarks" / "bench_analysis.py"
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    policy, found = _analyse(bench.generated(200), budget_ms=120_000)
    codes = {d.code for d in found}
    assert codes == {"HP404"}
    for d in found[:20]:
        decision = evaluate(policy, _witness(d))
        assert decision.allowed and decision.rule is not None


@pytest.mark.parametrize("pattern", [r"\bx", "(?P<n>a)", "a^b", "(?s).", r"\pL", "[[:alpha:]]"])
def test_untranslatable_regexes_are_unknown(pattern: str) -> None:
    assert translate_regex(pattern) is None
