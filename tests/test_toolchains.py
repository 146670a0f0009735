"""The toolchain record is the one table of how each target is built and run."""

from __future__ import annotations

import ast
import shlex
from pathlib import Path

import pytest

import hdrpolicy
from conftest import REPO
from hdrpolicy.backend.build import ToolchainMissing, find_compiler
from hdrpolicy.backend.toolchains import GO, TINYGO, TOOLCHAINS, Emulator

PACKAGE = Path(hdrpolicy.__file__).parent


def test_no_stage_branches_on_a_targets_name_or_copies_its_flags() -> None:
    """No comparison with a target's name anywhere: the record's fields decide."""
    found = []
    for module in [*PACKAGE.rglob("*.py"), *(REPO / "tests").glob("*.py")]:
        if module.name in {"toolchains.py", "test_toolchains.py"}:
            continue
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            branches = isinstance(node, ast.Compare) and any(
                _names_a_target(part) for part in ast.walk(node)
            )
            flags = isinstance(node, ast.Constant) and str(node.value).startswith(
                ("-buildmode", "-gc=custom", "-scheduler")
            )
            if branches or flags:
                found.append(f"{module.name}:{getattr(node, 'lineno', '?')}: {ast.unparse(node)}")
    assert found == []


def _names_a_target(node: ast.AST) -> bool:
    """`ToolchainName.X`, `GO`/`TINYGO`, or a toolchain's `.name`."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return node.value.id == "ToolchainName" or (
            node.attr == "name" and "toolchain" in node.value.id.lower()
        )
    return isinstance(node, ast.Name) and node.id in {"GO", "TINYGO"}


def test_every_target_writes_plugin_wasm_and_says_where_it_runs() -> None:
    for toolchain in TOOLCHAINS.values():
        argv = toolchain.build_argv
        assert argv[argv.index("-o") + 1] == "plugin.wasm"
        assert toolchain.install_hint
    assert GO.emulator is Emulator.WASM and not GO.build_optional
    assert TINYGO.emulator is Emulator.NATIVE and TINYGO.build_optional


def test_go_builds_for_wasip1_with_the_local_toolchain() -> None:
    compiler = find_compiler(GO)
    assert compiler.version.startswith("go1.")
    assert (compiler.env["GOOS"], compiler.env["GOARCH"]) == ("wasip1", "wasm")
    assert compiler.env["GOTOOLCHAIN"] == "local"


def test_a_missing_compiler_says_how_to_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(ToolchainMissing) as missing:
        find_compiler(TINYGO)
    assert "`tinygo` is not on PATH" in missing.value.message
    assert missing.value.output.endswith(shlex.join(["tinygo", *TINYGO.build_argv]))
    assert "'-tags=custommalloc nottinygc_envoy'" in missing.value.output
