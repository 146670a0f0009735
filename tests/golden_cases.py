"""Golden cases: `tests/golden/<case>/policy.hp` and the files the compiler must emit for it.

Regenerate every case's expected files with `python tests/golden_cases.py`
(then read the diff before committing it).
"""

from __future__ import annotations

import sys
from pathlib import Path

from hdrpolicy import rollout
from hdrpolicy.backend.compiler import emit_build, rollout_build
from hdrpolicy.backend.toolchains import TOOLCHAINS, ToolchainName
from hdrpolicy.frontend.pipeline import check_file

GOLDEN = Path(__file__).parent / "golden"
# Inputs: the policy; optionally the toolchain's name, a policy evaluated in
# the shadow (`compile --shadow`), the mode (`dry-run`) and list files (`*.txt`).
INPUTS = {"policy.hp", "toolchain", "shadow.hp", "mode"}


def is_input(path: Path) -> bool:
    return path.name in INPUTS or path.suffix == ".txt"


def cases() -> list[Path]:
    return sorted(p for p in GOLDEN.iterdir() if (p / "policy.hp").is_file())


def toolchain_of(case: Path) -> ToolchainName:
    marker = case / "toolchain"
    return ToolchainName(marker.read_text().strip()) if marker.exists() else ToolchainName.GO


def emitted(case: Path) -> dict[str, bytes]:
    checked = check_file(case / "policy.hp")
    assert checked.ok and checked.policy is not None, checked.diagnostics
    shadow = check_file(case / "shadow.hp") if (case / "shadow.hp").is_file() else None
    mode = (case / "mode").read_text().strip() if (case / "mode").is_file() else "enforce"
    options = rollout.Options(rollout.Mode(mode))
    build = rollout_build(checked, shadow, options)
    return emit_build(build, checked, shadow, TOOLCHAINS[toolchain_of(case)])


def expected(case: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in case.iterdir() if not is_input(p)}


def regenerate() -> None:
    for case in cases():
        for old in case.iterdir():
            if not is_input(old):
                old.unlink()
        for name, data in emitted(case).items():
            (case / name).write_bytes(data)
        print(f"regenerated {case.name}")


if __name__ == "__main__":
    regenerate()
    sys.exit(0)
