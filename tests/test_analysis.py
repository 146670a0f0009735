"""Exact rule analysis: each finding is decided by z3 and its witness confirmed by `evaluate`."""

from __future__ import annotations

import importlib.util
import ipaddress
import re
from pathlib import Path
from urllib.parse import quote_plus

import pytest
import re2
from hypothesis import event, given, settings
from hypothesis import strategies as st

from hdrpolicy import semantics
from hdrpolicy.analysis import resyntax
from hdrpolicy.analysis.budget import DEFAULT_STEPS
from hdrpolicy.analysis.findings import analyse
from hdrpolicy.analysis.regular import Algebra, Re, Unsupported
from hdrpolicy.diagnostics import Diagnostic, Severity, Source
from hdrpolicy.evaluate import Decision, evaluate, fires
from hdrpolicy.fmt import format_policy
from hdrpolicy.frontend import ir
from hdrpolicy.frontend.goregexp import go_regex_error
from hdrpolicy.frontend.pipeline import check_source
from policy_strategies import (
    COOKIE_NAMES,
    HEADER_NAMES,
    QUERY_NAMES,
    compares,
    policies,
    values,
)

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
    m = re.match(r"witness: (\S+) (\S+) \(host (\S+); (?:client (\S+); )?(.*?)\) is ", note)
    assert m, note
    headers = [
        (b":method", m[1].encode()),
        (b":path", m[2].encode()),
        (b":authority", m[3].encode()),
    ]
    if m[4] is not None:
        headers.append((ir.CLIENT_ADDRESS.encode(), m[4].encode()))
    if m[5] != "no headers":
        for name, value in re.findall(r'([\w-]+): "([^"\\]*)"', m[5]):
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
    assert alg.accepts(term, text) == _re2_search(pattern, text)


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
    assert r"\p{L}" in finding.help


def test_word_boundaries_are_analysed_exactly() -> None:
    """`\\b` used to be unknown and reported on the next rule; now it is decided."""
    text = 'deny 403 when header a matches "\\\\bx\\\\b"\ndeny 401 when header a == "x"\n'
    policy, found = _analyse(text)
    [finding] = found
    assert (finding.code, finding.span.line) == ("HP401", 2)
    assert evaluate(policy, _witness(finding)).rule is policy.rules[0]


@pytest.mark.slow
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


def test_hp401_headline_and_witness_name_the_same_rules() -> None:
    text = (
        'deny 403 "a" when header a exists\n'
        'deny 403 "b" when header b == "1"\n'
        'deny 403 "c" when header b exists\n'
        'deny 401 "d" when header b == "1" and header c exists\n'
    )
    policy, found = _analyse(text)
    [shadowed] = [d for d in found if d.code == "HP401"]
    assert shadowed.span.line == 4
    # Line 3 overlaps line 4 but never decides a request line 4 fires on: not named.
    assert (
        shadowed.message
        == "rule never fires: the rules at lines 1 and 2 decide first (one or another)"
    )
    witness = _witness(shadowed)
    decider = evaluate(policy, witness).rule
    assert decider is not None and decider.span.line in (1, 2)
    assert f"is decided by the rule at line {decider.span.line}, although" in shadowed.notes[0]
    assert fires(policy.rules[3], evaluate(policy, witness).values, [])


def test_witnesses_are_real_requests() -> None:
    text = (
        'allow when host == "admin.corp.example.com" and method != "GET"\n'
        'deny 403 "no" when host == "admin.corp.example.com"\n'
        'deny 401 "who" when header x-debug exists\n'
        'deny 401 "who" when header x-debug exists and path == "/a"\n'
    )
    _, found = _analyse(text)
    [note] = [d for d in found if d.code == "HP404"]
    assert note.notes[0].startswith(
        "witness: POST / (host admin.corp.example.com; no headers) is allowed here"
    )
    [shadowed] = [d for d in found if d.code == "HP401"]
    # A header whose value does not matter shows a readable one, not "".
    assert shadowed.notes[0].startswith(
        'witness: GET /a (host example.com; x-debug: "1") is decided by the rule at line 3'
    )
    assert all("no other headers is" not in n for d in found for n in d.notes)


