"""An installed wheel works outside the checkout: grammar, templates and the host driver ship.

The grammar and the templates live beside `src/` (`grammar/`, `templates/go/`);
`setup.py`'s build step copies them into the wheel's package.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import EXAMPLES, REPO

# Every file of the top-level asset directories.
ASSETS = sorted(
    p.relative_to(REPO)
    for top in ("grammar", "templates")
    for p in (REPO / top).rglob("*")
    if p.is_file()
)
ARGS = '"grammar", "hdrpolicy.lark"'

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
    with zipfile.ZipFile(wheel) as archive:
        for asset in ASSETS:
            assert archive.read(f"hdrpolicy/{asset.as_posix()}") == (REPO / asset).read_bytes()
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
    # The installed copies are what it reads, not the checkout's.
    read = run("-c", f"from hdrpolicy.assets import asset; print(asset({ARGS}))")
    assert read.stdout.startswith(str(target / "hdrpolicy" / "grammar")), read.stdout + read.stderr
    compiled = run("-m", "hdrpolicy", "compile", policy.name, "-o", "dist")
    assert compiled.returncode == 0, compiled.stderr
    assert (work / "dist" / "plugin.wasm").read_bytes()[:4] == b"\0asm"
    tested = run("-m", "hdrpolicy", "test", policy.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr
