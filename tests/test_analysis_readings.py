"""The analysis's "never" and "always" verdicts hold for every request, list values included.

A value Envoy may have joined (`user-agent`, `accept`, `host`), the `cookie`
header and a cookie value in double quotes each give a request several
readings, and the evaluator judges each one, the value read whole included.
HP401 and HP402 are decided over every such reading, so a rule that fires on
`user-agent: a, b` sent once is never called dead; HP403 and `diff` say they
are about requests with one reading, and `diff` still lists a change only a
list value shows.
"""

from __future__ import annotations

from typing import assert_never
from urllib.parse import quote_plus

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hdrpolicy import semantics
from hdrpolicy.analysis.diff import diff_policies, render_text
from hdrpolicy.analysis.findings import analyse
from hdrpolicy.diagnostics import Diagnostic, Source, Span
from hdrpolicy.evaluate import Headers, evaluate, fires, readings, refusal
from hdrpolicy.fmt import format_policy
from hdrpolicy.frontend import ir
from hdrpolicy.frontend.pipeline import check_source
from policy_strategies import COOKIE_NAMES, HEADER_NAMES, QUERY_NAMES, policies

BASE: Headers = [(b":method", b"GET"), (b":path", b"/"), (b":authority", b"example.com")]


def _analyse(text: str) -> tuple[ir.Policy, list[Diagnostic]]:
    checked = check_source(Source("t.hp", text), "t")
    assert checked.policy is not None and checked.ok, checked.diagnostics
    return checked.policy, analyse(checked.policy, checked.source, 10**6)


def _checked(text: str) -> ir.Policy:
    checked = check_source(Source("t.hp", text), "t")
    assert checked.policy is not None and checked.ok, checked.diagnostics
    return checked.policy


def _codes(found: list[Diagnostic]) -> list[tuple[str, int]]:
    return [(str(d.code), d.span.line) for d in found]


# -- the reported cases ----------------------------------------------------------


def test_a_value_with_the_list_delimiter_sent_once_is_not_always_false() -> None:
    """Each rule fires on a request that sends the value once: no HP402, no HP401,
    and no HP403 for a rule that only such a request reaches."""
    cases = [
        ('header user-agent == "a, b"', [(b"user-agent", b"a, b")]),
        ('header cookie == "a=1; b=2"', [(b"cookie", b"a=1; b=2")]),
        ('cookie s == "\\"q\\""', [(b"cookie", b's="q"')]),
        ('host == "a.com,b.com"', [(b":authority", b"a.com,b.com")]),
        ('header user-agent != "a, b"', [(b"user-agent", b"a, b")]),
    ]
    for condition, sent in cases:
        text = f'deny 403 "x" when {condition}\ndeny 401 "y" when method == "PUT"\n'
        policy, found = _analyse(text)
        assert _codes(found) == [], (condition, [d.message for d in found])
        request = [*BASE[:2], *[(k, v) for k, v in BASE[2:] if k not in dict(sent)], *sent]
        decision = evaluate(policy, request)
        expected = policy.rules[0] if "!=" not in condition else None
        if expected is not None:
            assert decision.rule is expected, (condition, decision)
        else:  # `!=`: the reading `a, b` makes it false, so it is not always true
            assert any(
                not fires(policy.rules[0], reading, []) for reading in readings(policy, request)
            )


def test_a_joined_header_in_a_list_of_values_with_commas() -> None:
    text = (
        'deny 403 "a" when header accept in ["text/html,application/json", "x,y"]\n'
        'deny 401 "b" when header accept == "x,y"\n'
        'deny 402 "c" when header accept in ["z", "x,y"]\n'
    )
    policy, found = _analyse(text)
    # Line 2 and line 3's `x,y` are taken by line 1: truly never decided, by any reading.
    assert _codes(found) == [("HP401", 2)], [d.message for d in found]
    [dead] = found
    assert "lists in values included" in dead.notes[-1]
    for value in (b"text/html,application/json", b"x,y"):
        assert evaluate(policy, [*BASE, (b"accept", value)]).rule is policy.rules[0]
    assert evaluate(policy, [*BASE, (b"accept", b"z")]).rule is policy.rules[2]


def test_a_rule_only_a_list_value_reaches_is_not_called_dead() -> None:
    """One reading can never pass the `allow` and reach line 2; `a,b` sent once does:
    the reading `a,b` is denied, so the request is."""
    text = (
        'allow when header user-agent matches "^[^,]*$"\n'
        'deny 401 "lists" when header user-agent contains "a"\n'
    )
    policy, found = _analyse(text)
    assert "HP401" not in [d.code for d in found], [d.message for d in found]
    decision = evaluate(policy, [*BASE, (b"user-agent", b"a,b")])
    assert decision.rule is policy.rules[1] and decision.status == 401