def test_verdicts_say_which_requests_they_hold_for() -> None:
    """HP401/HP402 hold with repeated headers; HP403 only when each header is sent once."""
    text = (
        'deny 403 "A" when header x == "1"\n'
        'deny 401 "B" when header x == "2"\n'
        'deny 403 "A" when header x == "1"\n'
    )
    policy, found = _analyse(text)
    [redundant] = [d for d in found if d.code == "HP403"]
    assert redundant.span.line == 1
    assert redundant.message.endswith("for requests with one reading")
    without = policy.model_copy(update={"rules": policy.rules[1:]})
    base = [(b":method", b"GET"), (b":path", b"/"), (b":authority", b"h")]
    for value in (b"1", b"2", b"3", b"1, 2"):
        request = [*base, (b"x", value)]
        assert _same_response(evaluate(policy, request), evaluate(without, request))
    # Sent twice, x is read as "1", "2" and "1, 2": the earliest rule denying any
    # reading decides, and that is line 1 with it, line 2 without it.
    repeated = [*base, (b"x", b"1"), (b"x", b"2")]
    assert evaluate(policy, repeated).status == 403
    assert evaluate(without, repeated).status == 401
    [shadowed] = [d for d in found if d.code == "HP401"]
    assert "repeated headers and lists in values included" in shadowed.notes[-1]


def _same_response(a: Decision, b: Decision) -> bool:
    return (a.allowed, a.status, a.body, a.headers) == (b.allowed, b.status, b.body, b.headers)


SHADOWED = (
    'allow when header a == "x"\n'
    'deny 401 "b" when header a == "x" and header b exists\n'
    'deny 403 "c" when header b == "y"\n'
    'deny 402 "d" when header b == "y" and not header a exists\n'
)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([b"a", b"b"]), st.sampled_from([b"x", b"y", b"x, y", b""])),
        max_size=5,
    )
)
def test_a_rule_that_never_fires_never_fires_with_repeated_headers_either(
    headers: list[tuple[bytes, bytes]],
) -> None:
    policy, found = _shadowed_policy()
    assert sorted(d.span.line for d in found if d.code == "HP401") == [2, 4]
    request = [(b":method", b"GET"), (b":path", b"/"), (b":authority", b"h"), *headers]
    assert evaluate(policy, request).rule not in (policy.rules[1], policy.rules[3])


_SHADOWED_CACHE: list[tuple[ir.Policy, list[Diagnostic]]] = []


def _shadowed_policy() -> tuple[ir.Policy, list[Diagnostic]]:
    if not _SHADOWED_CACHE:
        _SHADOWED_CACHE.append(_analyse(SHADOWED))
    return _SHADOWED_CACHE[0]


REGEX_TOKENS = [
    *"ab_ -.|()*+?^$\nK\u212a",
    "(?:", "(?i)", "(?m)", "(?s)", "(?i:", "{2}", "{1,2}", "{0,}", "[ab]", "[^a]",
    "[a-c]", "\\b", "\\B", "\\A", "\\z", "\\d", "\\w", "\\W", "\\s", "[[:alpha:]]",
    "\\x61", "\\Qa.\\E",
]  # fmt: skip


def _re2_search(pattern: str, text: str) -> bool:
    """The evaluator's answer (RE2, stepped over whole characters where Go's `\\B` needs it)."""
    holds = semantics.operator(ir.Op.MATCHES).holds
    assert holds is not None
    return holds(text.encode(), pattern.encode())


@settings(max_examples=400, derandomize=True, deadline=None)
@given(
    st.lists(st.sampled_from(REGEX_TOKENS), min_size=1, max_size=7).map("".join),
    st.lists(st.text(st.sampled_from("ab_ -.\nK1\u212a"), max_size=5), min_size=8, max_size=8),
)
def test_random_valid_patterns_mean_what_re2_means(pattern: str, texts: list[str]) -> None:
    """Any pattern Go accepts is translated exactly (or named as untranslatable)."""
    if go_regex_error(pattern) is not None:
        return
    node = resyntax.parse(pattern)
    if isinstance(node, resyntax.Untranslatable):
        return
    alg = Algebra()
    try:
        term = alg.search(node)
    except Unsupported:
        return
    for text in texts:
        assert alg.accepts(term, text) == _re2_search(pattern, text), (pattern, text)


def test_not_a_word_boundary_is_tested_between_characters_as_go_does() -> None:
    """Go: `\\B` finds nothing in "K\u212aK" (every position is a boundary); RE2 alone
    matches between the bytes of U+212A.  The plug-in runs Go's `regexp`; the
    analysis and the evaluator follow it."""
    alg, term = _search(r"\B")
    assert not alg.accepts(term, "K\u212aK") and not alg.accepts(term, "1\u212a1")
    assert alg.accepts(term, "K\u212a") and alg.accepts(term, "\u212a\u212a")
    assert re2.search(r"\B", "K\u212aK") is not None  # RE2's own answer differs
    for text in ("K\u212aK", "1\u212a1", "K\u212a", "\u212a\u212a", "ab", "a b"):
        assert _re2_search(r"\B", text) == alg.accepts(term, text), text


