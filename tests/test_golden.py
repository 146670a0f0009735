"""The emitted Go of each golden case, byte for byte; and each case builds."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from golden_cases import GOLDEN, cases, emitted, expected, toolchain_of
from hdrpolicy.build import find_go
from hdrpolicy.toolchains import ToolchainName

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
    wasm = toolchain_of(case) is ToolchainName.GO
    env = go.environment(wasm=wasm)
    unformatted = subprocess.run(
        [go.gofmt, "-l", "."], cwd=module, env=env, capture_output=True, text=True, check=True
    )
    assert unformatted.stdout == "", f"not gofmt-clean: {unformatted.stdout}"
    if wasm:
        argv = [go.binary, "build", "-trimpath", "-buildmode=c-shared", "-o", "plugin.wasm", "."]
    else:
        # The TinyGo SDK's host calls only exist under TinyGo; natively, `go vet`
        # type-checks the plug-in against the same SDK (nottinygc is tagged out).
        argv = [go.binary, "vet", "."]
    proc = subprocess.run(argv, cwd=module, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_golden_directory_has_no_stray_files() -> None:
    for case in GOLDEN.iterdir():
        assert (case / "policy.hp").is_file(), f"{case} has no policy.hp"