def test_a_quoted_cookie_value_and_its_unquoted_reading() -> None:
    """`s=" q "` is read as `" q "` and ` q `: neither is always false."""
    text = (
        'deny 403 "padded" when cookie s matches "^ q $"\n'
        'deny 401 "quoted" when cookie s starts_with "\\"" and cookie s ends_with "\\""\n'
    )
    policy, found = _analyse(text)
    assert [d.code for d in found if d.code in ("HP401", "HP402")] == []
    assert evaluate(policy, [*BASE, (b"cookie", b's=" q "')]).rule is policy.rules[0]
    assert evaluate(policy, [*BASE, (b"cookie", b's="x"')]).rule is policy.rules[1]


def test_a_true_verdict_about_list_values_is_still_reported() -> None:
    """A cookie's value never holds `;` in any reading (HP402 stays, exactly);
    `header cookie` always exists when `cookie s` does."""
    text = (
        'deny 403 "a" when cookie s matches ";"\n'
        'deny 401 "b" when header x-a matches "^[^,]*$" and header x-a contains ","\n'
    )
    _, found = _analyse(text)
    assert _codes(found) == [("HP402", 1), ("HP402", 2)], [d.message for d in found]


def test_redundancy_is_claimed_for_requests_with_one_reading_and_says_so() -> None:
    text = (
        'deny 403 "a" when header user-agent == "x"\ndeny 403 "a" when header user-agent == "x"\n'
    )
    _, found = _analyse(text)
    [redundant] = [d for d in found if d.code == "HP403"]
    assert redundant.message.endswith("for requests with one reading")
    assert "no value read as a list" in redundant.notes[-1]


def test_diff_lists_a_change_only_a_list_value_shows() -> None:
    old = _checked(
        'deny 403 "ua" when header user-agent == "a, b"\n'
        'list bad = ["x,y", "z"]\n'
        'deny 403 "acc" when header accept in bad\n'
    )
    new = _checked('list bad = ["z"]\ndeny 403 "acc" when header accept in bad\n')
    result = diff_policies(old, new, steps=10**6)
    assert not result.equivalent and result.complete
    for change in result.changes:
        assert change.confirmed and change.readings > 1
        before, after = evaluate(old, change.witness), evaluate(new, change.witness)
        assert (before.allowed, before.status, before.body) != (
            after.allowed,
            after.status,
            after.body,
        )
    witnesses = [dict(c.witness).get(b"user-agent") for c in result.changes]
    assert b"a, b" in witnesses
    [value] = result.values
    assert value.value == "x,y" and [c.kind for c in value.changes] == ["now allowed"]
    assert dict(value.changes[0].witness)[b"accept"] == b"x,y"
    text = render_text(result, "old", "new")
    assert "those marked, only with several readings" in text
    assert "(a request with 3 readings)" in text
    same = diff_policies(old, old, steps=10**6)
    assert same.equivalent
    assert "equivalent for requests with one reading" in render_text(same, "o", "o")


# -- every verdict, against random requests -----------------------------------------


def _literals(policy: ir.Policy) -> list[str]:
    found = {"", "a", "x"}
    for rule in policy.rules:
        if rule.condition is not None:
            for cmp in ir.comparisons(rule.condition):
                found.update(v.value for v in cmp.values)
    return sorted(found)


@st.composite
def _requests(draw: st.DrawFn, policy: ir.Policy) -> Headers:
    """Requests that hit the policy's literals, as list values (`,`, `, `, `; `), in
    double quotes, padded inside quotes, sent twice, with an empty value."""
    atom = st.sampled_from(_literals(policy))
    joined = st.builds(
        lambda values, glue: glue.join(values),
        st.lists(atom, min_size=2, max_size=3),
        st.sampled_from([",", ", ", ";", "; "]),
    )
    value = st.one_of(atom, joined, atom.map(lambda v: f'"{v}"'), atom.map(lambda v: f'" {v} "'))
    method = draw(st.sampled_from(["GET", "POST", *(v for v in _literals(policy) if v.isalpha())]))
    path = draw(st.sampled_from(["/", "/api/x", *(v for v in _literals(policy) if v[:1] == "/")]))
    params = draw(st.lists(st.tuples(st.sampled_from(QUERY_NAMES), value), max_size=2))
    if params:
        path += "?" + "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in params)
    host = draw(value).lower().strip(" ") or "example.com"
    out: Headers = [(b":method", method.encode()), (b":path", path.encode())]
    out.append((b":authority", host.encode()))
    if draw(st.booleans()):
        address = draw(st.sampled_from(["10.1.2.3", "192.168.1.9", "::1", "2001:db8::1"]))
        out.append((ir.CLIENT_ADDRESS.encode(), address.encode()))
    crumbs = draw(st.lists(st.tuples(st.sampled_from(COOKIE_NAMES), value), max_size=3))
    if crumbs:
        out.append((b"cookie", "; ".join(f"{k}={v}" for k, v in crumbs).encode()))
    for name, text in draw(
        st.lists(st.tuples(st.sampled_from([*HEADER_NAMES, "cookie", "accept"]), value))
    ):
        out.append((name.encode(), text.strip(" ").encode()))
    return out


