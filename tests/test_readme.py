"""The README shows real files and real output.

Every fenced block that starts with `$ hdrpolicy …` is run from the
repository's root and must print what the block shows (stdout, then stderr,
without the `… step` progress lines); a block with a line `…` is an excerpt,
whose lines must be printed in that order.  `hdrpolicy run` serves until
stopped, so its block is left to the Envoy tests.  Every repository path it names exists,
and the pre-commit snippet names hooks this repository publishes.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest
import yaml

from conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```[a-z]*\n(.*?)^```$", README, flags=re.MULTILINE | re.DOTALL)
# `hdrpolicy run` serves until Ctrl-C: tests/test_envoy.py runs it with a signal.
SESSIONS = [
    b for b in BLOCKS if b.startswith("$ hdrpolicy ") and not b.startswith("$ hdrpolicy run ")
]


def _session(block: str) -> object:
    command = block.splitlines()[0].removeprefix("$ ")
    # `hdrpolicy test` builds the plug-in and runs it in the emulator.
    marks = [pytest.mark.slow] if command.startswith("hdrpolicy test ") else []
    return pytest.param(block, id=command, marks=marks)


def test_the_readme_shows_sessions() -> None:
    assert len(SESSIONS) >= 5


@pytest.mark.parametrize("block", [_session(b) for b in SESSIONS])
def test_readme_session_prints_what_it_shows(block: str) -> None:
    command, _, shown = block.partition("\n")
    argv = shlex.split(command.removeprefix("$ hdrpolicy "))
    proc = subprocess.run(
        [sys.executable, "-m", "hdrpolicy", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    stderr = [line for line in proc.stderr.splitlines() if not line.startswith("… ")]
    printed = [*proc.stdout.splitlines(), *stderr]
    if "…" not in shown.splitlines():
        assert "\n".join(printed).rstrip() == shown.rstrip(), f"README: `{command}`"
        return
    rest = iter(printed)
    for line in (x for x in shown.splitlines() if x != "…"):
        assert any(p == line for p in rest), f"README: `{command}` does not print {line!r}"


def test_paths_the_readme_names_exist() -> None:
    named = set(re.findall(r"\b(?:examples|benchmarks|scripts|tests)/[\w.\-/]*\w", README))
    assert "examples/policies/header-authorization.hp" in named
    missing = sorted(path for path in named if not (REPO / path).exists() and "<" not in path)
    assert missing == []


def test_the_pre_commit_snippet_names_published_hooks_and_no_missing_tag() -> None:
    [snippet] = [b for b in BLOCKS if b.startswith("repos:")]
    [repo] = yaml.safe_load(snippet)["repos"]
    published = {h["id"] for h in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())}
    assert {h["id"] for h in repo["hooks"]} <= published
    tags = subprocess.run(
        ["git", "tag", "--list"], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.split()
    # No release is tagged: the README says to use a commit, not a tag that does not exist.
    assert repo["rev"] in tags or repo["rev"] == "COMMIT", repo["rev"]
