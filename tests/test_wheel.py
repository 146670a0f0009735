"""An installed wheel works outside the checkout: grammar, templates and the host driver ship."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLES, REPO

# Builds with Go, runs the emulator or installs packages: `scripts/test --fast` skips it.
pytestmark = pytest.mark.slow


def test_installed_wheel_compiles_and_tests_outside_the_checkout(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)],
        check=True,
        capture_output=True,
    )
    [wheel] = wheels.glob("hdrpolicy-*.whl")
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), wheel],
        check=True,
        capture_output=True,
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    policy = work / "header-authorization.hp"
    policy.write_text((EXAMPLES / "header-authorization.hp").read_text())
    (work / "header-authorization.tests.yaml").write_text(
        (EXAMPLES / "header-authorization.tests.yaml").read_text()
    )
    env = {**os.environ, "PYTHONPATH": str(target)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args], cwd=work, env=env, capture_output=True, text=True, check=False
        )

    where = run("-c", "import hdrpolicy; print(hdrpolicy.__file__)")
    assert where.stdout.startswith(str(target)), where.stdout + where.stderr
    compiled = run("-m", "hdrpolicy", "compile", policy.name, "-o", "dist")
    assert compiled.returncode == 0, compiled.stderr
    assert (work / "dist" / "plugin.wasm").read_bytes()[:4] == b"\0asm"
    tested = run("-m", "hdrpolicy", "test", policy.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr
