"""`compile`: outputs, reproducibility, and never leaving a half-written directory."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from conftest import EXAMPLES, compile_text
from hdrpolicy import compiler
from hdrpolicy.build import BuildError
from hdrpolicy.compiler import compile_policy
from hdrpolicy.toolchains import GO, TINYGO

TUTORIAL = (EXAMPLES / "header-authorization.hp").read_text()


def _digests(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


@pytest.mark.slow
@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.hp")), ids=lambda p: p.stem)
def test_every_example_compiles_to_wasm(example: Path, tmp_path: Path) -> None:
    result = compile_policy(example, tmp_path / "out", GO)
    assert result.checked.ok, result.checked.diagnostics
    wasm = (tmp_path / "out" / "plugin.wasm").read_bytes()
    assert wasm[:4] == b"\0asm"
    assert (tmp_path / "out" / "Dockerfile").read_text() == (
        "FROM scratch\nADD ./plugin.wasm ./plugin.wasm\n"
    )
    assert {"main.go", "go.mod", "go.sum", "oci", "wasmplugin.yaml"} <= set(result.written)


@pytest.mark.slow
def test_same_policy_gives_identical_bytes_in_any_directory(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "deeper").mkdir(parents=True)
    first = compile_text(TUTORIAL, tmp_path / "a")
    second = compile_text(TUTORIAL, tmp_path / "b" / "deeper")
    assert first.checked.ok and second.checked.ok
    a, b = _digests(first.out_dir), _digests(second.out_dir)
    assert "plugin.wasm" in a
    assert a == b


def test_failed_check_leaves_existing_directory_untouched(tmp_path: Path) -> None:
    out = tmp_path / "dist"
    out.mkdir()
    (out / "main.go").write_text("mine")
    (out / "notes.txt").write_text("keep me")
    before = _digests(out)
    result = compile_text('deny 403 "x" when header a == "b" and', tmp_path)
    assert not result.checked.ok
    assert _digests(out) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".dist")] == []


@pytest.mark.slow
def test_failed_build_leaves_existing_directory_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok = compile_text(TUTORIAL, tmp_path)
    before = _digests(ok.out_dir)

    def broken_build(*args: object, **kwargs: object) -> str:
        raise BuildError("`go build` failed", "boom")

    monkeypatch.setattr(compiler, "build", broken_build)
    with pytest.raises(BuildError):
        compile_text(TUTORIAL.replace("true", "yes"), tmp_path)
    assert _digests(ok.out_dir) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".dist")] == []


@pytest.mark.slow
def test_recompile_keeps_other_files_and_drops_a_stale_wasm(tmp_path: Path) -> None:
    compile_text(TUTORIAL, tmp_path)
    (tmp_path / "dist" / "notes.txt").write_text("keep me")
    result = compile_text(TUTORIAL, tmp_path, build_wasm=False)
    # Everything that depends on the wasm goes with it: no stale image or manifests.
    assert sorted(result.removed) == sorted(
        ["plugin.wasm", "oci", "wasmplugin.yaml", "envoyextensionpolicy.yaml", "envoy.yaml"]
    )
    assert not (tmp_path / "dist" / "plugin.wasm").exists()
    assert (tmp_path / "dist" / "notes.txt").read_text() == "keep me"


def test_tinygo_without_tinygo_writes_sources_and_reports_the_skip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    result = compile_text(TUTORIAL, tmp_path, toolchain=TINYGO)
    assert result.skipped_build is not None
    assert "tinygo" in result.skipped_build.message
    assert sorted(result.written) == ["Dockerfile", "go.mod", "go.sum", "main.go", "nottinygc.go"]
    main_go = (tmp_path / "dist" / "main.go").read_text()
    assert '"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm"' in main_go
    go_mod = (tmp_path / "dist" / "go.mod").read_text()
    assert "github.com/wasilibs/nottinygc v0.7.1" in go_mod
    assert "github.com/tetratelabs/proxy-wasm-go-sdk v0.24.0" in go_mod


def test_output_path_that_is_a_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "dist").write_text("a file")
    with pytest.raises(BuildError, match="not a directory"):
        compile_text(TUTORIAL, tmp_path)
    assert (tmp_path / "dist").read_text() == "a file"