# -- query parameters, cookies, client address ranges ------------------------------


def _shadowed_by_first(text: str) -> tuple[ir.Policy, Diagnostic]:
    """The one finding of a two-rule policy: HP401 on the second rule, whose
    witness the evaluator decides by the first although the second would fire."""
    policy, found = _analyse(text)
    [shadowed] = found
    first, second = policy.rules
    assert (shadowed.code, shadowed.span) == ("HP401", second.span), found
    assert shadowed.message == (
        f"rule never fires: the rule at line {first.span.line} always decides first"
    )
    decision = evaluate(policy, _witness(shadowed))
    assert decision.rule is policy.rules[0]
    assert fires(policy.rules[1], decision.values, [])
    return policy, shadowed


def test_a_rule_shadowed_by_a_wider_address_range() -> None:
    _, shadowed = _shadowed_by_first(
        'deny 403 when client in ["10.0.0.0/8"]\ndeny 401 when client in ["10.1.0.0/16"]\n'
    )
    [address] = re.findall(r"client (\S+);", shadowed.notes[0])
    assert ipaddress.ip_address(address) in ipaddress.ip_network("10.1.0.0/16")


@pytest.mark.parametrize(
    "second",
    [
        '["10.0.0.0/7"]',  # wider
        '["10.1.0.0/16", "192.168.0.0/16"]',  # one range outside
        '["10.255.255.255", "11.0.0.0"]',  # the first address past the range
        '["::/0"]',  # an IPv4 range holds no IPv6 address
    ],
)
def test_ranges_that_only_overlap_shadow_nothing(second: str) -> None:
    _, found = _analyse(
        f'deny 403 when client in ["10.0.0.0/8"]\ndeny 401 when client in {second}\n'
    )
    assert found == []


def test_a_rule_shadowed_through_not_in() -> None:
    _shadowed_by_first(
        'deny 403 when client not in ["10.0.0.0/8", "2001:db8::/32"]\n'
        'deny 401 when client in ["192.168.0.0/16", "2001:db9::/32"]\n'
    )
    # The complement of a range is judged exactly: `not in` shadows only what is outside.
    _, found = _analyse(
        'deny 403 when client not in ["10.0.0.0/8"]\ndeny 401 when client in ["10.0.0.0/24"]\n'
    )
    assert found == []


def test_ipv6_ranges_are_judged_on_the_full_form() -> None:
    _, shadowed = _shadowed_by_first(
        'deny 403 when client in ["2001:db8::/32"]\ndeny 401 when client in ["2001:db8:abc::/48"]\n'
    )
    [address] = re.findall(r"client (\S+);", shadowed.notes[0])
    assert ipaddress.ip_address(address) in ipaddress.ip_network("2001:db8:abc::/48")
    # A prefix that cuts through a hex digit: /33 holds 2001:db8:0000 to 2001:db8:7fff.
    wide = 'deny 403 when client in ["2001:db8::/33"]\n'
    _shadowed_by_first(wide + 'deny 401 when client in ["2001:db8:7000::/36"]\n')
    assert _analyse(wide + 'deny 401 when client in ["2001:db8:8000::/36"]\n')[1] == []


def test_ipv4_mapped_ranges_never_match_and_every_address_is_not_every_client() -> None:
    """An IPv4-mapped IPv6 address is judged in its IPv4 form; a client that is not an
    IP address (a pipe) is in no range, so even both whole families are not constant."""
    _, found = _analyse(
        'deny 403 when client in ["::ffff:0:0/96"]\ndeny 401 when header b exists\n'
    )
    assert [(d.code, d.message.split(":")[0]) for d in found] == [
        ("HP402", "condition is always false")
    ]
    policy = _analyse('deny 403 when client in ["::ffff:0:0/96"]\n')[0]
    mapped = [(b":method", b"GET"), (b":path", b"/"), (b":authority", b"h")]
    assert evaluate(policy, [*mapped, (ir.CLIENT_ADDRESS.encode(), b"[::ffff:10.0.0.1]:5")]).allowed
    _, found = _analyse(
        'deny 403 when client in ["0.0.0.0/0", "::/0"]\ndeny 401 when header b exists\n'
    )
    assert found == []
    policy, found = _analyse(
        'deny 403 when client in ["0.0.0.0/0", "::/0"]\ndeny 401 when client not in ["1.0.0.0/8"]\n'
    )
    assert found == []


def test_a_rule_shadowed_by_a_named_list_of_ranges() -> None:
    _shadowed_by_first(
        'list internal = ["10.0.0.0/8", "172.16.0.0/12"]\n'
        "deny 403 when client in internal\n"
        'deny 401 when client in ["172.20.0.0/16"]\n'
    )


