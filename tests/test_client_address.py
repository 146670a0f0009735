"""The client address as Envoy reports it (`codec.source_address`), the loopback
address a test sends from, and how `hdrpolicy test --proxy envoy` reports a case
it cannot send.  No Envoy here: `test_envoy_subjects` checks the same against
a real one.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from envoy_support import checked_text, policy_of
from hdrpolicy import codec, policytests
from hdrpolicy.codec import CLIENT_ADDRESS, Protocol, SentRequest, deliver, source_address
from hdrpolicy.evaluate import evaluate
from hdrpolicy.policytests import Case, Expectation
from hdrpolicy.proxy.clients import loopback_source
from hdrpolicy.proxy.envoy import Plugin, bootstrap
from hdrpolicy.runner import CaseResult, PolicyReport, Run, envoy_source, render_text, to_json

PEER = "127.0.0.1:40122"

# x-forwarded-for as delivered → what Envoy 1.40 logged as %DOWNSTREAM_REMOTE_ADDRESS%
# (the `source.address` property) with the connection manager's defaults.
MEASURED = [
    ("10.9.9.9", "10.9.9.9:0"),
    ("10.1.1.1, 10.9.9.9", "10.9.9.9:0"),
    ("10.1.1.1,10.9.9.9", "10.9.9.9:0"),
    (" 10.0.0.1 ", "10.0.0.1:0"),
    ("1.2.3.4\t", "1.2.3.4:0"),
    (",10.1.1.1", "10.1.1.1:0"),
    ("unknown, 10.1.1.1", "10.1.1.1:0"),
    ("2001:db8::1", "[2001:db8::1]:0"),
    ("2001:DB8::A", "[2001:db8::a]:0"),
    ("::1.2.3.4", "[::102:304]:0"),  # Envoy prints [::1.2.3.4]:0: the same address
    ("::1%1", "[::1%1]:0"),
    ("fe80::1%lo", "[fe80::1%1]:0"),
    ("0.0.0.0", "0.0.0.0:0"),
    # Not an address: the TCP peer.
    ("garbage", PEER),
    ("[2001:db8::1]", PEER),
    ("10.0.0.1:80", PEER),
    ("10.1.1.1,", PEER),
    ("10.1.1.1 ,", PEER),
    ("10.1.1.1, unknown", PEER),
    ("010.1.1.1", PEER),
    ("1.2.3.04", PEER),
    ("127.1", PEER),
    ("0x7f.1", PEER),
    ("1.2.3", PEER),
    ("10.1.1.1;x", PEER),
    ("1.2.3.4 5", PEER),
    ("10.0.0.1%1", PEER),
    ("fe80::1%", PEER),
    ("fe80::1%no-such-interface", PEER),
    ("", PEER),
]


@pytest.mark.parametrize(("forwarded", "address"), MEASURED)
def test_source_address_is_what_envoy_reported(forwarded: str, address: str) -> None:
    assert source_address(PEER, forwarded) == address


def test_without_the_header_the_peer_and_without_either_nothing() -> None:
    assert source_address(PEER, None) == PEER
    assert source_address(None, None) is None
    assert source_address(None, "10.1.2.3") == "10.1.2.3:0"


def test_deliver_carries_the_address_after_the_authority_as_each_protocol_joins_the_header() -> (
    None
):
    request = SentRequest(
        "GET", "/", "a", (("x-forwarded-for", "10.1.1.1"), ("X-Forwarded-For", " 10.2.2.2 ")), PEER
    )
    for protocol in Protocol:
        delivered = deliver(protocol, request)
        assert delivered[3] == (CLIENT_ADDRESS.encode(), b"10.2.2.2:0")
    # A trailing comma (the second value empty) is not an address: the peer.
    odd = replace(request, headers=(("x-forwarded-for", "10.1.1.1,"),))
    assert dict(deliver(Protocol.HTTP1, odd))[CLIENT_ADDRESS.encode()] == PEER.encode()
    assert CLIENT_ADDRESS.encode() not in dict(deliver(Protocol.HTTP1, replace(odd, client=None)))


def test_a_client_rule_judges_the_forwarded_address_under_envoys_defaults() -> None:
    policy = policy_of(checked_text('deny 403 "ten" when client in ["10.0.0.0/8"]\n'))
    plain = SentRequest("GET", "/", "a", client="127.0.0.1")
    spoofed = replace(plain, headers=(("x-forwarded-for", "10.1.2.3"),))
    for protocol in Protocol:
        assert evaluate(policy, deliver(protocol, plain)).allowed
        assert evaluate(policy, deliver(protocol, spoofed)).status == 403


@pytest.mark.parametrize(
    ("client", "source"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.0.0.2:5000", "127.0.0.2"),
        ("127.255.255.254", "127.255.255.254"),
        ("[::ffff:127.0.0.9]:80", "127.0.0.9"),
        ("10.0.0.1", None),
        ("::1", None),
        ("[::1]:4", None),
        ("garbage", None),
    ],
)
def test_loopback_source(client: str, source: str | None) -> None:
    assert loopback_source(client) == source


def test_envoy_source_sends_from_the_client_unless_the_header_decides() -> None:
    request = SentRequest("GET", "/", "a", client="127.0.0.2")
    assert envoy_source(Protocol.HTTP1, request) == ("127.0.0.2", None)
    assert envoy_source(Protocol.HTTP1, replace(request, client=None)) == (None, None)
    far = replace(request, client="10.1.2.3")
    source, why = envoy_source(Protocol.HTTP2, far)
    assert source is None and why is not None and "`10.1.2.3`" in why
    # x-forwarded-for names the address Envoy reports: the peer does not matter.
    forwarded = replace(far, headers=(("x-forwarded-for", "10.1.2.3"),))
    assert envoy_source(Protocol.HTTP2, forwarded) == (None, None)
    # Nor to a policy that does not read it.
    assert envoy_source(Protocol.HTTP2, far, reads_client=False) == (None, None)


def test_a_case_not_sent_through_envoy_is_reported_per_case_and_in_the_total() -> None:
    checked = checked_text('deny 403 "ten" when client in ["10.0.0.0/8"]\n', "far")
    case = Case("far away", 3, "GET", "/", "a", (), Expectation(False, 403))
    why = envoy_source(Protocol.HTTP1, replace(case.request(), client="10.1.2.3"))[1]
    assert why is not None
    decision = evaluate(policy_of(checked), deliver(Protocol.HTTP1, case.request()))
    runs = [Run(p, decision, envoy_not_sent=why) for p in Protocol]
    report = PolicyReport(checked, policytests.TestFile(checked.source), [CaseResult(case, runs)])
    text = render_text([report])
    assert f"  {why}" in text.splitlines()
    assert text.splitlines()[-1].endswith("(1 not sent through Envoy: see above)")
    data = to_json([report])
    assert data["not_sent_through_envoy"] == 1
    assert data["policies"][0]["cases"][0]["runs"][0]["envoy_not_sent"] == why


def test_listeners_face_clients_unless_asked_otherwise() -> None:
    def manager(plugin: Plugin) -> dict[str, object]:
        listener = bootstrap([plugin], None)["static_resources"]["listeners"][0]
        config: dict[str, object] = listener["filter_chains"][0]["filters"][0]["typed_config"]
        return config

    assert manager(Plugin("p", "p.wasm"))["use_remote_address"] is True
    assert "use_remote_address" not in manager(Plugin("p", "p.wasm", use_remote_address=False))


@pytest.mark.parametrize(
    ("path", "http1", "http2"),
    [
        ("/é", True, False),
        ("/a?x=é", True, False),
        ("/a?x=\x01", True, True),
        ("/a?x=\x7f", True, True),
        ("/a?x=%zz&y=%2F+;", False, False),
    ],
)
def test_what_envoy_refuses_in_a_target(path: str, http1: bool, http2: bool) -> None:
    request = SentRequest("GET", path, "a")
    assert (codec.rejected(Protocol.HTTP1, request) is not None) is http1
    assert (codec.rejected(Protocol.HTTP2, request) is not None) is http2
