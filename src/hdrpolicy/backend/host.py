"""Runs a compiled plugin.wasm in the proxy-wasm Go SDK's host emulator.

The emulator (`proxytest.NewWasmVMContext`, wazero) is what the SDK's authors
test against.  Its small Go driver ships in `hdrpolicy/host/`; it is built once
per version of its sources and cached, then drives any number of requests
through one VM per call.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from hdrpolicy.backend.build import BuildError, Progress, find_go, run_tool
from hdrpolicy.backend.cache import cache_root

Headers = list[tuple[bytes, bytes]]
# The emulator driver's Go sources, shipped beside this module.
_HOST = resources.files("hdrpolicy.backend").joinpath("host")
_SOURCES = ("main.go", "go.mod", "go.sum")


@dataclass(frozen=True)
class HostResult:
    """What the plug-in did with one request."""

    action: str  # "continue" or "pause"
    status: int | None = None  # the local response, when one was sent
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    debug: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    trap: str | None = None
    info: tuple[str, ...] = ()
    # The asked-for counters the request incremented (name → by how much), and
    # the asked-for filter state keys it set (key → value).
    counters: dict[str, int] = field(default_factory=dict)
    state: dict[str, bytes] = field(default_factory=dict)


def driver(progress: Progress = lambda _: None) -> Path:
    """The emulator driver's binary, built on first use."""
    files = {name: _HOST.joinpath(name).read_bytes() for name in _SOURCES}
    go = find_go()
    digest = hashlib.sha256(go.version.encode())
    for name in _SOURCES:
        digest.update(name.encode() + b"\0" + files[name])
    target = cache_root() / f"host-{digest.hexdigest()[:16]}" / "host"
    if target.is_file():
        return target
    progress("building the proxy-wasm host emulator (once)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hdrpolicy-host-") as tmp:
        for name, data in files.items():
            (Path(tmp) / name).write_bytes(data)
        out = Path(tmp) / "host"
        run_tool(
            [go.binary, "build", "-trimpath", "-o", str(out), "."],
            Path(tmp),
            go.environment(wasm=False),
            "building the host emulator",
        )
        staged = target.with_suffix(f".{os.getpid()}")
        shutil.copy2(out, staged)
        os.replace(staged, target)
    return target


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _payload(
    requests: list[Headers], counters: Sequence[str] = (), state: Sequence[str] = ()
) -> bytes:
    return json.dumps(
        {
            "requests": [{"headers": [[_b64(k), _b64(v)] for k, v in req]} for req in requests],
            "counters": list(counters),
            "state": list(state),
        }
    ).encode()


def _results(raw: bytes) -> list[HostResult]:
    results = []
    for item in json.loads(raw)["results"]:
        response = item.get("response")
        results.append(
            HostResult(
                action=item["action"],
                status=response["status"] if response else None,
                headers=[(base64.b64decode(k), base64.b64decode(v)) for k, v in response["headers"]]
                if response
                else [],
                body=base64.b64decode(response["body"] or "") if response else b"",
                debug=tuple(item["debug"] or ()),
                errors=tuple(item["errors"] or ()),
                trap=item.get("trap") or None,
                info=tuple(item.get("info") or ()),
                counters=dict(item.get("counters") or {}),
                state={k: base64.b64decode(v) for k, v in (item.get("state") or {}).items()},
            )
        )
    return results


def run_plugin(
    wasm: Path,
    requests: list[Headers],
    progress: Progress = lambda _: None,
    *,
    counters: Sequence[str] = (),
    state: Sequence[str] = (),
) -> list[HostResult]:
    """Send each request's headers through the plug-in; one VM for all of them.

    Each result has the named `counters` the request incremented and the
    filter `state` keys it set.
    """
    proc = subprocess.run(
        [str(driver(progress)), str(wasm)],
        input=_payload(requests, counters, state),
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise BuildError(
            f"the host emulator could not run `{wasm}`", proc.stderr.decode("utf-8", "replace")
        )
    return _results(proc.stdout)


NATIVE_TEST = "zz_hdrpolicy_host_test.go"


def run_native(
    module: dict[str, bytes], requests: list[Headers], progress: Progress = lambda _: None
) -> list[HostResult]:
    """Run an emitted tinygo-target module's Go natively, in the tetratelabs SDK's emulator.

    The plug-in's wasm is not involved: this checks the Go the compiler wrote,
    for machines without TinyGo.
    """
    go = find_go()
    test_file = _HOST.joinpath("native_host_test.go.txt")
    with tempfile.TemporaryDirectory(prefix="hdrpolicy-native-") as tmp:
        root = Path(tmp)
        for name, data in module.items():
            (root / name).write_bytes(data)
        (root / NATIVE_TEST).write_bytes(test_file.read_bytes())
        (root / "requests.json").write_bytes(_payload(requests))
        env = go.environment(
            wasm=False,
            HDRPOLICY_HOST_IN=str(root / "requests.json"),
            HDRPOLICY_HOST_OUT=str(root / "results.json"),
        )
        progress("running the plug-in's Go natively (tetratelabs SDK emulator)")
        run_tool(
            [go.binary, "test", "-count=1", "-run", "^TestHdrpolicyHost$", "."],
            root,
            env,
            "the native emulator run",
        )
        return _results((root / "results.json").read_bytes())
