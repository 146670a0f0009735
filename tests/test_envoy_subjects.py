"""Through a real Envoy: `query`, `cookie`, `client` and named lists decide what the
reference evaluator decides on `codec.deliver` of the same request, over HTTP/1.1
and HTTP/2.

One Envoy carries every policy (a listener each).  The client address is the
loopback address a request is sent from (Linux routes all of 127.0.0.0/8 to
`lo`), or what `x-forwarded-for` names: the test listeners keep Envoy's
defaults, as `hdrpolicy test --proxy envoy` does, and `codec.source_address`
says what Envoy then reports.  One listener has the generated envoy.yaml's
`use_remote_address: true`, where the header cannot choose the address.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest

from envoy_support import Proxy, checked_text, envoy_with, policy_of, wasm_of
from hdrpolicy import codec, policytests, runner, semantics
from hdrpolicy.codec import Protocol, SentRequest, deliver
from hdrpolicy.diagnostics import Source
from hdrpolicy.evaluate import Decision, evaluate
from hdrpolicy.frontend import ir
from hdrpolicy.policytests import Case, Expectation
from hdrpolicy.proxy import clients
from hdrpolicy.runner import describe_response, envoy_agreement

# Starts Envoy or builds Go programs: `scripts/test --fast` skips it.
pytestmark = pytest.mark.slow

QUERY = """\
list blocked_tenants = ["evil", "banned co"]
deny 403 "debugging is off" when query debug exists
deny 403 "tenant blocked" when query tenant in blocked_tenants
deny 429 "page too large" when query limit == "1000"
deny 401 "needs a key" unless query "api key" exists or path starts_with "/public"
"""

COOKIE = """\
list staff = ["alice", "bob"]
deny 403 "beta closed" when cookie beta == "on"
deny 403 "staff only" when path starts_with "/staff" and cookie user not in staff
deny 401 "no session" unless cookie session exists
"""

CLIENT = """\
list partners = ["192.0.2.0/24", "2001:db8::/32"]
deny 403 "private network" when client in ["10.0.0.0/8"]
deny 403 "partner" when client in partners
deny 451 "host two" when client in ["127.0.0.2/32"]
allow when client in ["127.0.0.0/8"]
default deny 401 "outside"
"""

POLICIES = {"query": QUERY, "cookie": COOKIE, "client": CLIENT}
# Listener → (policy, Envoy's path normalisation on).
LISTENERS = {
    "query": ("query", False),
    "query-normalised": ("query", True),
    "cookie": ("cookie", False),
    "client": ("client", False),
    "client-edge": ("client", True),
}
EDGE = frozenset({"client-edge"})

KEY = "api+key=k"
QUERY_PATHS = [
    "/v1/items",
    "/public/x",
    f"/v1/items?{KEY}",
    "/v1/items?api%20key=k",
    "/v1/items?api%20Key=k",
    "/v1/items?API+KEY=k",
    "/v1/items?api+key",
    f"/v1?{KEY}&debug",
    f"/v1?{KEY}&debug=0",
    f"/v1?{KEY}&tenant=evil",
    f"/v1?{KEY}&tenant=banned+co",
    f"/v1?{KEY}&tenant=banned%20co",
    f"/v1?{KEY}&tenant=Banned%20Co",
    f"/v1?{KEY}&tenant=ok&tenant=evil",
    f"/v1?{KEY}&tenant=ok&tenant=fine",
    f"/v1?{KEY}&ten%61nt=evil",
    f"/v1?{KEY}&limit=1000",
    f"/v1?{KEY}&limit=%31000",
    f"/v1?{KEY}&limit=1000&limit=10",
    f"/v1?{KEY}&limit=+1000",
    f"/v1?{KEY}&q=%zz",
    f"/v1?{KEY}&q=%",
    f"/v1?{KEY}&q=%4",
    f"/v1?q=%zz&{KEY}",
    f"/v1?{KEY}&q=%2F&r=%2f&s=%5C",
    f"/v1?;{KEY}",
    f"/v1?&&{KEY}&&=v&",
    f"/v1??{KEY}",
    f"/v1?x=1?{KEY}",
    "/v1/../public?x=1",
    f"//v1?{KEY}",
    f"/v1/%2e%2e/public?{KEY}",
    "/public?debug=%zz",
    "/public?",
]

COOKIES: list[tuple[tuple[str, str], ...]] = [
    (),
    (("cookie", "session=1"),),
    (("cookie", "session=1"), ("cookie", "beta=on")),
    (("cookie", "session=1; beta=on"),),
    (("Cookie", "beta=off; session=1; beta=on"),),
    (("cookie", "beta=off"), ("cookie", "session=1"), ("cookie", "beta=on")),
    (("cookie", " session=1 "), ("cookie", "\tbeta=on\t")),
    (("cookie", "session"),),
    (("cookie", "session="),),
    (("cookie", "sessions=1"),),
    (("cookie", "Session=1"),),
    (("cookie", "session=1"), ("cookie", "")),
    (("cookie", "session=1;;beta=on"),),
    (("cookie", 'session=1; beta="on"'),),
    (("cookie", "session=1; user=alice"),),
    (("cookie", 'session=1; user="alice"'),),
    (("cookie", "session=1; user=carol"),),
    (("cookie", "session=1; user=alice"), ("cookie", "user=carol")),
    (("cookie", "session=1"), ("cookie", "user=bob")),
    (("cookie", "session=1; user = bob "),),
    (("x-cookie", "session=1"),),
]
COOKIE_PATHS = ["/", "/staff/report"]

PEERS = ["127.0.0.1", "127.0.0.2", "127.0.0.3:40000"]
FORWARDED = [
    None,
    "10.1.2.3",
    "192.0.2.7",
    "203.0.113.5",
    "2001:db8::5",
    "2001:db9::1",
    "::ffff:10.0.0.1",
    "fe80::1%1",
    "127.0.0.2",
    "10.1.2.3, 127.0.0.1",
    "127.0.0.1, 10.1.2.3",
    "10.1.2.3,",
    "[10.1.2.3]",
    "10.1.2.3:80",
    "unknown",
    " 192.0.2.9 ",
]


def _forwarded(value: str | None) -> tuple[tuple[str, str], ...]:
    return () if value is None else (("x-forwarded-for", value),)


def client_requests() -> list[SentRequest]:
    return [
        SentRequest("GET", "/", "a", _forwarded(value), peer)
        for peer in PEERS
        for value in FORWARDED
    ]


@pytest.fixture(scope="module")
def proxy() -> Iterator[Proxy]:
    wasms = {name: wasm_of(checked_text(text, name)) for name, text in POLICIES.items()}
    listeners = {name: (wasms[policy], norm) for name, (policy, norm) in LISTENERS.items()}
    with envoy_with(listeners, edge=EDGE) as running:
        yield running


def _policy(listener: str) -> ir.Policy:
    name = LISTENERS[listener][0]
    return policy_of(checked_text(POLICIES[name], name))


def _send(
    proxy: Proxy, listener: str, protocol: Protocol, request: SentRequest
) -> tuple[clients.Response, bool]:
    source = clients.loopback_source(request.client) if request.client else None
    proxy.upstream.take()
    response = clients.send(protocol, proxy.port(listener), request, source)
    return response, bool(proxy.upstream.take())


def _check(
    proxy: Proxy,
    listener: str,
    requests: list[SentRequest],
    model: SentRequest | None = None,
) -> list[Decision]:
    """Send each request; Envoy must do what the evaluator decides.  Returns the decisions."""
    policy = _policy(listener)
    failures, decisions = [], []
    for request in requests:
        for protocol in Protocol:
            if codec.rejected(protocol, request):
                continue
            judged = request if model is None else model
            decision = evaluate(policy, deliver(protocol, judged))
            decisions.append(decision)
            response, reached = _send(proxy, listener, protocol, request)
            token = proxy.upstream.token
            why = envoy_agreement(decision, response, reached, token, request.method)
            if why is not None:
                failures.append(
                    f"{listener} {protocol.value} {request}: {why}"
                    f" (Envoy: {describe_response(response, reached)})"
                )
    assert failures == [], "\n".join(failures)
    return decisions


def _outcomes(decisions: list[Decision]) -> set[str]:
    return {"allow" if d.allowed else d.body.decode() for d in decisions}


def test_query_rules_decide_as_the_evaluator_decides(proxy: Proxy) -> None:
    requests = [SentRequest("GET", path, "a", client="127.0.0.1") for path in QUERY_PATHS]
    raw = _check(proxy, "query", requests)
    # Envoy's normalisation rewrites the other paths before the plug-in sees them.
    normal = [r for r in requests if semantics.path_in_normal_form(r.path.encode())]
    normalised = _check(proxy, "query-normalised", normal)
    want = {
        "allow",
        "debugging is off",
        "tenant blocked",
        "page too large",
        "needs a key",
        ir.BAD_QUERY_BODY,
    }
    assert want <= _outcomes(raw), _outcomes(raw)
    assert want <= _outcomes(normalised), _outcomes(normalised)
    assert any(d.status == ir.BAD_QUERY_STATUS for d in raw)


def test_the_query_reaches_the_service_as_sent(proxy: Proxy) -> None:
    """Envoy's path normalisation stops at the first `?`: what the plug-in read is
    what the service gets."""
    for path in (f"/public/x?{KEY}&q=a+b&r=%2F&s=%41;t=//../", "/public?&&x=&=v&"):
        for protocol in Protocol:
            proxy.upstream.take()
            request = SentRequest("GET", path, "a")
            response = clients.send(protocol, proxy.port("query-normalised"), request)
            assert response.status == 200
            assert [r.path for r in proxy.upstream.take()] == [path]


def test_cookie_rules_decide_as_the_evaluator_decides(proxy: Proxy) -> None:
    requests = [
        SentRequest("GET", path, "a", headers, "127.0.0.1")
        for path in COOKIE_PATHS
        for headers in COOKIES
    ]
    decisions = _check(proxy, "cookie", requests)
    assert {"allow", "beta closed", "staff only", "no session"} <= _outcomes(decisions)


def test_client_rules_decide_as_the_evaluator_decides_on_the_address_envoy_reports(
    proxy: Proxy,
) -> None:
    decisions = _check(proxy, "client", client_requests())
    assert {"allow", "private network", "partner", "host two", "outside"} == _outcomes(decisions)


def test_sent_from_127_0_0_2_or_127_0_0_1_against_a_slash_32(proxy: Proxy) -> None:
    policy = _policy("client")
    for protocol in Protocol:
        for peer, status in (("127.0.0.2", 451), ("127.0.0.1", 200)):
            request = SentRequest("GET", "/", "a", client=peer)
            decision = evaluate(policy, deliver(protocol, request))
            assert (decision.status or 200) == status
            response, reached = _send(proxy, "client", protocol, request)
            assert (response.status, reached) == (status, status == 200), (peer, protocol)


def test_with_use_remote_address_the_header_cannot_choose_the_client(proxy: Proxy) -> None:
    """The generated envoy.yaml's setting: the address is the TCP peer's, whatever
    `x-forwarded-for` says (`CLIENT` reads nothing else, so the peer alone decides)."""
    for request in client_requests():
        peer_only = replace(request, headers=())
        decisions = _check(proxy, "client-edge", [request], model=peer_only)
        assert all(d.allowed or d.status == 451 for d in decisions), request


def test_the_client_address_envoy_reports_is_normalised_as_the_plugin_reads_it() -> None:
    """What `codec.source_address` gives for the forwarded addresses above is an
    address `semantics.client_address` reads (or the peer): no request here
    leaves the subject empty by accident."""
    for request in client_requests():
        delivered = dict(deliver(Protocol.HTTP1, request))[codec.CLIENT_ADDRESS.encode()]
        forwarded = dict(request.headers).get("x-forwarded-for", "")
        assert semantics.client_address(delivered) or "%" in forwarded, request


@dataclass(frozen=True)
class _ClientCase(Case):
    """A case sent from `client` (what a tests file's `client:` gives)."""

    client: str = "127.0.0.1"

    def request(self) -> SentRequest:
        return replace(super().request(), client=self.client)


def test_hdrpolicy_test_sends_each_case_from_its_client_or_says_why_not() -> None:
    checked = checked_text(CLIENT, "client")
    cases: list[Case] = [
        _ClientCase("node", 1, "GET", "/", "a", (), Expectation(True), "127.0.0.1"),
        _ClientCase("host two", 2, "GET", "/", "a", (), Expectation(False, 451), "127.0.0.2"),
        _ClientCase(
            "forwarded",
            3,
            "GET",
            "/",
            "a",
            (("x-forwarded-for", "10.1.2.3"),),
            Expectation(False, 403, "private network"),
            "127.0.0.1",
        ),
        _ClientCase("far", 4, "GET", "/", "a", (), Expectation(False, 403, "partner"), "192.0.2.7"),
    ]
    tests = policytests.TestFile(Source("client.tests.yaml", ""), cases)
    report = runner.run(checked, tests, proxy=True)
    assert report.error is None and report.failed == 0, runner.render_text([report])
    sent = {r.case.name: [x.envoy for x in r.runs] for r in report.results}
    assert all(
        response is not None
        for name in ("node", "host two", "forwarded")
        for response in sent[name]
    )
    assert [x.envoy.status for x in report.results[1].runs if x.envoy] == [451, 451]
    far = report.results[3]
    assert sent["far"] == [None, None] and far.not_sent and "`192.0.2.7`" in far.not_sent
    assert report.not_sent == 1
    assert runner.render_text([report]).splitlines()[-1] == (
        "4 passed, 0 failed (1 not sent through Envoy: see above)"
    )
