"""What Envoy's HTTP codecs hand a plug-in for a request a client sent.

A client's request (method, path, host and its header lines, exactly as
written) does not reach a proxy-wasm plug-in unchanged: Envoy's codecs join the
repeated values of the headers Envoy knows about, trim whitespace (HTTP/1.1
only) and turn `Host` into `:authority`.  The reference evaluator judges what
the plug-in sees, so everything that models "as sent" versus "as delivered"
lives here, per protocol.

(First version: the interface the evaluator, `hdrpolicy test` and the Envoy
tests share; the model of Envoy's joins is filled in by the Envoy work.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

Headers = list[tuple[bytes, bytes]]


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


def deliver(protocol: Protocol, request: SentRequest) -> Headers:
    """The header pairs Envoy hands the plug-in for this request over this protocol."""
    del protocol  # refined by the Envoy model
    pairs: Sequence[tuple[str, str]] = [
        (":method", request.method),
        (":path", request.path),
        (":authority", request.host),
        *request.headers,
    ]
    return [(k.encode(), v.encode()) for k, v in pairs]
