"""The repo's `.pre-commit-hooks.yaml`, run by `pre-commit try-repo` on a scratch repo.

Needs the CLI's `hdrpolicy fmt --check` and `hdrpolicy check --strict`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

# Builds with Go, runs the emulator or installs packages: `scripts/test --fast` skips it.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PRE_COMMIT = Path(sys.executable).parent / "pre-commit"


def test_hooks_file_declares_both_hooks() -> None:
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    by_id = {h["id"]: h for h in hooks}
    assert by_id["hdrpolicy-check"]["entry"].startswith("hdrpolicy check")
    assert by_id["hdrpolicy-fmt"]["entry"] == "hdrpolicy fmt --check"
    assert all(h["files"] == r"\.hp$" for h in hooks)


def _run(cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def test_hooks_pass_on_a_tidy_policy_and_fail_on_a_messy_one(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PRE_COMMIT_HOME": str(tmp_path / "cache"),
        "GIT_CONFIG_GLOBAL": "/dev/null",
    }
    # `language: python` would install hdrpolicy into a new virtualenv from PyPI's
    # dependencies; run the hooks with this interpreter's `hdrpolicy` instead.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    work = tmp_path / "work"
    work.mkdir()
    for args in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "t@t"],
        ["git", "config", "user.name", "t"],
    ):
        _run(work, *args, env=env)
    config = "repos:\n- repo: local\n  hooks:\n" + "".join(
        f"  - id: {h}\n    name: {h}\n    entry: {entry}\n    language: system\n    files: \\.hp$\n"
        for h, entry in (
            ("hdrpolicy-check", "hdrpolicy check --strict"),
            ("hdrpolicy-fmt", "hdrpolicy fmt --check"),
        )
    )
    (work / ".pre-commit-config.yaml").write_text(config)
    (work / "edge.hp").write_text('policy "edge"\n\ndeny 403 unless header allow == "true"\n')
    _run(work, "git", "add", ".", env=env)
    ok = _run(work, str(PRE_COMMIT), "run", "--all-files", env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    (work / "edge.hp").write_text('policy "edge"\ndeny 403 unless header allow=="true"\n')
    _run(work, "git", "add", ".", env=env)
    bad = _run(work, str(PRE_COMMIT), "run", "--all-files", env=env)
    assert bad.returncode == 1
    assert '+deny 403 unless header allow == "true"' in bad.stdout


def test_try_repo_installs_and_runs_the_published_hooks(tmp_path: Path) -> None:
    """What a user's `.pre-commit-config.yaml` pointing at this repository gets."""
    env = {
        **os.environ,
        "PRE_COMMIT_HOME": str(tmp_path / "cache"),
        "GIT_CONFIG_GLOBAL": "/dev/null",
    }
    work = tmp_path / "work"
    work.mkdir()
    _run(work, "git", "init", "-q", env=env)
    (work / "edge.hp").write_text('policy "edge"\n\ndeny 403 unless header allow == "true"\n')
    _run(work, "git", "add", ".", env=env)
    tidy = _run(work, str(PRE_COMMIT), "try-repo", str(REPO), "--all-files", env=env)
    assert tidy.returncode == 0, tidy.stdout + tidy.stderr
    assert "hdrpolicy check" in tidy.stdout and "hdrpolicy fmt" in tidy.stdout

    (work / "edge.hp").write_text('policy "edge"\ndeny 403 unless header allow=="true"\n')
    _run(work, "git", "add", ".", env=env)
    messy = _run(
        work, str(PRE_COMMIT), "try-repo", str(REPO), "hdrpolicy-fmt", "--all-files", env=env
    )
    assert messy.returncode == 1
    assert '+deny 403 unless header allow == "true"' in messy.stdout
