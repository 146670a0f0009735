"""`fmt`, `check --strict/--format sarif` and `diff` as a reviewer runs them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from conftest import EXAMPLES, hdrpolicy

TUTORIAL = (EXAMPLES / "header-authorization.hp").read_text()


def test_fmt_check_passes_on_every_example() -> None:
    proc = hdrpolicy("fmt", "--check", *map(str, sorted(EXAMPLES.glob("*.hp"))))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == ""


def test_fmt_check_fails_with_a_diff_then_fmt_fixes_it(tmp_path: Path) -> None:
    messy = tmp_path / "messy.hp"
    messy.write_text('policy   "messy"\ndeny 403   "x" unless header Allow=="true"   # why\n')
    before = messy.read_text()
    check = hdrpolicy("fmt", "--check", str(messy))
    assert check.returncode == 1
    assert '+deny 403 "x" unless header allow == "true"  # why' in check.stdout
    assert messy.read_text() == before  # --check changes nothing
    fixed = hdrpolicy("fmt", str(messy))
    assert fixed.returncode == 0 and "reformatted" in fixed.stderr
    assert hdrpolicy("fmt", "--check", str(messy)).returncode == 0


def test_fmt_refuses_a_broken_file_and_leaves_it(tmp_path: Path) -> None:
    broken = tmp_path / "broken.hp"
    broken.write_text("deny 403 when\n")
    proc = hdrpolicy("fmt", str(broken))
    assert proc.returncode == 1 and "HP101" in proc.stderr
    assert broken.read_text() == "deny 403 when\n"


def test_diff_reports_the_allow_yes_change_with_its_witness(tmp_path: Path) -> None:
    new = tmp_path / "new.hp"
    new.write_text(TUTORIAL.replace('== "true"', 'in ["true", "yes"]'))
    proc = hdrpolicy(
        "diff", str(EXAMPLES / "header-authorization.hp"), str(new), "--format", "json"
    )
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    [change] = data["changes"]
    assert change["kind"] == "now allowed"
    assert (change["old"]["status"], change["new"]["allowed"]) == (403, True)
    assert ["allow", "yes"] in change["witness"]
    assert change["confirmed"]
    text = hdrpolicy("diff", str(EXAMPLES / "header-authorization.hp"), str(new)).stdout
    assert 'allow: "yes"' in text
    markdown = hdrpolicy(
        "diff", str(EXAMPLES / "header-authorization.hp"), str(new), "--format", "markdown"
    ).stdout
    assert markdown.startswith("### ")


def test_diff_reordered_equivalent_policies(tmp_path: Path) -> None:
    a = tmp_path / "a.hp"
    b = tmp_path / "b.hp"
    a.write_text('deny 401 when header x == "1"\ndeny 401 when header y == "2"\n')
    b.write_text('deny 401 when header y == "2"\ndeny 401 when header x == "1"\n')
    proc = hdrpolicy("diff", str(a), str(b))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "equivalent" in proc.stdout


def test_diff_of_git_revisions(tmp_path: Path) -> None:
    git = shutil.which("git")
    assert git
    env_args = ["-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([git, "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "p.hp").write_text(TUTORIAL)
    subprocess.run([git, "add", "p.hp"], cwd=tmp_path, check=True)
    subprocess.run([git, *env_args, "commit", "-qm", "one"], cwd=tmp_path, check=True)
    (tmp_path / "p.hp").write_text(TUTORIAL.replace("403", "401"))
    proc = hdrpolicy("diff", "HEAD:p.hp", "p.hp", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "401" in proc.stdout and "403" in proc.stdout


def test_diff_of_a_broken_policy_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.hp"
    bad.write_text("deny 999\n")
    proc = hdrpolicy("diff", str(EXAMPLES / "header-authorization.hp"), str(bad))
    assert proc.returncode == 2 and "HP203" in proc.stderr and "Traceback" not in proc.stderr


def test_check_strict_turns_findings_into_errors(tmp_path: Path) -> None:
    policy = tmp_path / "p.hp"
    policy.write_text('deny 403 when header a == "x" and header a == "y"\n')
    relaxed = hdrpolicy("check", str(policy))
    assert relaxed.returncode == 0 and "warning[HP402]" in relaxed.stderr
    strict = hdrpolicy("check", "--strict", str(policy))
    assert strict.returncode == 1 and "error[HP402]" in strict.stderr


def test_check_sarif_output(tmp_path: Path) -> None:
    policy = tmp_path / "p.hp"
    policy.write_text('deny 403 when header a == "x" and header a == "y"\ndeny 999\n')
    proc = hdrpolicy("check", "--format", "sarif", str(policy))
    assert proc.returncode == 1
    sarif = json.loads(proc.stdout)
    results = sarif["runs"][0]["results"]
    assert {r["ruleId"] for r in results} >= {"HP203"}
    assert all(r["locations"][0]["physicalLocation"]["region"]["startLine"] for r in results)


def test_fmt_keeps_the_file_mode(tmp_path: Path) -> None:
    messy = tmp_path / "private.hp"
    messy.write_text("deny 403   when header a exists\n")
    messy.chmod(0o600)
    assert hdrpolicy("fmt", str(messy)).returncode == 0
    assert messy.read_text() == "deny 403 when header a exists\n"
    assert messy.stat().st_mode & 0o777 == 0o600