def test_a_rule_shadowed_by_a_query_parameter() -> None:
    _, shadowed = _shadowed_by_first(
        'deny 403 when query debug exists\ndeny 401 when query debug == "1"\n'
    )
    assert shadowed.notes[0].startswith("witness: GET /?debug=1 (host example.com; no headers)")


def test_query_values_are_decoded_and_may_be_missing() -> None:
    # `exists` is not constant for a query parameter, though `:path` is always sent.
    _, found = _analyse("deny 403 when query debug exists\ndeny 401 when header b exists\n")
    assert found == []
    _, shadowed = _shadowed_by_first(
        'deny 403 when query "a b" starts_with "x&"\n'
        'deny 401 when query "a b" == "x&y z" and path == "/p"\n'
    )
    assert shadowed.notes[0].startswith("witness: GET /p?a+b=x%26y+z (host example.com;")
    _, found = _analyse(
        'deny 403 when query a == "1" and query a == "2"\ndeny 401 when header b exists\n'
    )
    assert [d.code for d in found] == ["HP402"]


def test_a_rule_shadowed_by_a_cookie() -> None:
    _, shadowed = _shadowed_by_first(
        "deny 403 when cookie session exists\n"
        'deny 401 when cookie session == "x" and cookie theme == "dark"\n'
    )
    assert 'cookie: "session=x; theme=dark"' in shadowed.notes[0]


_ADDRESSES = [
    *["10.1.2.3", "10.0.0.1:5", "192.168.1.1", "2001:db8::1", "[2001:db8::5]:80", "::1"],
    *["[::ffff:10.1.2.3]:5", "0.0.0.0", "/tmp/envoy.sock", ""],
]


@st.composite
def _requests(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    """Requests with query parameters, cookies, a client address and headers that the
    generated policies name, their values drawn as the policies' literals are."""
    path = draw(st.sampled_from(["/", "/a"]))
    params = [
        f"{quote_plus(draw(st.sampled_from(QUERY_NAMES)))}={quote_plus(draw(values))}"
        for _ in range(draw(st.integers(0, 3)))
    ]
    if params:
        path += "?" + "&".join(params)
    request = [(b":method", b"GET"), (b":path", path.encode()), (b":authority", b"example.com")]
    address = draw(st.sampled_from(_ADDRESSES))
    if address:
        request.append((ir.CLIENT_ADDRESS.encode(), address.encode()))
    crumbs = [
        f"{draw(st.sampled_from(COOKIE_NAMES))}={draw(values)}"
        for _ in range(draw(st.integers(0, 2)))
    ]
    if crumbs:
        request.append((b"cookie", "; ".join(crumbs).encode()))
    for _ in range(draw(st.integers(0, 3))):
        request.append((draw(st.sampled_from(HEADER_NAMES)).encode(), draw(values).encode()))
    return request


@st.composite
def _with_a_narrower_copy(draw: st.DrawFn) -> ir.Policy:
    """A generated policy, most often with a rule after its first conditional rule that
    fires only where that one does (its condition and one more comparison): a rule to be
    found shadowed."""
    policy = draw(policies(max_rules=3))
    first = next((r for r in policy.rules if r.condition is not None), None)
    if first is None or first.condition is None or not draw(st.integers(0, 3)):
        return policy
    fires: ir.Condition = first.condition
    if first.guard is ir.Guard.UNLESS:
        fires = ir.Not(operand=fires, span=first.span)
    narrower = ir.And(operands=[fires, draw(compares())], span=first.span)
    response = ir.Response(status=499, span=first.span)
    copy = ir.Rule(
        action=ir.Action.DENY,
        response=response,
        guard=ir.Guard.WHEN,
        condition=narrower,
        span=first.span,
    )
    at = policy.rules.index(first) + 1
    return policy.model_copy(update={"rules": [*policy.rules[:at], copy, *policy.rules[at:]]})


@settings(max_examples=120, derandomize=True, deadline=None)
@given(_with_a_narrower_copy(), st.lists(_requests(), min_size=30, max_size=30))
def test_a_rule_found_never_to_fire_decides_no_request(
    generated: ir.Policy, requests: list[list[tuple[bytes, bytes]]]
) -> None:
    """HP401 holds for every request: query parameters, cookies and client addresses too."""
    policy, found = _analyse(format_policy(generated))
    dead = [r for r in policy.rules if any(d.code == "HP401" and d.span == r.span for d in found)]
    event("a rule never fires" if dead else "every rule may fire")
    for request in requests:
        decided = evaluate(policy, request).rule
        assert not any(decided is rule for rule in dead), request
