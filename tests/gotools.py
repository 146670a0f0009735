"""The Go programs in `tests/fixtures/`, built once per session, and running them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from hdrpolicy.backend.build import find_go

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def build_tool(name: str, dest: Path) -> Path:
    """`go build` fixtures/NAME into DEST/NAME (modules from the proxy, pinned by go.sum)."""
    go = find_go()
    work = dest / f"{name}-src"
    shutil.copytree(FIXTURES / name, work)
    binary = dest / name
    proc = subprocess.run(
        [go.binary, "build", "-o", str(binary), "."],
        cwd=work,
        env=go.environment(wasm=False),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, f"building {name} failed:\n{proc.stderr}"
    return binary


def yaml_documents(yamldocs: Path, text: str) -> list[Any]:
    """The documents kubectl's YAML reader finds in `text`, as JSON values."""
    proc = subprocess.run(
        [str(yamldocs)], input=text.encode("utf-8"), capture_output=True, check=False
    )
    assert proc.returncode == 0, proc.stderr.decode()
    # One JSON value per `\n`-ended line (splitlines would also split at NEL inside one).
    return [json.loads(line) for line in proc.stdout.decode().split("\n")[:-1]]


def go_scan(goscan: Path, file: Path) -> dict[str, list[str]]:
    """Comments, string literals (hex bytes) and function names of a Go file that parses."""
    proc = subprocess.run([str(goscan), str(file)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{file} does not parse:\n{proc.stderr}"
    result: dict[str, list[str]] = json.loads(proc.stdout)
    return result
