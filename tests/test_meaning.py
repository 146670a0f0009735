"""What a policy means on what Envoy delivers: joined headers, Host, cookies,
whitespace, the path's normal form, and the responses Envoy can send.

The Envoy facts behind `codec.deliver` were measured with Envoy 1.40.0; these
tests pin the model and the evaluator's judgement of it.  (Agreement of the
compiled plug-in with the evaluator on the same requests is in
test_differential.py and below.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import compile_text
from hdrpolicy.backend.host import run_plugin
from hdrpolicy.codec import JOINED_HEADERS, Protocol, SentRequest, deliver, rejected
from hdrpolicy.diagnostics import Source
from hdrpolicy.evaluate import evaluate, path_in_normal_form
from hdrpolicy.frontend import ir
from hdrpolicy.frontend.pipeline import check_source
from hdrpolicy.runner import agreement

H1, H2 = Protocol.HTTP1, Protocol.HTTP2


def policy_of(text: str) -> ir.Policy:
    checked = check_source(Source("p.hp", text), "p")
    assert checked.ok and checked.policy is not None, checked.diagnostics
    return checked.policy


def sent(*headers: tuple[str, str], path: str = "/", host: str = "h.example") -> SentRequest:
    return SentRequest("GET", path, host, headers)


def value(protocol: Protocol, request: SentRequest, name: bytes) -> list[bytes]:
    return [v for k, v in deliver(protocol, request) if k == name]


# -- the codec model ------------------------------------------------------------------


def test_built_in_headers_arrive_joined_with_a_comma_on_both_protocols() -> None:
    request = sent(("User-Agent", "Mozilla/5.0"), ("user-agent", "curl/8.5"), ("x-role", "a"))
    for protocol in Protocol:
        assert value(protocol, request, b"user-agent") == [b"Mozilla/5.0,curl/8.5"]
    assert {"user-agent", "authorization", "accept", "content-type", "via"} <= JOINED_HEADERS
    assert "x-forwarded-for" in JOINED_HEADERS and "x-role" not in JOINED_HEADERS


def test_custom_headers_stay_separate_and_empty_values_add_nothing_to_a_join() -> None:
    request = sent(("x-role", "a"), ("x-role", "b"), ("accept", ""), ("accept", "x"))
    for protocol in Protocol:
        assert value(protocol, request, b"x-role") == [b"a", b"b"]
        assert value(protocol, request, b"accept") == [b"x"]


def test_host_cookie_and_whitespace_differ_per_protocol() -> None:
    request = sent(("host", "b.example"), ("cookie", "a=1"), ("cookie", "b=2"), ("x-a", " v\t"))
    assert value(H1, request, b":authority") == [b"h.example,b.example"]
    assert value(H2, request, b":authority") == [b"h.example"]
    assert value(H1, request, b"cookie") == [b"a=1", b"b=2"]
    assert value(H2, request, b"cookie") == [b"a=1; b=2"]
    assert value(H1, request, b"x-a") == [b"v"]
    assert value(H2, request, b"x-a") == [b" v\t"]


def test_requests_envoy_refuses_before_any_filter() -> None:
    assert rejected(H1, sent(path="/a#frag")) is not None
    assert rejected(H2, sent(path="/a#frag")) is not None
    # Measured with Envoy 1.40: a space or tab in the path is refused (400, or a
    # reset stream); HTTP/1.1's request line drops those around it.
    for path in ("/a ?x", "/a\tb"):
        assert rejected(H1, sent(path=path)) is not None
        assert rejected(H2, sent(path=path)) is not None
    assert rejected(H2, sent(path="/a\t")) is not None and rejected(H1, sent(path="/a\t")) is None
    assert value(H1, sent(path=" /a\t"), b":path") == [b"/a"]
    lower = SentRequest("get", "/", "h")
    assert rejected(H1, lower) is not None and rejected(H2, lower) is None
    assert rejected(H2, sent(("connection", "close"))) is not None
    assert rejected(H1, sent(("connection", "close"))) is None


# -- joined values are lists -------------------------------------------------------------


@pytest.mark.parametrize("protocol", list(Protocol))
def test_a_joined_user_agent_cannot_hide_curl(protocol: Protocol) -> None:
    """The issue's example: `Mozilla/5.0` then `curl/8.5` reaches the plug-in joined."""
    policy = policy_of('deny 403 when header user-agent matches "^curl/"\n')
    request = sent(("user-agent", "Mozilla/5.0"), ("user-agent", "curl/8.5"))
    decision = evaluate(policy, deliver(protocol, request))
    assert decision.status == 403
    assert decision.readings == 3  # the whole value and each element


