"""A local upstream that answers every request with what it received.

Behind a real Envoy it shows exactly what reached the service: the request
line's target as written and the header lines in order, repeats included.
Each answer carries a token only this server knows, so a response a plug-in
made up can never pass for one from the service.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

TOKEN_HEADER = "x-hdrpolicy-echo"


@dataclass(frozen=True)
class Received:
    """One request as the upstream read it."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


class EchoServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 (any free port); `with` stops it."""

    def __init__(self) -> None:
        self.token = secrets.token_hex(16)
        self.received: list[Received] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _echo(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                # The target as written: http.server rewrites a leading `//` in `self.path`.
                target = self.requestline.split(" ")[1]
                got = Received(self.command, target, tuple(self.headers.items()))
                with server._lock:
                    server.received.append(got)
                body = json.dumps(
                    {"method": got.method, "path": got.path, "headers": got.headers}
                ).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.send_header(TOKEN_HEADER, server.token)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def __getattr__(self, name: str) -> Any:
                if name.startswith("do_"):  # every method, whatever its name
                    return self._echo
                raise AttributeError(name)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def take(self) -> list[Received]:
        """The requests received since the last call."""
        with self._lock:
            got, self.received = self.received, []
        return got

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> EchoServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
