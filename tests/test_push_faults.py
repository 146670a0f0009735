"""`push` against registries that misbehave: one clear line, exit 1, and no secret printed.

A small HTTP server on 127.0.0.1 (in a thread of the test process, shut down
after each test) plays the registry and its token service.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import EXAMPLES, hdrpolicy
from hdrpolicy.shipping import oci
from hdrpolicy.shipping.push import (
    ENV_PASSWORD,
    ENV_USERNAME,
    Credentials,
    _Registry,
    parse_reference,
)
from hdrpolicy.shipping.redact import hold, hold_credentials, redact

USER = "alice"
PASSWORD = "S3cr3tPassw0rd"
TOKEN = "tok3n-0f-the-t0ken-service"
# What a response is: status, headers, body.
Answer = tuple[int, dict[str, str], bytes]
Route = Callable[[BaseHTTPRequestHandler], Answer]


class FakeRegistry:
    """Answers every request with `route(request)`; `url` is its base URL."""

    def __init__(self, route: Route) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                status, headers, body = outer.route(self)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.route = route
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def serve() -> Iterator[Callable[[Route], FakeRegistry]]:
    started: list[FakeRegistry] = []

    def start(route: Route) -> FakeRegistry:
        started.append(FakeRegistry(route))
        return started[-1]

    yield start
    for registry in started:
        registry.stop()


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    (tmp_path / "plugin.wasm").write_bytes(b"\0asm\1\0\0\0push faults")
    oci.write_image_layout(tmp_path / "plugin.wasm", tmp_path / "dist" / "oci")
    return tmp_path / "dist"


def push(directory: Path, ref: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """`hdrpolicy push` as a user runs it, with alice's password on stdin."""
    env = {k: v for k, v in os.environ.items() if k not in (ENV_USERNAME, ENV_PASSWORD)}
    env["HOME"] = str(directory.parent / "home")
    env.pop("DOCKER_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "hdrpolicy", "push", str(directory), ref, "--plain-http", *extra],
        input=f"{PASSWORD}\n",
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def with_password(directory: Path, ref: str) -> subprocess.CompletedProcess[str]:
    return push(directory, ref, "--username", USER, "--password-stdin")


SECRETS = [
    PASSWORD,
    f"{USER}:{PASSWORD}",
    base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
    TOKEN,
]


def assert_one_clean_line(proc: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert proc.returncode == 1, proc.stderr
    # Progress lines (`… pushing to …`) aside, one line says what went wrong.
    lines = [x for x in proc.stderr.strip().splitlines() if not x.startswith("… ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    for secret in SECRETS:
        assert secret not in proc.stderr, f"secret printed: {proc.stderr}"
    for text in expected:
        assert text in lines[0], lines[0]


def start_bearer(serve: Callable[[Route], FakeRegistry], token_answer: Answer) -> FakeRegistry:
    """A registry that asks for a Bearer token, and its token service answering `token_answer`."""
    hosts: list[str] = []

    def route(request: BaseHTTPRequestHandler) -> Answer:
        if request.path.startswith("/token"):
            return token_answer
        realm = f"http://{hosts[0]}/token"
        return 401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="fake"'}, b""

    registry = serve(route)
    hosts.append(registry.host)
    return registry


JSON = {"Content-Type": "application/json"}


def test_a_token_with_cr_lf_is_refused_without_showing_it(
    serve: Callable[[Route], FakeRegistry], image_dir: Path
) -> None:
    body = json.dumps({"token": f"{TOKEN}\r\nX-Injected: yes"}).encode()
    registry = start_bearer(serve, (200, JSON, body))
    proc = with_password(image_dir, f"{registry.host}/test/x:v1")
    assert_one_clean_line(proc, "cannot hold (such as CR or LF)")
    assert "X-Injected" not in proc.stderr


@pytest.mark.parametrize(
    "answer",
    [
        (200, {"Content-Type": "text/html"}, b"<html>sign in</html>"),
        (200, JSON, b"[1, 2]"),
        (200, JSON, b'{"token": 42}'),
        (200, JSON, b"{}"),
    ],
    ids=["html", "list", "number", "empty"],
)
def test_a_token_service_without_a_token_is_one_line(
    serve: Callable[[Route], FakeRegistry], image_dir: Path, answer: Answer
) -> None:
    registry = start_bearer(serve, answer)
    proc = with_password(image_dir, f"{registry.host}/test/x:v1")
    assert_one_clean_line(proc, "did not answer with a token")


def test_a_redirect_loop_is_one_line(
    serve: Callable[[Route], FakeRegistry], image_dir: Path
) -> None:
    registry = serve(lambda request: (302, {"Location": request.path}, b""))
    proc = with_password(image_dir, f"{registry.host}/test/x:v1")
    assert_one_clean_line(proc, "redirects in a loop")


def test_a_registry_that_echoes_the_authorization_header_gets_nothing_printed(
    serve: Callable[[Route], FakeRegistry], image_dir: Path
) -> None:
    def route(request: BaseHTTPRequestHandler) -> Answer:
        auth = request.headers.get("Authorization")
        if auth is None:
            return 401, {"WWW-Authenticate": 'Basic realm="fake"'}, b""
        decoded = base64.b64decode(auth.split()[1]).decode()
        message = f"bad request: Authorization: {auth} ({decoded})"
        return 400, JSON, json.dumps({"errors": [{"code": "DENIED", "message": message}]}).encode()

    registry = serve(route)
    proc = with_password(image_dir, f"{registry.host}/test/x:v1")
    assert_one_clean_line(proc, "DENIED: bad request: Authorization: Basic ***")


def test_a_port_out_of_range_is_one_line(image_dir: Path) -> None:
    proc = with_password(image_dir, "127.0.0.1:99999999/test/x:v1")
    assert_one_clean_line(proc, "port `99999999` is not a TCP port")


@pytest.mark.parametrize(
    "ref",
    [
        f"{USER}:{PASSWORD}@127.0.0.1:5000/test/x:v1",
        f"https://{USER}:{PASSWORD}@127.0.0.1:5000/test/x:v1",
        f"{PASSWORD}@127.0.0.1:5000/test/x:v1",
    ],
)
def test_a_reference_with_credentials_is_refused_without_echoing_them(
    image_dir: Path, ref: str
) -> None:
    proc = push(image_dir, ref)
    assert_one_clean_line(proc, "the reference holds credentials")


def test_redact_covers_every_form_of_a_held_secret() -> None:
    hold_credentials("bob", "pa ss\n\u00e9")
    hold("tkn-123")
    pair = base64.b64encode("bob:pa ss\n\u00e9".encode()).decode()
    for text in [
        "pa ss\n\u00e9",
        repr("pa ss\n\u00e9")[1:-1],
        json.dumps("pa ss\n\u00e9")[1:-1],
        "pa%20ss%0A%C3%A9",
        f"Basic {pair}",
        pair.rstrip("="),
        "Bearer tkn-123",
        "https://carol:hunter2@example.com/x",
    ]:
        shown = redact(f"before {text} after")
        assert shown.startswith("before ") and shown.endswith(" after")
        for secret in ("pa ss", "pa%20ss", "pa\\nss", pair.rstrip("="), "tkn-123", "hunter2"):
            assert secret not in shown, shown
    for kept in ["user `bob` at registry.example.com:5000", 'header x == "mailto:b:c@d.example"']:
        assert redact(kept) == kept, "names, ports and policy text stay"


def test_compile_refuses_a_push_reference_with_credentials_before_building(
    tmp_path: Path,
) -> None:
    proc = hdrpolicy(
        *("compile", str(EXAMPLES / "header-authorization.hp"), "-o", str(tmp_path / "dist")),
        *("--push", f"{USER}:{PASSWORD}@127.0.0.1:5000/test/x:v1"),
    )
    assert_one_clean_line(proc, "the reference holds credentials")
    assert not (tmp_path / "dist").exists()


def test_a_bearer_challenge_gets_a_token_for_the_credentials(
    serve: Callable[[Route], FakeRegistry],
) -> None:
    seen: list[tuple[str, str | None]] = []

    def route(request: BaseHTTPRequestHandler) -> Answer:
        seen.append((request.path, request.headers.get("Authorization")))
        return 200, JSON, json.dumps({"access_token": TOKEN}).encode()

    service = serve(route)
    client = _Registry(
        parse_reference(f"{service.host}/test/x:v1"),
        Credentials(USER, PASSWORD, "--username"),
        plain_http=True,
        tls_verify=False,
        attempts=1,
        backoff=0,
        timeout=5,
    )
    challenge = (
        f'Bearer realm="http://{service.host}/token",service="fake",'
        'scope="repository:test/x:pull,push"'
    )
    assert client._answer(challenge) == f"Bearer {TOKEN}"
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert seen == [
        ("/token?service=fake&scope=repository%3Atest%2Fx%3Apull%2Cpush", f"Basic {basic}")
    ]
    assert redact(f"echo: Bearer {TOKEN}") == "echo: Bearer ***", "the token is held"
