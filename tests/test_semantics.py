"""The one definition of each operator and subject (`semantics`), and that every stage agrees.

Two kinds of test.  Completeness: adding an operator or a subject kind without
an entry in every table, a Go helper in the template, or a line in the
README's checklist fails here.  Agreement: the analysis's regular languages
and subject domains, on which its "never fires" verdicts rest, mean what the
evaluator means, on random values.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from pathlib import Path

import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from conftest import compile_text
from hdrpolicy import semantics
from hdrpolicy.analysis.atoms import atoms_of
from hdrpolicy.analysis.regular import MAX_CHAR, Algebra, Re, Unsupported
from hdrpolicy.analysis.smt import build_request
from hdrpolicy.backend.emit import _environment
from hdrpolicy.backend.host import run_plugin
from hdrpolicy.codec import CLIENT_ADDRESS, Protocol, SentRequest, deliver, rejected
from hdrpolicy.diagnostics import Source, Span
from hdrpolicy.evaluate import Headers, compare, evaluate, readings, refusal
from hdrpolicy.fmt import compare_text
from hdrpolicy.frontend import ir
from hdrpolicy.frontend.goregexp import go_regex_error
from hdrpolicy.frontend.pipeline import check_source
from hdrpolicy.runner import agreement
from hdrpolicy.semantics import Literals, list_delimiter

ROOT = Path(__file__).resolve().parent.parent
SPAN = Span(line=1, column=1, end_line=1, end_column=1, start=0, end=0)
POSITIVE = [op for op in ir.Op if semantics.operator(op).negation_of is None]


def _template() -> str:
    env = _environment()
    assert env.loader is not None
    return env.loader.get_source(env, "main.go.jinja")[0]


def _subject_text(kind: ir.SubjectKind) -> str:
    meaning = semantics.subject(kind)
    named = not meaning.pseudo or meaning.extract is not None
    return f"{meaning.spelling} x-a" if named else meaning.spelling


def _every_comparison() -> list[str]:
    """One comparison per subject kind, operator it takes and `ignoring case` (where
    it applies)."""
    out = []
    for kind in ir.SubjectKind:
        allowed = semantics.subject(kind).operators
        for op in ir.Op:
            if allowed is not None and op not in allowed:
                continue
            meaning = semantics.operator(op, kind)
            literal = '"^v"' if meaning.pattern else '"v"'
            if meaning.networks:
                literal = '"10.0.0.0/8"'
            literals = {
                Literals.NONE: "",
                Literals.ONE: f" {literal}",
                Literals.LIST: f' [{literal}, "w"]'
                if not meaning.networks
                else f' [{literal}, "2001:db8::/32"]',
            }[meaning.literals]
            for ignore_case in {False, meaning.ignore_case}:
                suffix = " ignoring case" if ignore_case else ""
                out.append(f"{_subject_text(kind)} {meaning.text}{literals}{suffix}")
    return out


def _policy_text() -> str:
    """One rule per comparison; `x-case` picks the rule a request is about."""
    rules = [
        f'deny 403 "{n}" when header x-case == "{n}" and {c}'
        for n, c in enumerate(_every_comparison())
    ]
    return "\n".join(rules) + "\n"


# -- completeness ------------------------------------------------------------------


def test_every_operator_has_a_complete_entry() -> None:
    for op in ir.Op:
        meaning = semantics.operator(op)
        assert meaning.op is op and meaning.text == op.value
        if meaning.negation_of is not None:
            positive = semantics.operator(meaning.negation_of)
            assert positive.negation_of is None, f"{op} negates a negation"
            assert (positive.literals, positive.ignore_case) == (
                meaning.literals,
                meaning.ignore_case,
            ), f"{op} takes other literals than {positive.op}"
            continue
        assert meaning.go_helper is not None, op
        if meaning.literals is Literals.NONE:
            continue
        assert meaning.holds and meaning.language and meaning.atom, op
        assert semantics.operator(meaning.atom).language is meaning.language, op
        assert (meaning.go_fold_helper is not None) == meaning.ignore_case, op


def test_every_subject_kind_has_a_complete_entry() -> None:
    # Every request carries the pseudo-headers in PSEUDO_ORDER (a witness sends each,
    # a plain value when it does not matter); the other subjects read once are read
    # out of one of them (a query parameter, from `:path`) or passed apart (the client).
    carried = {semantics.subject(k).host_name for k in semantics.PSEUDO_ORDER}
    for kind in ir.SubjectKind:
        meaning = semantics.subject(kind)
        if meaning.pseudo and kind not in semantics.PSEUDO_ORDER:
            assert (meaning.extract is not None and meaning.host_name in carried) or (
                meaning.host_name == ir.CLIENT_ADDRESS
            ), kind
    for kind in ir.SubjectKind:
        meaning = semantics.subject(kind)
        assert meaning.kind is kind
        assert (meaning.plain is not None) == (kind in semantics.PSEUDO_ORDER), kind
        if meaning.plain is not None:
            assert meaning.pseudo, kind
            assert meaning.plain is not None
            plain = meaning.plain.encode()
            assert meaning.normalize(plain) == plain, f"{kind}: its plain value is not normal"
        alg = Algebra()
        assert meaning.domain(alg), kind
        # A kind without a Go branch in `normalize` must only trim, like the template.
        if meaning.go_field is None:
            for raw in (b" A:1/?x ", b"\tX,y;z\t", b"/a/./b?c"):
                assert meaning.normalize(raw) == raw.strip(b" \t"), kind


def test_the_template_defines_every_helper_the_table_names() -> None:
    template = _template()
    for op, kind in itertools.product(ir.Op, [None, *ir.SubjectKind]):
        meaning = semantics.operator(op, kind)
        for helper in (meaning.go_helper, meaning.go_fold_helper):
            if helper is None:
                continue
            assert f'{{% if "{helper}" in helpers %}}' in template, helper
            assert re.search(rf"^func \(r \*request\) {helper}\(", template, re.M), helper
    normalize = template[template.index("func normalize(") :]
    normalize = normalize[: normalize.index("\n}\n")]
    for kind in ir.SubjectKind:
        field = semantics.subject(kind).go_field
        if field is not None:
            assert f"if f == {{{{ {field} }}}} {{" in normalize, kind


def test_a_policy_with_every_operator_and_subject_checks_and_prints_back() -> None:
    text = _policy_text()
    checked = check_source(Source("every.hp", text), "every")
    assert checked.ok and checked.policy is not None, checked.diagnostics
    found = [
        c
        for r in checked.policy.rules
        if r.condition
        for c in ir.comparisons(r.condition)
        if c.subject.name != "x-case"
    ]
    assert [compare_text(c) for c in found] == _every_comparison()
    assert {c.subject.kind for c in found} == set(ir.SubjectKind)
    assert {c.op for c in found} == set(ir.Op)
    assert {c.op for c in found if c.ignore_case} == {
        op for op in ir.Op if semantics.operator(op).ignore_case
    }
    # A subject that takes only some operators is refused the others, located.
    for kind in ir.SubjectKind:
        allowed = semantics.subject(kind).operators
        for op in set(ir.Op) - (allowed or set(ir.Op)):
            meaning = semantics.operator(op)
            literal = {Literals.NONE: "", Literals.ONE: ' "v"', Literals.LIST: ' ["v"]'}
            text = f"deny 403 when {_subject_text(kind)} {op.value}{literal[meaning.literals]}\n"
            refused = check_source(Source("refused.hp", text), "refused")
            assert [d.code for d in refused.diagnostics] == ["HP220"], (text, refused.diagnostics)


@pytest.mark.slow
def test_a_policy_with_every_operator_and_subject_builds_and_agrees(
    tmp_path: Path, emulator: Path
) -> None:
    """Go compiles every helper the emitter calls, with and without `ignoring case`,
    and the plug-in decides as the evaluator does."""
    result = compile_text(_policy_text(), tmp_path, name="every")
    assert result.checked.ok and result.checked.policy is not None
    assert "plugin.wasm" in result.written, result
    requests: list[Headers] = []
    # The client address for each value: in 10.0.0.0/8, in 2001:db8::/32, in neither.
    clients = {b"v": b"10.1.2.3:5000", b"V": b"[2001:db8::1]:5000", b"xv": b"192.0.2.1:1"}
    for n in range(len(_every_comparison())):
        for value in (None, b"v", b"V", b"xv", b"vx", b"w"):
            request = [
                (b":method", value or b"GET"),
                (b":path", b"/" + (value or b"") + (b"" if value is None else b"?x-a=" + value)),
                (b":authority", value or b"x"),
                (b"x-case", str(n).encode()),
            ]
            if value is not None:
                request += [(b"x-a", value), (b"cookie", b"x-a=" + value)]
            if value in clients:
                request.append((CLIENT_ADDRESS.encode(), clients[value]))
            requests.append(request)
    decisions = [evaluate(result.checked.policy, r) for r in requests]
    plugin = run_plugin(result.out_dir / "plugin.wasm", requests)
    for request, decision, got in zip(requests, decisions, plugin, strict=True):
        assert agreement(decision, got) is None, (request, agreement(decision, got))
    # Every rule decides some request, except those `path` (always "/…") never meets.
    decided = {int(d.body) for d in decisions if not d.allowed}
    never = {n for n, c in enumerate(_every_comparison()) if c.startswith("path ")}
    assert set(range(len(_every_comparison()))) - decided <= never


def test_the_readme_checklist_names_every_place_to_touch() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("Adding a construct")
    checklist = readme[start : readme.index("\n\n", start)]
    for place in (
        "hdrpolicy.lark",
        "lower.py",
        "ir.py",
        "semantics.py",
        "main.go.jinja",
        "tests/golden",
        "tests/diagnostics",
        "policy_strategies.py",
        "test_semantics.py",
    ):
        assert place in checklist, f"the README's checklist does not name {place}"


# -- agreement: operators --------------------------------------------------------

# Letters in both cases, characters whose Unicode case differs from ASCII's
# (the Kelvin sign, the long s, dotless i), spaces, and what patterns use.
_CHARS = "aAbBkKsSiI\u212a\u017f\u0131é É/.-_ 019"
texts = st.text(st.sampled_from(_CHARS), max_size=5)
REGEX_TOKENS = [
    *"abAB_ -.|()*+?^$K\u212a",
    "(?i)", "(?:", "{2}", "[ab]", "[^a]", "\\b", "\\d", "\\w", "[[:alpha:]]",
]  # fmt: skip
patterns = st.lists(st.sampled_from(REGEX_TOKENS), min_size=1, max_size=6).map("".join)


@st.composite
def comparisons(draw: st.DrawFn) -> ir.Compare:
    op = draw(st.sampled_from([op for op in ir.Op if op is not ir.Op.EXISTS]))
    meaning = semantics.operator(op)
    if meaning.pattern:
        pattern = draw(patterns)
        assume(go_regex_error(pattern) is None)
        literals = [pattern]
    elif meaning.literals is Literals.LIST:
        literals = draw(st.lists(texts, min_size=1, max_size=3))
    else:
        literals = [draw(texts)]
    return ir.Compare(
        subject=ir.Subject(kind=ir.SubjectKind.HEADER, name="x-a", span=SPAN),
        op=op,
        values=[ir.StringLit(value=v, span=SPAN) for v in literals],
        ignore_case=meaning.ignore_case and draw(st.booleans()),
        span=SPAN,
    )


@settings(max_examples=1500, derandomize=True, deadline=None)
@given(comparisons(), st.lists(texts, min_size=1, max_size=8))
def test_atom_languages_agree_with_the_evaluator(cmp: ir.Compare, values: list[str]) -> None:
    """A value is in a comparison's atoms' languages exactly when the evaluator says it holds."""
    alg = Algebra()
    languages = []
    for atom in atoms_of(cmp):
        language = semantics.operator(atom.op).language
        assert language is not None
        try:
            languages.append(language(alg, atom.literal, atom.ignore_case))
        except Unsupported:
            assume(False)
    negated = semantics.operator(cmp.op).negation_of is not None
    for value in values:
        if "\\b" in cmp.values[0].value and not value.isascii():
            continue  # RE2 and Go differ on \b beside non-ASCII (test_analysis)
        accepted = any(alg.accepts(lang, value) for lang in languages)
        assert (accepted != negated) == compare(cmp, value.encode()), (cmp.op, value)


@pytest.mark.parametrize(("pattern", "construct"), [(r"\pL", r"\p{L}"), ("(?i)é", "non-ASCII")])
def test_a_pattern_the_analysis_cannot_translate_names_its_construct(
    pattern: str, construct: str
) -> None:
    """Parsed as untranslatable, or refused by the algebra: either way `Unsupported`."""
    language = semantics.operator(ir.Op.MATCHES).language
    assert language is not None
    with pytest.raises(Unsupported, match=re.escape(construct)):
        language(Algebra(), pattern, False)


# -- agreement: subject domains --------------------------------------------------------

# A header Envoy keeps as sent, one it joins (`,`), the cookie (`;`), the pseudo-headers,
# a query parameter, a cookie and the client address.
SUBJECTS = (
    [
        ir.Subject(kind=ir.SubjectKind.HEADER, name=name, span=SPAN)
        for name in ("x-role", "user-agent", "cookie")
    ]
    + [ir.Subject(kind=kind, span=SPAN) for kind in semantics.PSEUDO_ORDER]
    + [
        ir.Subject(kind=ir.SubjectKind.QUERY, name="x-a", span=SPAN),
        ir.Subject(kind=ir.SubjectKind.COOKIE, name="x-a", span=SPAN),
        ir.Subject(kind=ir.SubjectKind.CLIENT, span=SPAN),
    ]
)
# What the host can pass: Envoy refuses control characters (but tab) and DEL in
# a value, and a method that is not a token, before any filter runs.
_RAW = "aZz09 \t/.%2F%41?#;:,[]\\-_é\u00a0\U0001f600"
_TOKEN = "aZz09!#$%&'*+-.^_`|~"
# Mostly pieces of paths in normal form, some of what is refused (dot segments, `//`,
# needless or bad escapes, `#`, a space).
_PATH_PIECES = [
    *["/a", "/é", "/%C3%A9", "/;x", "?q", ":", ",", "a"] * 3,
    *["/", ".", "..", "%41", "%2F", "%2", "#", " ", "\t"],
]
# Pieces of query strings that name `x-a` (as sent, encoded, twice), and others;
# escapes of UTF-8 text, of control characters, and bad ones.
_QUERY_PIECES = [
    *["x-a=", "x-a", "x%2Da=", "x-a=1", "&", "=", "b=2", "x-a=a+b", "x-a=%C3%A9", "x-a=%E2%82%AC"],
    *["%00", "%0A", "%3B", "%26", "%3d", "+", "%", "%2", "%zz", "é", ",", ";", "'", '"', "/"],
]
# Pieces of a `cookie` header: `x-a` with plain, padded, quoted and empty values, others.
_COOKIE_PIECES = [
    *["x-a=", "x-a", "x-a=1", " x-a = v ", "x-a=a=b", 'x-a="q"', 'x-a=" q "', 'x-a="'],
    *[";", "; ", "=", "y=2", "\t", ",", "é", '"', "x-a=é,b"],
]
# What Envoy's `source.address` can be: IPv4 and IPv6 with or without a port,
# IPv4-mapped, with a zone, a pipe, and what is not an address at all.
_CLIENT_SAMPLES = [
    *["10.1.2.3:5000", "[2001:db8::1]:5000", "2001:db8::1", "::ffff:10.0.0.1", "[::1]"],
    *["[::ffff:10.0.0.1]:1", "010.1.2.3", "10.1.2.3:99999", "fe80::1%eth0", "/tmp/envoy.sock"],
    *["", "1.2.3.4:", "::", "0.0.0.0", "[2001:DB8::A]:80", "1.2.3", "256.1.1.1", "[::1]x"],
]


@st.composite
def _client_raw(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return draw(st.sampled_from(_CLIENT_SAMPLES))
    address = draw(st.ip_addresses())
    text = draw(st.sampled_from([str(address), address.exploded, address.exploded.upper()]))
    port = draw(st.sampled_from(["", "", "", ":0", ":1", ":65535", ":65536"]))
    if port and address.version == 6:
        text = f"[{text}]"
    return text + port


def _raw_values(kind: ir.SubjectKind) -> st.SearchStrategy[str]:
    """Values the host can pass for a subject of this kind (and some it cannot)."""
    if kind is ir.SubjectKind.METHOD:
        return st.text(st.sampled_from(_TOKEN), min_size=1, max_size=6)
    if kind is ir.SubjectKind.PATH:
        pieces = st.lists(st.sampled_from(_PATH_PIECES), max_size=6).map("".join)
        return st.builds(str.__add__, st.sampled_from(["/"] * 5 + [""]), pieces)
    if kind is ir.SubjectKind.QUERY:
        pieces = st.lists(st.sampled_from(_QUERY_PIECES), max_size=6).map("".join)
        return st.builds(str.__add__, st.sampled_from(["/?", "/a?", "/?x-a=0&"]), pieces)
    if kind is ir.SubjectKind.COOKIE:
        return st.lists(st.sampled_from(_COOKIE_PIECES), min_size=1, max_size=5).map("".join)
    if kind is ir.SubjectKind.CLIENT:
        return _client_raw()
    return st.text(st.sampled_from(_RAW), min_size=1, max_size=8)


def _policy(subject: ir.Subject) -> ir.Policy:
    cmp = ir.Compare(subject=subject, op=ir.Op.EXISTS, span=SPAN)
    rule = ir.Rule(action=ir.Action.ALLOW, guard=ir.Guard.WHEN, condition=cmp, span=SPAN)
    return ir.Policy(name="p", rules=[rule], span=SPAN)


def _domain(subject: ir.Subject) -> tuple[Algebra, Re]:
    alg = Algebra()
    return alg, semantics.domain(alg, subject.kind, list_delimiter(subject))


@settings(max_examples=600, derandomize=True, deadline=None)
@given(st.sampled_from(SUBJECTS), st.data())
def test_every_value_the_evaluator_judges_is_in_the_domain(
    subject: ir.Subject, data: st.DataObject
) -> None:
    """Raw value → the evaluator's normalisation and refusals → in the analysis's domain."""
    raw = data.draw(_raw_values(subject.kind))
    passed = [raw]
    if subject.host_name == ":path":
        # What Envoy passes of the path (a space or `#` is refused, HTTP/1.1 trims).
        request = SentRequest("GET", raw, "a")
        passed = [
            dict(deliver(p, request))[b":path"].decode()
            for p in Protocol
            if rejected(p, request) is None
        ]
    for value in passed:
        _judged_values_are_in_the_domain(subject, value)


def _judged_values_are_in_the_domain(subject: ir.Subject, raw: str) -> None:
    policy = _policy(subject)
    headers = [(subject.host_name.encode(), raw.encode())]
    event(f"{subject.kind.value}: {'refused' if refusal(policy, headers) else 'judged'}")
    if refusal(policy, headers) is not None:
        return
    delimiter = list_delimiter(subject)
    alg, domain = _domain(subject)
    found = readings(policy, headers)
    for reading in found:
        value = reading[subject.key]
        if value is None:
            assert semantics.subject(subject.kind).extract is not None, subject.key
            continue  # the parameter or the cookie is not there
        text = value.decode()
        if delimiter is not None and delimiter in text:
            continue  # a list: several readings, each element is judged below
        if len(found) > 1 and semantics.subject(subject.kind).extract is not None:
            # A quoted cookie is read with and without its quotes; a parameter given
            # twice, as each value and all joined: the domain is one reading's.
            event(f"{subject.kind.value}: several readings")
            continue
        assert all(ord(c) <= MAX_CHAR for c in text)
        assert alg.accepts(domain, text), (subject.key, raw, text)


@settings(max_examples=600, derandomize=True, deadline=None)
@given(st.sampled_from(SUBJECTS), st.data())
def test_every_value_in_the_domain_is_one_the_evaluator_can_see(
    subject: ir.Subject, data: st.DataObject
) -> None:
    """A value in the domain → a request the host can pass → exactly that value, judged."""
    others = st.one_of([_raw_values(kind) for kind in ir.SubjectKind])
    text = data.draw(st.one_of(_raw_values(subject.kind), others))
    alg, domain = _domain(subject)
    event(f"{subject.kind.value}: {'in' if alg.accepts(domain, text) else 'outside'} the domain")
    if not alg.accepts(domain, text):
        return
    policy = _policy(subject)
    headers = build_request([(subject, text)])
    assert refusal(policy, headers) is None, (subject.key, text)
    assert [r[subject.key] for r in readings(policy, headers)] == [text.encode()]


@settings(max_examples=600, derandomize=True, deadline=None)
@given(st.sampled_from(SUBJECTS), st.data())
def test_every_reading_the_evaluator_judges_is_in_the_reading_domain(
    subject: ir.Subject, data: st.DataObject
) -> None:
    """Raw values, sent once or several times (lists, quotes, empty values) → every
    reading the evaluator judges is in `reading_domain`: what the analysis's claims about
    every request are decided over."""
    alg = Algebra()
    domain = semantics.reading_domain(alg, subject)
    if domain is semantics.domain(alg, subject.kind, list_delimiter(subject)):
        return  # one reading's domain: the test above covers it
    several = 1 if semantics.subject(subject.kind).pseudo else 3
    raw = data.draw(st.lists(_raw_values(subject.kind) | st.just(""), min_size=1, max_size=several))
    policy = _policy(subject)
    headers = [(subject.host_name.encode(), value.encode()) for value in raw]
    if refusal(policy, headers) is not None:
        return
    for reading in readings(policy, headers):
        value = reading[subject.key]
        if value is None:
            continue
        text = value.decode()
        if not all(ord(c) <= MAX_CHAR for c in text) or any(
            ord(c) < 0x20 and c != "\t" for c in text
        ):
            continue  # not a header value Envoy passes (the domains' own test covers it)
        event(f"{subject.kind.value}: {'several' if len(raw) > 1 else 'one'} value(s)")
        assert alg.accepts(domain, text), (subject.key, raw, text)


@settings(max_examples=600, derandomize=True, deadline=None)
@given(st.sampled_from(SUBJECTS), st.data())
def test_every_value_in_the_reading_domain_is_a_reading_of_the_witness(
    subject: ir.Subject, data: st.DataObject
) -> None:
    """A value in `reading_domain` → `build_request` → a request that has it as a reading
    (a list value sent once, a cookie's value in quotes, values joined)."""
    pieces = st.sampled_from(['"', ",", ", ", ";", "; ", " ", "\t", "a", "é"])
    text = data.draw(
        st.one_of(
            _raw_values(subject.kind),
            st.lists(pieces, max_size=6).map("".join),
        )
    )
    alg = Algebra()
    if not alg.accepts(semantics.reading_domain(alg, subject), text):
        return
    one = alg.accepts(semantics.domain(alg, subject.kind, list_delimiter(subject)), text)
    event(f"{subject.kind.value}: {'one reading' if one else 'several readings'}")
    policy = _policy(subject)
    headers = build_request([(subject, text)])
    assert refusal(policy, headers) is None, (subject.key, text)
    judged = [r[subject.key] for r in readings(policy, headers)]
    assert text.encode() in judged, (subject.key, text, headers)
    if one:
        assert judged == [text.encode()]


def test_readings_hold_lists_quotes_and_joined_values_one_reading_does_not() -> None:
    """The values that only a request with several readings has, by subject."""
    cases = {
        "user-agent": (["a, b", "a,b", "a, ", ", "], ["a, b "]),
        "cookie": (["a=1; b=2", "a=1; "], [" a=1"]),
        "x-role": (["a, ", "a, , "], ["a ", " a"]),
    }
    for name, (wide, outside) in cases.items():
        subject = ir.Subject(kind=ir.SubjectKind.HEADER, name=name, span=SPAN)
        alg = Algebra()
        one = semantics.domain(alg, subject.kind, list_delimiter(subject))
        every = semantics.reading_domain(alg, subject)
        for value in wide:
            assert alg.accepts(every, value) and not alg.accepts(one, value), (name, value)
        for value in outside:
            assert not alg.accepts(every, value), (name, value)
    cookie = ir.Subject(kind=ir.SubjectKind.COOKIE, name="s", span=SPAN)
    host = ir.Subject(kind=ir.SubjectKind.HOST, span=SPAN)
    for subject, wide, outside in (
        (cookie, ['"q"', " q ", '""', "\tq"], ["a;b"]),
        (host, ["a.com,b.com"], ["A.com", " a"]),
    ):
        alg = Algebra()
        one = semantics.domain(alg, subject.kind, list_delimiter(subject))
        every = semantics.reading_domain(alg, subject)
        for value in wide:
            assert alg.accepts(every, value) and not alg.accepts(one, value), value
        for value in outside:
            assert not alg.accepts(every, value), value


def test_domains_refuse_what_the_evaluator_never_judges() -> None:
    """Spot checks of the other direction: values the plug-in never judges are outside."""
    outside = {
        ir.SubjectKind.HEADER: [" a", "a\t", "a\x00b", "a\x7f"],
        ir.SubjectKind.PATH: ["a", "/a?b", "/a//b", "/./a", "/%2f", "/%41", "/a#b"],
        ir.SubjectKind.METHOD: ["", "G T", "G(T"],
        ir.SubjectKind.HOST: ["Example.com", "a,b", " a"],
        ir.SubjectKind.QUERY: ["a\ud800"],  # not UTF-8
        ir.SubjectKind.COOKIE: [" a", "a\t", "a;b", '"a"', '""', "a\x00"],
        ir.SubjectKind.CLIENT: [
            *["010.0.0.1", "10.0.0.1:80", "2001:db8::1", "256.0.0.1", "1.2.3", " 1.2.3.4"],
            *["0000:0000:0000:0000:0000:ffff:0a00:0001", "2001:0DB8:0000:0000:0000:0000:0000:0001"],
            *["::ffff:10.0.0.1", "[2001:0db8:0000:0000:0000:0000:0000:0001]", "fe80::1%eth0"],
        ],
    }
    assert set(outside) == set(ir.SubjectKind)
    for kind, values in outside.items():
        alg = Algebra()
        name = (
            None if semantics.subject(kind).pseudo and kind is not ir.SubjectKind.QUERY else "x-a"
        )
        subject = ir.Subject(kind=kind, name=name, span=SPAN)
        domain = semantics.domain(alg, kind, list_delimiter(subject))
        for value in values:
            assert not alg.accepts(domain, value), (kind, value)


# -- agreement: client address ranges ------------------------------------------------

CLIENT = ir.Subject(kind=ir.SubjectKind.CLIENT, span=SPAN)
IN_NETWORKS = semantics.operator(ir.Op.IN, ir.SubjectKind.CLIENT)


@st.composite
def _networks(draw: st.DrawFn) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    address = draw(st.ip_addresses())
    prefix = draw(
        st.one_of(
            st.integers(0, address.max_prefixlen),
            st.sampled_from([0, 8, 16, 24, 32, 48, 64, 96, 128]).filter(
                lambda p: p <= address.max_prefixlen
            ),
        )
    )
    return ipaddress.ip_network(f"{address}/{prefix}", strict=False)


@st.composite
def _addresses_near(
    draw: st.DrawFn, network: ipaddress.IPv4Network | ipaddress.IPv6Network
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Addresses at and around the range's ends, inside it, and anywhere."""
    top = 2**network.max_prefixlen - 1
    edge = int(draw(st.sampled_from([network.network_address, network.broadcast_address])))
    choice = draw(st.integers(0, 3))
    if choice == 0:
        number = edge + draw(st.integers(-3, 3))
    elif choice == 1:
        number = draw(st.integers(int(network.network_address), int(network.broadcast_address)))
    elif choice == 2:
        number = edge ^ (1 << draw(st.integers(0, network.max_prefixlen - 1)))
    else:
        number = draw(st.integers(0, top))
    return (
        ipaddress.ip_address(min(max(number, 0), top))
        if network.version == 4
        else (ipaddress.IPv6Address(min(max(number, 0), top)))
    )


def _text(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The address as `client_address` gives it (IPv4 dotted, IPv6 in full)."""
    return address.exploded if address.version == 6 else str(address)


@settings(max_examples=800, derandomize=True, deadline=None)
@given(_networks(), st.data())
def test_a_range_is_the_language_of_the_addresses_in_it(
    network: ipaddress.IPv4Network | ipaddress.IPv6Network, data: st.DataObject
) -> None:
    """An address's text is in a CIDR's language exactly when `ipaddress` (and the
    evaluator) put the address in the range; other spellings never are."""
    assert IN_NETWORKS.language is not None and IN_NETWORKS.holds is not None
    alg = Algebra()
    language = IN_NETWORKS.language(alg, str(network), False)
    other = ipaddress.ip_network("::/0" if network.version == 4 else "0.0.0.0/0")
    for _ in range(8):
        address = data.draw(_addresses_near(network))
        text = _text(address)
        inside = address in network
        event("inside" if inside else "outside")
        assert alg.accepts(language, text) == inside, (str(network), text)
        assert semantics.holds(IN_NETWORKS, str(network), False, text.encode()) == inside
        for spelling in {str(address), address.exploded.upper(), "0" + text}:
            if spelling != text:
                assert not alg.accepts(language, spelling), (str(network), spelling)
        stranger = data.draw(_addresses_near(other))
        assert not alg.accepts(language, _text(stranger)), (str(network), stranger)


@settings(max_examples=800, derandomize=True, deadline=None)
@given(_client_raw(), st.integers(0, 38), st.sampled_from("0123456789abcdefABCDEF.:[]"))
def test_the_client_domain_is_exactly_what_client_address_gives(
    raw: str, at: int, char: str
) -> None:
    """Every `client_address` value is in the domain, and every text in it (a real one
    or one with a character changed) is one `client_address` gives for itself."""
    alg = Algebra()
    [domain] = semantics.subject(ir.SubjectKind.CLIENT).domain(alg)
    value = semantics.client_address(raw.encode()).decode()
    assert alg.accepts(domain, value), (raw, value)
    for text in {value, raw, value[:at] + char + value[at + 1 :], value[:at] + value[at + 1 :]}:
        accepted = alg.accepts(domain, text)
        event("accepted" if accepted else "refused")
        assert accepted == (semantics.client_address(text.encode()).decode() == text), text