def test_an_allow_must_hold_for_the_whole_value_and_each_element() -> None:
    policy = policy_of('allow when header authorization == "Bearer good"\ndefault deny 401\n')
    one = sent(("authorization", "Bearer good"))
    two = sent(("authorization", "Bearer good"), ("authorization", "Bearer evil"))
    for protocol in Protocol:
        assert evaluate(policy, deliver(protocol, one)).allowed
        assert evaluate(policy, deliver(protocol, two)).status == 401


def test_custom_header_values_are_not_split() -> None:
    policy = policy_of('deny 403 when header x-tags == "b"\n')
    assert evaluate(policy, deliver(H1, sent(("x-tags", "a,b")))).allowed
    assert evaluate(policy, deliver(H1, sent(("x-tags", "a"), ("x-tags", "b")))).status == 403


def test_a_repeated_host_is_judged_as_each_host() -> None:
    policy = policy_of('deny 403 when host == "admin.internal"\n')
    request = sent(("Host", "Admin.Internal:8080"), host="public.example")
    assert evaluate(policy, deliver(H1, request)).status == 403
    assert evaluate(policy, deliver(H2, request)).allowed  # HTTP/2 keeps `:authority`


def test_cookies_are_judged_one_by_one_however_they_arrived() -> None:
    policy = policy_of('deny 403 when header cookie == "debug=1"\n')
    for protocol in Protocol:
        assert evaluate(policy, deliver(protocol, sent(("cookie", "a=1; debug=1")))).status == 403
        separate = sent(("cookie", "a=1"), ("cookie", "debug=1"))
        assert evaluate(policy, deliver(protocol, separate)).status == 403


def test_readings_are_counted_once_each_and_bounded() -> None:
    policy = policy_of('deny 403 when header accept == "x"\n')
    same = [(b"accept", b"a,a,a")]
    assert evaluate(policy, same).readings == 2  # "a,a,a" and "a"
    many = [(b"accept", ",".join(str(i) for i in range(ir.MAX_READINGS)).encode())]
    decision = evaluate(policy, many)
    assert (decision.status, decision.too_many_readings) == (ir.TOO_MANY_READINGS_STATUS, True)


# -- whitespace -----------------------------------------------------------------------------


def test_a_value_with_surrounding_whitespace_is_refused() -> None:
    """Only HTTP/2 delivers one; the policy judges trimmed values only."""
    policy = policy_of('deny 403 when header x-role == "admin"\n')
    request = sent(("x-role", " admin"))
    assert evaluate(policy, deliver(H1, request)).status == 403
    refused = evaluate(policy, deliver(H2, request))
    assert (refused.status, refused.body) == (ir.BAD_VALUE_STATUS, ir.BAD_VALUE_BODY.encode())
    # A header the policy does not read is not its business.
    assert evaluate(policy, deliver(H2, sent(("x-other", " a ")))).allowed


# -- the path -----------------------------------------------------------------------------

BYPASSES = [
    "/public/../admin/users",
    "/%61dmin/users",
    "//admin/users",
    "/public%2F..%2Fadmin/users",
    "/public%2f..%2fadmin/users",
    "/public/..;/admin/users",
    "/public\\..\\admin/users",
    "/%2e%2e/admin/users",
    "/admin%5Cusers",
    "/api/v1/../../admin",
    "/a%6",
    "/a%3ab",
    "admin",
    "",
]


@pytest.mark.parametrize("path", BYPASSES)
def test_paths_not_in_normal_form(path: str) -> None:
    assert not path_in_normal_form(path.encode())


@pytest.mark.parametrize(
    "path", ["/", "/admin/users", "/a/b/", "/a%20b", "/caf%C3%A9", "/.well-known/x", "/x?y=/../"]
)
def test_paths_in_normal_form(path: str) -> None:
    assert path_in_normal_form(path.encode())