def _conditions(policy: ir.Policy) -> dict[Span, ir.Condition]:
    out: dict[Span, ir.Condition] = {}

    def walk(cond: ir.Condition) -> None:
        out.setdefault(cond.span, cond)
        match cond:
            case ir.Not():
                walk(cond.operand)
            case ir.And() | ir.Or():
                for op in cond.operands:
                    walk(op)
            case _:
                pass

    for rule in policy.rules:
        if rule.condition is not None:
            walk(rule.condition)
    return out


def _listy(cond: ir.Condition, data: st.DataObject) -> ir.Condition:
    """The condition with some literals made list-shaped (`v, w`, `v,w`, `v; w`, `"v"`),
    so verdicts about values only several readings have are put to the test."""
    match cond:
        case ir.Compare():
            meaning = semantics.comparison(cond)
            if cond.list_name is not None or meaning.pattern or meaning.networks:
                return cond
            values = []
            for lit in cond.values:
                shape = data.draw(
                    st.sampled_from(["{v}", "{v}", "{v}, {v}a", "{v},b", "{v}; c", '"{v}"'])
                )
                values.append(lit.model_copy(update={"value": shape.format(v=lit.value)}))
            return cond.model_copy(update={"values": values})
        case ir.Not():
            return cond.model_copy(update={"operand": _listy(cond.operand, data)})
        case ir.And() | ir.Or():
            operands = [_listy(op, data) for op in cond.operands]
            return cond.model_copy(update={"operands": operands})
        case _:
            assert_never(cond)


def _holds(cond: ir.Condition, reading: dict[str, bytes | None]) -> bool:
    probe = ir.Rule(action=ir.Action.ALLOW, guard=ir.Guard.WHEN, condition=cond, span=cond.span)
    return fires(probe, reading, [])


@settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(policies(), st.data())
def test_every_never_and_always_verdict_survives_random_requests(
    generated: ir.Policy, data: st.DataObject
) -> None:
    """HP401: no reading of any request is decided by the rule (so no request is);
    HP402: no reading gives the condition its other value.  Some literals are made
    list-shaped first (`_listy`), where a one-reading analysis would claim falsely."""
    rules = [
        r if r.condition is None else r.model_copy(update={"condition": _listy(r.condition, data)})
        for r in generated.rules
    ]
    checked = check_source(
        Source("t.hp", format_policy(generated.model_copy(update={"rules": rules}))), "t"
    )
    if not checked.ok or checked.policy is None:  # e.g. a cookie value with `;` (HP210)
        checked = check_source(Source("t.hp", format_policy(generated)), "t")
    assert checked.ok and checked.policy is not None, checked.diagnostics
    policy = checked.policy
    found = analyse(policy, checked.source)
    found = [d for d in found if d.code in ("HP401", "HP402")]
    event(f"{len(found)} verdict(s)")
    if not found:
        return
    conditions = _conditions(policy)
    by_span = {rule.span: i for i, rule in enumerate(policy.rules)}
    for request in data.draw(st.lists(_requests(policy), min_size=50, max_size=50)):
        if refusal(policy, request) is not None:
            continue
        every = readings(policy, request)
        event(f"{'several readings' if len(every) > 1 else 'one reading'}")
        for d in found:
            if d.code == "HP402":
                cond = conditions[d.span]
                value = "always true" in d.message
                for reading in every:
                    assert _holds(cond, reading) is value, (d.message, request, reading)
                continue
            i = by_span[d.span]
            rule = policy.rules[i]
            assert evaluate(policy, request).rule is not rule, (d.message, request)
            for reading in every:
                first = next((r for r in policy.rules if fires(r, reading, [])), None)
                assert first is not rule, (d.message, request, reading)
