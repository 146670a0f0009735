"""The CLI as a user runs it: exit statuses, messages, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLES, hdrpolicy


def test_check_ok_examples() -> None:
    """The examples pass the pre-commit hook's `check --strict`; notes do not fail it."""
    proc = hdrpolicy("check", "--strict", *map(str, sorted(EXAMPLES.glob("*.hp"))))
    assert proc.returncode == 0, proc.stderr
    assert "policies checked" in proc.stderr
    assert "note[HP404]" in proc.stderr  # edge-gateway's CORS allow comes before its denies


def test_check_broken_policy_prints_located_diagnostics(tmp_path: Path) -> None:
    bad = tmp_path / "bad.hp"
    bad.write_text('deny 403 "x" when header x/y == "a"\ndeny 999\n')
    proc = hdrpolicy("check", str(bad))
    assert proc.returncode == 1
    assert f"{bad}:1:26: error[HP201]" in proc.stderr
    assert f"{bad}:2:6: error[HP203]" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_check_json_format(tmp_path: Path) -> None:
    bad = tmp_path / "bad.hp"
    bad.write_text("deny 999\n")
    proc = hdrpolicy("check", "--format", "json", str(bad))
    assert proc.returncode == 1
    assert '"code": "HP203"' in proc.stdout and '"line": 1' in proc.stdout


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    for command in ("check", "compile"):
        proc = hdrpolicy(command, str(tmp_path / "nope.hp"))
        assert proc.returncode == 1
        assert "nope.hp" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_compile_writes_outputs(tmp_path: Path) -> None:
    proc = hdrpolicy(
        "compile", str(EXAMPLES / "header-authorization.hp"), "-o", "out", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "plugin.wasm").read_bytes()[:4] == b"\0asm"
    # One line per long step, on a terminal or not (CI logs show where the time went).
    assert "… building plugin.wasm with go" in proc.stderr


def test_compile_tinygo_without_tinygo_exits_3(tmp_path: Path) -> None:
    proc = hdrpolicy(
        "compile",
        str(EXAMPLES / "header-authorization.hp"),
        "-o",
        "out",
        "--toolchain",
        "tinygo",
        cwd=tmp_path,
    )
    if proc.returncode == 0:  # a machine with TinyGo built it
        assert (tmp_path / "out" / "plugin.wasm").exists()
        return
    assert proc.returncode == 3
    assert "`tinygo` is not on PATH" in proc.stderr
    assert (tmp_path / "out" / "main.go").exists()
    assert not (tmp_path / "out" / "plugin.wasm").exists()


def test_unknown_toolchain_is_a_usage_error(tmp_path: Path) -> None:
    proc = hdrpolicy("compile", str(EXAMPLES / "header-authorization.hp"), "--toolchain", "rust")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_docker_push_without_an_engine_is_a_clear_error(tmp_path: Path) -> None:
    import os

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hdrpolicy",
            "compile",
            str(EXAMPLES / "header-authorization.hp"),
            "-o",
            "out",
            "--push",
            "127.0.0.1:1/x/y:v1",
            "--docker",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"},
        check=False,
    )
    assert proc.returncode == 1
    assert "no Docker engine is reachable" in proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "out" / "plugin.wasm").exists()  # the compile itself succeeded


def test_docker_needs_push(tmp_path: Path) -> None:
    proc = hdrpolicy("compile", str(EXAMPLES / "header-authorization.hp"), "--docker", cwd=tmp_path)
    assert proc.returncode == 1 and "--docker goes with --push" in proc.stderr
