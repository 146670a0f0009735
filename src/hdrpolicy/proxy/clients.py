"""Raw HTTP clients that send a request exactly as written, over HTTP/1.1 and HTTP/2 (h2c).

Ordinary clients tidy a request up (merge or reorder headers, trim values,
normalise the path), which hides what a proxy does with the untidy ones.
These write the request line and header lines as given: repeats, order,
header-name case (HTTP/1.1 only: HTTP/2 requires lower case), surrounding
whitespace and the path's exact bytes.  One request per connection, from
a chosen loopback address when asked (`source`): Linux routes all of
127.0.0.0/8 to the loopback interface, so a test can be any client in it.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from hdrpolicy.codec import Protocol, SentRequest
from hdrpolicy.semantics import client_address

TIMEOUT_S = 30.0
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")


@dataclass(frozen=True)
class Response:
    """What came back: status, header pairs (names lower-cased) and body.

    `error` is set instead when there was no HTTP response (HTTP/2 stream
    reset, connection closed).
    """

    status: int = 0
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    error: str | None = None

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name.lower()), None)


def http1_bytes(request: SentRequest) -> bytes:
    """The request as HTTP/1.1 bytes: `Host` first, then every header line as given."""
    lines = [f"{request.method} {request.path} HTTP/1.1", f"Host: {request.host}"]
    lines.extend(f"{name}: {value}" for name, value in request.headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def loopback_source(client: str) -> str | None:
    """The address to send from so that Envoy on 127.0.0.1 sees `client` as the
    peer (`127.0.0.2`, `127.0.0.2:5000`; the port is the kernel's), or None if
    this machine cannot: not IPv4 loopback."""
    address = client_address(client.encode()).decode()
    if address and ":" not in address and ipaddress.IPv4Address(address) in LOOPBACK:
        return address
    return None


def _connect(host: str, port: int, source: str | None) -> socket.socket:
    """A connection to host:port, from `source` (any free port) when given."""
    bind = None if source is None else (source, 0)
    return socket.create_connection((host, port), timeout=TIMEOUT_S, source_address=bind)


def send_http1(
    port: int, request: SentRequest, host: str = "127.0.0.1", source: str | None = None
) -> Response:
    with _connect(host, port, source) as sock:
        sock.sendall(http1_bytes(request))
        response = http.client.HTTPResponse(sock, method=request.method)
        try:
            response.begin()
            body = response.read()
        except (http.client.HTTPException, OSError) as exc:
            return Response(error=f"no HTTP/1.1 response: {type(exc).__name__}: {exc}")
        return Response(
            response.status,
            tuple((k.lower(), v) for k, v in response.getheaders()),
            body,
        )


def http2_headers(request: SentRequest) -> list[tuple[bytes, bytes]]:
    """Pseudo-headers, then the header lines as given (names lower-cased, as HTTP/2 requires)."""
    pairs = [
        (b":method", request.method.encode()),
        (b":scheme", b"http"),
        (b":path", request.path.encode()),
        (b":authority", request.host.encode()),
    ]
    pairs.extend((k.lower().encode(), v.encode()) for k, v in request.headers)
    return pairs


@dataclass
class _Stream:
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    error: str | None = None
    done: bool = False


def send_http2(
    port: int, request: SentRequest, host: str = "127.0.0.1", source: str | None = None
) -> Response:
    """h2c with prior knowledge; h2's own header validation and normalisation are off."""
    config = h2.config.H2Configuration(
        client_side=True,
        header_encoding=None,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
    )
    conn = h2.connection.H2Connection(config=config)
    stream = _Stream()
    with _connect(host, port, source) as sock:
        conn.initiate_connection()
        conn.send_headers(1, http2_headers(request), end_stream=True)
        sock.sendall(conn.data_to_send())
        while not stream.done:
            data = sock.recv(65536)
            if not data:
                stream.error = stream.error or "the connection closed before the response ended"
                break
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                stream.error = f"HTTP/2 protocol error: {exc}"
                break
            for event in events:
                _handle(conn, event, stream)
            sock.sendall(conn.data_to_send())
    if stream.error is not None:
        return Response(error=stream.error)
    return Response(stream.status, tuple(stream.headers), bytes(stream.body))


def _handle(conn: h2.connection.H2Connection, event: h2.events.Event, stream: _Stream) -> None:
    if isinstance(event, h2.events.ResponseReceived):
        for raw_name, raw_value in event.headers or []:
            name = bytes(raw_name).decode("latin-1")
            value = bytes(raw_value).decode("latin-1")
            if name == ":status":
                stream.status = int(value)
            else:
                stream.headers.append((name, value))
    elif isinstance(event, h2.events.DataReceived):
        stream.body.extend(event.data or b"")
        conn.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id or 1)
    elif isinstance(event, h2.events.StreamEnded):
        stream.done = True
    elif isinstance(event, h2.events.StreamReset):
        stream.error = f"HTTP/2 stream reset ({event.error_code!r})"
        stream.done = True
    elif isinstance(event, h2.events.ConnectionTerminated):
        stream.error = stream.error or f"HTTP/2 connection closed ({event.error_code!r})"
        stream.done = True


def send(
    protocol: Protocol, port: int, request: SentRequest, source: str | None = None
) -> Response:
    """Send `request` to 127.0.0.1:`port` over `protocol`, from `source` if given
    (a loopback address: `loopback_source`)."""
    if protocol is Protocol.HTTP1:
        return send_http1(port, request, source=source)
    return send_http2(port, request, source=source)
