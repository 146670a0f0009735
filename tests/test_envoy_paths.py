"""Through a real Envoy: no spelling of a denied path reaches the service, and the
headers Envoy joins are exactly those `codec` declares.

One Envoy serves the same plug-in on two listeners: one with the generated
envoy.yaml's path settings (Envoy normalises first), one with Envoy's defaults
(nothing normalised, as in an Istio mesh without `pathNormalization`), where the
plug-in alone must refuse what it cannot judge.  What counts is what reached
the echo upstream, not only the status.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import unquote

import pytest

from envoy_support import Proxy, checked_text, envoy_with, wasm_of
from hdrpolicy import codec
from hdrpolicy.codec import Protocol, SentRequest
from hdrpolicy.proxy import clients

# Starts Envoy or builds Go programs: `scripts/test --fast` skips it.
pytestmark = pytest.mark.slow

POLICY = 'deny 403 "admin" when path starts_with "/admin"\n'
NORMALISED, RAW = "normalised", "envoy-defaults"

# The denied normal form, and spellings a service may read as it (RFC 3986 dot
# segments, percent-encoding, `//`, `\`, Tomcat's `..;`).  `/ADMIN` is another
# path: paths are case-sensitive (use `ignoring case` for services that are not).
ADMIN_PATHS = [
    "/admin/users",
    "/admin",
    "/public/../admin/users",
    "/../admin",
    "/a/b/../../admin",
    "/./admin",
    "/admin/./x",
    "/%61dmin/users",
    "/adm%69n",
    "//admin/users",
    "///admin",
    "/public%2F..%2Fadmin/users",
    "/public%2f..%2fadmin/users",
    "/%2Fadmin",
    "/x/..%2Fadmin",
    "/public/%2e%2e/admin/users",
    "/public/.%2e/admin",
    "/public/%2E%2E/admin",
    "/public\\..\\admin",
    "/public%5C..%5Cadmin/users",
    "/public/..%5Cadmin",
    "/public/..;/admin",
    "/admin%00",
    "/admin?x=1",
]


def service_views(target: str) -> set[str]:
    """The paths a service behind the proxy may take `target` for.

    Raw or percent-decoded once; `\\` as `/`; with or without `;parameters`
    (Tomcat drops them before resolving `..`); then `//` merged and dot
    segments resolved.
    """
    path = target.split("?", 1)[0]
    views = set()
    for decoded in (path, unquote(path)):
        for slashed in (decoded, decoded.replace("\\", "/")):
            for params in (slashed, re.sub(r";[^/]*", "", slashed)):
                views.add(params)
                views.add(_resolve(params))
    return views


def _resolve(path: str) -> str:
    out: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if out:
                out.pop()
            continue
        out.append(segment)
    return "/" + "/".join(out) + ("/" if path.endswith("/") and out else "")


def test_service_views() -> None:
    assert "/admin/users" in service_views("/public/..;/admin/users")
    assert "/admin" in service_views("/public%2F..%2Fadmin")
    assert "/admin" in service_views("//admin")
    assert all(not v.startswith("/admin") for v in service_views("/public/admin"))


@pytest.fixture(scope="module")
def proxy() -> Iterator[Proxy]:
    wasm = wasm_of(checked_text(POLICY, "admin"))
    with envoy_with({NORMALISED: (wasm, True), RAW: (wasm, False)}) as running:
        yield running


def _bypasses(proxy: Proxy, listener: str) -> list[str]:
    found = []
    for path in ADMIN_PATHS:
        for protocol in Protocol:
            proxy.upstream.take()
            response = clients.send(protocol, proxy.port(listener), SentRequest("GET", path, "a"))
            for got in proxy.upstream.take():
                reached = sorted(v for v in service_views(got.path) if v.startswith("/admin"))
                if reached:
                    found.append(
                        f"{protocol.value} {path!r}: the service got {got.path!r}"
                        f" (read as {reached}), client saw {response.status}"
                    )
    return found


def test_no_spelling_of_a_denied_path_passes_with_envoys_normalisation(proxy: Proxy) -> None:
    assert _bypasses(proxy, NORMALISED) == []


def test_no_spelling_of_a_denied_path_passes_with_envoys_defaults(proxy: Proxy) -> None:
    """Needs the plug-in's own refusal of paths not in normal form (400)."""
    assert _bypasses(proxy, RAW) == []


