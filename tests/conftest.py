"""Shared test helpers: paths, and compiling a policy text into a directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hdrpolicy.backend.compiler import CompileResult, compile_policy
from hdrpolicy.backend.host import driver
from hdrpolicy.backend.toolchains import GO, Toolchain

# The session-wide OCI registry fixture (`registry`).
pytest_plugins = ["conftest_registry"]

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "policies"


def hdrpolicy(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user does (`python -m hdrpolicy`), capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "hdrpolicy", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )


def compile_text(
    text: str,
    workdir: Path,
    *,
    name: str = "policy",
    toolchain: Toolchain = GO,
    build_wasm: bool = True,
) -> CompileResult:
    """Write `text` to WORKDIR/NAME.hp and compile it into WORKDIR/dist."""
    source = workdir / f"{name}.hp"
    source.write_text(text, encoding="utf-8")
    return compile_policy(source, workdir / "dist", toolchain, build_wasm=build_wasm)


@pytest.fixture(scope="session")
def emulator() -> Path:
    """The host emulator's driver, built once per run (or found in the cache).

    Tests that run a plug-in use this fixture, so the build happens once, in
    set-up, and `scripts/test --fast` (which skips them) never builds it.
    """
    return driver()


@pytest.fixture(scope="session")
def tutorial_wasm(tmp_path_factory: pytest.TempPathFactory, emulator: Path) -> Path:
    """The tutorial policy compiled once for the whole run."""
    out = tmp_path_factory.mktemp("tutorial") / "dist"
    result = compile_policy(EXAMPLES / "header-authorization.hp", out, GO)
    assert result.checked.ok and result.built_with
    return out / "plugin.wasm"
