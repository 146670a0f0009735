"""`compile`: outputs, reproducibility, and never leaving a half-written directory."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLES, compile_text, hdrpolicy
from hdrpolicy.backend import compiler
from hdrpolicy.backend.build import BuildError
from hdrpolicy.backend.compiler import compile_policy
from hdrpolicy.backend.toolchains import GO, TINYGO
from hdrpolicy.files import staging_dir

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


def _tree(directory: Path) -> dict[str, str]:
    """Every entry under `directory`: files by content hash, directories and links by kind."""
    out = {}
    for p in sorted(directory.rglob("*")):
        rel = str(p.relative_to(directory))
        if p.is_symlink():
            out[rel] = "link " + str(p.readlink())
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _fake_build(staging: Path, *args: object, **kwargs: object) -> str:
    """A stand-in for `go build` that is fast and gives each policy its own bytes."""
    main_go = (staging / "main.go").read_bytes()
    (staging / "plugin.wasm").write_bytes(b"\0asm\1\0\0\0" + hashlib.sha256(main_go).digest())
    return "fake"


def _staging_dirs(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".hdrpolicy-" in p.name)


def test_a_directory_where_a_file_goes_leaves_dir_exactly_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compiler, "build", _fake_build)
    compile_text(TUTORIAL, tmp_path)
    out = tmp_path / "dist"
    (out / "wasmplugin.yaml").unlink()
    (out / "wasmplugin.yaml").mkdir()
    (out / "wasmplugin.yaml" / "mine").write_text("keep")
    before = _tree(out)
    with pytest.raises(BuildError) as caught:
        compile_text(TUTORIAL.replace("true", "yes"), tmp_path)
    message = caught.value.message
    assert f"`{out / 'wasmplugin.yaml'}` is a directory" in message
    assert "move it out of the way" in message
    assert ".hdrpolicy-" not in message, "no staging path the user cannot find"
    assert _tree(out) == before
    assert _staging_dirs(tmp_path) == []


@pytest.mark.parametrize("fail_at", [1, 2, 5, 9, 12])
def test_a_failure_between_renames_is_rolled_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: int
) -> None:
    monkeypatch.setattr(compiler, "build", _fake_build)
    compile_text(TUTORIAL, tmp_path)
    out = tmp_path / "dist"
    (out / "notes.txt").write_text("keep me")
    (out / "nottinygc.go").write_text("stale from a tinygo compile")
    before = _tree(out)
    real_replace = os.replace
    calls: list[str] = []

    def flaky_replace(src: str | Path, dst: str | Path) -> None:
        # Count only the switch's renames (into or out of DIR), and fail once, at one of them.
        if out in (Path(src).parent, Path(dst).parent):
            calls.append(str(dst))
            if len(calls) == fail_at:
                raise OSError(5, "Input/output error", str(src))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky_replace)
    with pytest.raises(BuildError, match="cannot replace `"):
        compile_text(TUTORIAL.replace("true", "yes"), tmp_path)
    assert fail_at == 1 or len(calls) > fail_at, "the renames that succeeded were undone"
    assert _tree(out) == before
    assert _staging_dirs(tmp_path) == []
    monkeypatch.setattr(os, "replace", real_replace)
    result = compile_text(TUTORIAL.replace("true", "yes"), tmp_path)
    assert result.removed == ["nottinygc.go"] and result.recovered == []
    assert (out / "notes.txt").read_text() == "keep me"


_KILLED_COMPILE = """
import os, signal, sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from hdrpolicy.backend import compiler
from hdrpolicy.backend.toolchains import GO
from test_compile import _fake_build

out, when = Path(sys.argv[1]), sys.argv[2]
real_replace, moved = os.replace, []

def build(staging, *args, **kwargs):
    if when == "build":
        (staging / "partial.o").write_bytes(b"x" * 1000)
        os.kill(os.getpid(), signal.SIGKILL)
    return _fake_build(staging)

def replace(src, dst):
    if when == "switch" and Path(dst).parent == out:
        moved.append(dst)
        if len(moved) == 4:
            os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst)

compiler.build = build
os.replace = replace
compiler.compile_policy(out.parent / "policy.hp", out, GO)
"""


def _killed_compile(tmp_path: Path, when: str) -> None:
    script = _KILLED_COMPILE.format(tests=str(Path(__file__).parent))
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "dist"), when],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr


@pytest.mark.parametrize("when", ["build", "switch"])
def test_a_compile_killed_with_sigkill_is_cleaned_up_by_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    monkeypatch.setattr(compiler, "build", _fake_build)
    compile_text(TUTORIAL, tmp_path)
    out = tmp_path / "dist"
    before = _tree(out)
    (tmp_path / "policy.hp").write_text(TUTORIAL.replace("true", "yes"))
    _killed_compile(tmp_path, when)
    (left,) = _staging_dirs(tmp_path)
    assert (tmp_path / left / ".hdrpolicy-staging").is_file()
    if when == "switch":
        assert _tree(out) != before, "the kill hit in the middle of the switch"
    # Another compile's live staging directory, and a look-alike without the marker: not ours.
    (tmp_path / ".dist.hdrpolicy-lookalike").mkdir()
    with staging_dir(tmp_path, ".dist.hdrpolicy-") as live:
        notes = compiler.recover_stale(out)
        assert live.is_dir()
    assert _tree(out) == before, "the interrupted switch was undone"
    assert notes[-1] == f"removed `{left}` left by an interrupted compile"
    assert ("restored" in notes[0]) == (when == "switch")
    assert _staging_dirs(tmp_path) == [".dist.hdrpolicy-lookalike"]
    # The next compile goes through; nothing more to clean.
    result = compile_text(TUTORIAL.replace("true", "yes"), tmp_path)
    assert result.recovered == []
    assert _staging_dirs(tmp_path) == [".dist.hdrpolicy-lookalike"]


def test_the_next_compile_reports_what_it_cleaned_up(tmp_path: Path) -> None:
    (tmp_path / "policy.hp").write_text(TUTORIAL)
    _killed_compile(tmp_path, "build")
    assert len(_staging_dirs(tmp_path)) == 1
    proc = hdrpolicy("compile", "policy.hp", "-o", "dist", "--no-build", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "note: removed `.dist.hdrpolicy-" in proc.stderr
    assert _staging_dirs(tmp_path) == []