@pytest.mark.parametrize("protocol", list(Protocol))
def test_no_path_variant_gets_past_a_path_rule(protocol: Protocol) -> None:
    deny = policy_of('deny 403 when path starts_with "/admin"\n')
    allow = policy_of('allow when path starts_with "/api/v1/"\ndefault deny 404\n')
    for path in BYPASSES:
        for policy in (deny, allow):
            decision = evaluate(policy, deliver(protocol, sent(path=path)))
            assert (decision.status, decision.body) == (400, ir.BAD_PATH_BODY.encode()), path
    assert evaluate(allow, deliver(protocol, sent(path="/api/v1/users"))).allowed


def test_a_policy_that_does_not_read_the_path_does_not_refuse_it() -> None:
    policy = policy_of('deny 403 when method == "DELETE"\n')
    assert evaluate(policy, deliver(H1, sent(path="/a/../b"))).allowed


# -- responses ------------------------------------------------------------------------------


def test_a_response_without_a_body_has_no_content_type() -> None:
    """Envoy drops `content-type` from an empty local reply (`prepareLocalReply`)."""
    policy = policy_of('deny 403 when header a exists\ndeny 429 "slow" when header b exists\n')
    assert evaluate(policy, [(b"a", b"1")]).headers == ()
    assert evaluate(policy, [(b"b", b"1")]).headers == ((b"content-type", b"text/plain"),)


@pytest.mark.slow
def test_the_plugin_refuses_and_judges_exactly_as_the_evaluator(tmp_path: Path) -> None:
    text = "\n".join(
        [
            'deny 403 "admin" when path starts_with "/admin"',
            'deny 403 "curl" when header user-agent matches "^curl/"',
            'deny 403 "host" when host == "admin.internal"',
            'deny 403 "cookie" when header cookie == "debug=1"',
            'deny 451 when header x-role == "admin"',
        ]
    )
    result = compile_text(text, tmp_path)
    assert result.checked.ok and result.checked.policy is not None
    requests = [
        *(sent(path=p) for p in BYPASSES),
        sent(("user-agent", "Mozilla/5.0"), ("user-agent", "curl/8.5")),
        sent(("Host", "admin.internal"), host="x"),
        sent(("cookie", "a=1"), ("cookie", "debug=1")),
        sent(("x-role", "\tadmin")),
        sent(("x-role", "admin")),
        sent(("user-agent", ",".join("x" * i for i in range(1, 80)))),
    ]
    delivered = [deliver(p, r) for p in Protocol for r in requests]
    decisions = [evaluate(result.checked.policy, d) for d in delivered]
    plugin = run_plugin(result.out_dir / "plugin.wasm", delivered)
    for request, decision, got in zip(delivered, decisions, plugin, strict=True):
        assert agreement(decision, got) is None, (request, agreement(decision, got))
    assert all(not d.allowed for d in decisions[: len(BYPASSES)])
    assert any(
        line.startswith("policy: path not in normal form: denied with 400")
        for line in plugin[0].debug
    )
    # Empty-bodied 451: no content-type from the plug-in either.
    assert plugin[len(requests) - 2].headers == []


@pytest.mark.slow
def test_not_a_word_boundary_is_judged_between_characters_as_the_plugin_does(
    tmp_path: Path,
) -> None:
    """RE2 alone would find `\\B` between the bytes of U+212A; Go's regexp, and so the
    plug-in and the evaluator, look between characters only."""
    result = compile_text('deny 403 "no" when header x matches "\\\\B"', tmp_path)
    assert result.checked.ok and result.checked.policy is not None
    values = ["K\u212aK", "1\u212a1", "K\u212a", "\u212a\u212a", "ab", "a b", "é"]
    delivered = [deliver(Protocol.HTTP2, sent(("x", v))) for v in values]
    decisions = [evaluate(result.checked.policy, d) for d in delivered]
    plugin = run_plugin(result.out_dir / "plugin.wasm", delivered)
    for value, decision, got in zip(values, decisions, plugin, strict=True):
        assert agreement(decision, got) is None, (value, agreement(decision, got))
    assert [d.allowed for d in decisions] == [True, True, False, False, False, True, False]