def test_other_paths_still_pass(proxy: Proxy) -> None:
    for listener in (NORMALISED, RAW):
        for protocol in Protocol:
            response = clients.send(protocol, proxy.port(listener), SentRequest("GET", "/pub", "a"))
            assert response.status == 200, (listener, protocol, response)
            assert [r.path for r in proxy.upstream.take()] == ["/pub"]


# Names whose repeats Envoy 1.40 was seen to keep apart or join, checked against
# `codec.JOINED_HEADERS` along with whatever it declares.  Hop-by-hop and framing
# headers (`connection`, `te`, `content-length`, `host`, …) are not requests a
# client can repeat (Envoy refuses or drops them) and are left out.
CANDIDATES = [
    "accept",
    "accept-encoding",
    "accept-language",
    "authorization",
    "cache-control",
    "content-type",
    "cookie",
    "forwarded",
    "if-none-match",
    "origin",
    "range",
    "referer",
    "traceparent",
    "user-agent",
    "via",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-request-id",
    # Custom names: never joined.
    "x-role",
    "allow",
    "x-custom-header",
]


def test_envoy_joins_exactly_the_headers_codec_declares(proxy: Proxy) -> None:
    joined_declared: frozenset[str] = codec.JOINED_HEADERS
    wrong: list[str] = []
    unseen: list[str] = []
    refused: list[str] = []
    # Headers Envoy removes before any filter (codec.REMOVED_HEADERS) never reach the
    # plug-in; the router may set its own (x-envoy-expected-rq-timeout-ms) upstream.
    for name in sorted({*CANDIDATES, *joined_declared} - codec.REMOVED_HEADERS):
        for protocol in Protocol:
            proxy.upstream.take()
            request = SentRequest("GET", "/pub", "a", ((name, "v1"), (name, "v2")))
            if codec.rejected(protocol, request):  # never reaches a filter (tested below)
                continue
            response = clients.send(protocol, proxy.port(NORMALISED), request)
            arrived = proxy.upstream.take()
            if not arrived:
                refused.append(f"{protocol.value} {name}: {response.status}")
                continue
            (got,) = arrived
            values = got.values(name)
            if not values:  # Envoy's router drops some (x-envoy-*) before the upstream
                unseen.append(name)
                continue
            if name == "cookie" and protocol is Protocol.HTTP2:
                want = ["v1; v2"]  # RFC 9113 8.2.3: crumbs are joined with "; "
            elif name in joined_declared:
                want = ["v1,v2"]
            else:
                want = ["v1", "v2"]
            if values != want:
                wrong.append(f"{protocol.value} {name}: Envoy gave {values}, codec says {want}")
            assert response.status == 200
    assert wrong == []
    assert refused == [], refused
    # What codec says Envoy refuses, it does refuse.
    for protocol, name in ((Protocol.HTTP1, "content-length"), (Protocol.HTTP2, "te")):
        request = SentRequest("GET", "/pub", "a", ((name, "v1"), (name, "v2")))
        assert codec.rejected(protocol, request)
        status = clients.send(protocol, proxy.port(NORMALISED), request).status
        assert status in (0, 400) and proxy.upstream.take() == []  # 0: the stream was reset
    # The router drops x-envoy-* and the hop-by-hop `te` after the filters ran.
    assert all(name.startswith("x-envoy-") or name == "te" for name in unseen), unseen


def test_a_path_with_a_space_or_a_tab_is_refused_or_trimmed_as_codec_says(proxy: Proxy) -> None:
    """So the analysis's path domain (trimmed) holds: the plug-in never sees `/a ` (which
    `/a ?x` would give it, as the query is cut after trimming)."""
    for listener in (NORMALISED, RAW):
        for protocol in Protocol:
            for path in ("/a ?x", "/a\t?x", "/a b", "/a\t", " /a", "/a \t"):
                request = SentRequest("GET", path, "a")
                status = clients.send(protocol, proxy.port(listener), request).status
                got = [r.path for r in proxy.upstream.take()]
                if codec.rejected(protocol, request):
                    # 0: the stream was reset; not 403: the plug-in never saw it.
                    assert status in (0, 400) and got == [], (listener, protocol, path)
                else:
                    delivered = dict(codec.deliver(protocol, request))[b":path"].decode()
                    assert (status, got) == (200, [delivered]), (listener, protocol, path)
