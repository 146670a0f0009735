"""The emitted Go of each golden case, byte for byte; and each case builds."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from golden_cases import GOLDEN, cases, emitted, expected, toolchain_of
from hdrpolicy.backend.build import ToolchainMissing, build, find_go
from hdrpolicy.backend.toolchains import TOOLCHAINS, Emulator

CASES = cases()


def test_there_are_golden_cases() -> None:
    assert {c.name for c in CASES} >= {"header-authorization", "edge-gateway", "tinygo"}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_emitted_files_match_golden(case: Path) -> None:
    got, want = emitted(case), expected(case)
    assert sorted(got) == sorted(want), "regenerate with `python tests/golden_cases.py`"
    for name in want:
        assert got[name] == want[name], f"{case.name}/{name} differs from the golden file"


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden_go_is_gofmt_clean_and_builds(case: Path, tmp_path: Path) -> None:
    go = find_go()
    module = tmp_path / case.name
    shutil.copytree(case, module)
    toolchain = TOOLCHAINS[toolchain_of(case)]
    env = go.environment(wasm=False)
    unformatted = subprocess.run(
        [go.gofmt, "-l", "."], cwd=module, env=env, capture_output=True, text=True, check=True
    )
    assert unformatted.stdout == "", f"not gofmt-clean: {unformatted.stdout}"
    try:
        build(module, toolchain, lambda _: None)  # as `compile` builds it
    except ToolchainMissing:
        if toolchain.emulator is not Emulator.NATIVE:
            raise
        # No TinyGo here, and its SDK's host calls only exist under TinyGo: as the
        # native emulator runs it, `go vet` type-checks the plug-in against the same
        # SDK (nottinygc is tagged out).
        proc = subprocess.run(
            [go.binary, "vet", "."], cwd=module, env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
    else:
        assert (module / "plugin.wasm").read_bytes()[:4] == b"\0asm"


def test_golden_directory_has_no_stray_files() -> None:
    for case in GOLDEN.iterdir():
        assert (case / "policy.hp").is_file(), f"{case} has no policy.hp"
