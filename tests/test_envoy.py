"""Real Envoy: the generated envoy.yaml runs as it is, `hdrpolicy test --proxy envoy`
and `hdrpolicy run` work, and a missing Envoy is a clear message.

Each test starts its own Envoy on 127.0.0.1 and stops it by PID.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import EXAMPLES, hdrpolicy
from hdrpolicy import policytests
from hdrpolicy.codec import Protocol, SentRequest
from hdrpolicy.proxy import clients
from hdrpolicy.proxy.echo import TOKEN_HEADER, EchoServer
from hdrpolicy.proxy.envoy import ENVOY_ENV, Envoy, find_envoy

# Starts Envoy or builds Go programs: `scripts/test --fast` skips it.
pytestmark = pytest.mark.slow

TUTORIAL = EXAMPLES / "header-authorization.hp"
GATEWAY = EXAMPLES / "api-gateway.hp"
ALLOWED = SentRequest("GET", "/status", "example.com", (("allow", "true"),))
DENIED = SentRequest("GET", "/status", "example.com", (("allow", "false"),))


def test_generated_envoy_yaml_runs_from_another_directory(tmp_path: Path) -> None:
    with EchoServer() as upstream:
        proc = hdrpolicy(
            *("compile", str(TUTORIAL), "-o", "dist", "--envoy-port", "0"),
            *("--envoy-admin-port", "0", "--upstream", upstream.url),
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr
        config = tmp_path / "dist" / "envoy.yaml"
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        validate = subprocess.run(
            [find_envoy(), "--mode", "validate", "-c", "../dist/envoy.yaml"],
            cwd=elsewhere,
            capture_output=True,
            text=True,
            check=False,
        )
        assert validate.returncode == 0, validate.stdout + validate.stderr
        assert "OK" in validate.stdout
        # `envoy -c dist/envoy.yaml` from dist's parent: the plug-in is in the file.
        with Envoy.start(Path("dist/envoy.yaml"), cwd=tmp_path) as envoy:
            for protocol in Protocol:
                allowed = clients.send(protocol, envoy.port, ALLOWED)
                assert allowed.status == 200
                assert allowed.header(TOKEN_HEADER) == upstream.token
                denied = clients.send(protocol, envoy.port, DENIED)
                assert (denied.status, denied.body) == (403, b"Forbidden by ASM Wasm Plugin")
            # Envoy's path normalisation is on: the service gets the normal form.
            clients.send(Protocol.HTTP1, envoy.port, replace(ALLOWED, path="/a/../b//c"))
            assert [r.path for r in upstream.take()] == ["/status", "/status", "/b/c"]
        assert config.stat().st_size > 1_000_000, "plugin.wasm is inline"


def test_test_proxy_envoy_passes_on_the_examples(tmp_path: Path) -> None:
    """Every case of every example, the issue-13 acceptance example (`api-gateway`:
    a list file, `query`, `cookie`, `client`) among them, passes on the evaluator,
    the emulator and through Envoy over both protocols, each sent from its client."""
    junit = tmp_path / "junit.xml"
    policies = [str(p) for p in sorted(EXAMPLES.glob("*.hp"))]
    assert str(GATEWAY) in policies
    proc = hdrpolicy("test", "--proxy", "envoy", *policies, "--junit-xml", str(junit))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1].endswith("passed, 0 failed") and not lines[-1].startswith("0 ")
    for line in lines[:-1]:
        assert line.startswith("PASS  ")
        assert line.endswith("[evaluator, emulator, envoy-http1, envoy-http2]"), line
    assert int(ET.parse(junit).getroot()[0].get("tests", "0")) > 0
    gateway = [line for line in lines if line.startswith(f"PASS  {GATEWAY}: ")]
    cases = policytests.load(policytests.tests_path_for(GATEWAY)).cases
    assert len(gateway) == len(cases) >= 20
    assert {case.client for case in cases} >= {"127.0.0.1", "127.0.0.2"}


def test_test_proxy_envoy_reports_what_envoy_did(tmp_path: Path) -> None:
    """A case Envoy answers differently from its expectation fails, with each runtime shown."""
    policy = tmp_path / "p.hp"
    policy.write_text(TUTORIAL.read_text())
    (tmp_path / "p.tests.yaml").write_text(
        "cases:\n"
        "  - name: wrong on purpose\n"
        "    request: {headers: {allow: 'true'}}\n"
        "    expect: {status: 403}\n"
        "  - name: right\n"
        "    expect: {status: 403, body: Forbidden by ASM Wasm Plugin}\n"
    )
    proc = hdrpolicy("test", "--proxy", "envoy", str(policy), "--format", "json")
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    (report,) = data["policies"]
    assert report["runtimes"] == ["evaluator", "emulator", "envoy-http1", "envoy-http2"]
    wrong, right = report["cases"]
    assert (wrong["passed"], right["passed"]) == (False, True)
    assert wrong["compiler_bug"] is None, "evaluator, emulator and Envoy agree: allowed"
    assert [r["envoy"] for r in wrong["runs"]] == ["allow (200 from the upstream)"] * 2
    assert [r["protocol"] for r in right["runs"]] == ["http1", "http2"]
    assert all(r["envoy"].startswith("deny 403 b'Forbidden") for r in right["runs"])


def test_without_envoy_a_clear_message() -> None:
    env = {**os.environ, ENVOY_ENV: "/nonexistent/envoy"}
    for args in (("test", "--proxy", "envoy"), ("run",)):
        proc = subprocess.run(
            [sys.executable, "-m", "hdrpolicy", *args, str(TUTORIAL)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=120,
        )
        assert proc.returncode == 1, args
        assert proc.stderr.strip().splitlines() == [
            f"error: {ENVOY_ENV}=`/nonexistent/envoy` is not an executable file"
        ]


def _lines(stream: object, into: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        into.put(line)


def test_run_serves_until_interrupted() -> None:
    with EchoServer() as upstream:
        argv = ["run", str(TUTORIAL), "--port", "0", "--upstream", upstream.url]
        proc = subprocess.Popen(
            [sys.executable, "-m", "hdrpolicy", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            out: queue.Queue[str] = queue.Queue()
            threading.Thread(target=_lines, args=(proc.stdout, out), daemon=True).start()
            first = out.get(timeout=300)
            assert first.startswith("Envoy (pid "), first
            pid = int(first.split("pid ")[1].split(")")[0])
            url = first.split(" on ")[1].split(" ")[0]
            port = int(url.rsplit(":", 1)[1].strip("/"))
            assert "deny log: curl -X POST" in out.get(timeout=10) + out.get(timeout=10)
            for protocol in Protocol:
                assert clients.send(protocol, port, DENIED).status == 403
                allowed = clients.send(protocol, port, ALLOWED)
                assert allowed.header(TOKEN_HEADER) == upstream.token
            assert len(upstream.take()) == 2
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=60) == 0
            rest = [out.get(timeout=10) for _ in range(out.qsize())]
            assert rest[-1] == f"stopped Envoy (pid {pid})\n"
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_run_says_why_envoy_could_not_start(tmp_path: Path) -> None:
    """A port already taken: Envoy's own error, one error line, exit 1."""
    with EchoServer() as taken:
        started = time.monotonic()
        proc = hdrpolicy("run", str(TUTORIAL), "--port", str(taken.port))
        assert proc.returncode == 1
        assert "error: Envoy exited with status 1 while starting" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert time.monotonic() - started < 300
