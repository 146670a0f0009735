"""Writing the user's files: through symbolic links, and one clear line when it cannot.

Tests may run as root, whom permission bits do not stop; an unwritable
directory is then a read-only bind mount in a private mount namespace
(`unshare -m`, or `unshare -rm` without the capability).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLES, hdrpolicy

UNFORMATTED = 'deny 403 "x"   unless header allow=="true"\n'
FORMATTED = 'deny 403 "x" unless header allow == "true"\n'
_MOUNT_READ_ONLY = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'


def _read_only_prefix(directory: Path) -> list[str]:
    """A command prefix that runs what follows with `directory` mounted read-only."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.fail("`unshare` (util-linux) is needed to make a directory read-only for root")
    for flags in ("-m", "-rm"):
        prefix = [unshare, flags, "sh", "-c", _MOUNT_READ_ONLY, "sh", str(directory)]
        probe = subprocess.run(
            [*prefix, "sh", "-c", 'touch "$0/probe"', str(directory)],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode != 0 and "Read-only file system" in probe.stderr:
            return prefix
    pytest.fail(f"cannot mount `{directory}` read-only here: {probe.stderr}")


def run_in_read_only(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI while `directory` cannot be written to."""
    if os.geteuid() != 0:
        mode = directory.stat().st_mode
        directory.chmod(0o555)
        try:
            return hdrpolicy(*args)
        finally:
            directory.chmod(mode)
    prefix = _read_only_prefix(directory)
    return subprocess.run(
        [*prefix, sys.executable, "-m", "hdrpolicy", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_fmt_writes_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "real" / "policy.hp"
    target.parent.mkdir()
    target.write_text(UNFORMATTED)
    target.chmod(0o640)
    link = tmp_path / "link.hp"
    link.symlink_to(target)
    proc = hdrpolicy("fmt", str(link))
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink() and link.readlink() == target
    assert target.read_text() == FORMATTED
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in target.parent.iterdir()) == ["policy.hp"], "no temp files"


def test_fmt_in_a_directory_it_cannot_write_is_one_line(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    policy = locked / "policy.hp"
    policy.write_text(UNFORMATTED)
    other = tmp_path / "other.hp"
    other.write_text(UNFORMATTED)
    proc = run_in_read_only(locked, "fmt", str(policy), str(other))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines()[0] == (
        f"error: cannot write `{policy}`: Read-only file system"
        if os.geteuid() == 0
        else f"error: cannot write `{policy}`: Permission denied"
    )
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert policy.read_text() == UNFORMATTED
    assert other.read_text() == FORMATTED, "the other files are still formatted"


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ("missing/report.xml", "No such file or directory"),
        ("a-file/report.xml", "Not a directory"),
        ("a-directory", "Is a directory"),
    ],
)
def test_junit_xml_that_cannot_be_written_is_one_line(
    tmp_path: Path, where: str, reason: str
) -> None:
    (tmp_path / "a-file").write_text("mine")
    (tmp_path / "a-directory").mkdir()
    policy = str(EXAMPLES / "header-authorization.hp")
    proc = hdrpolicy("test", policy, "--junit-xml", str(tmp_path / where))
    assert proc.returncode == 1, proc.stderr
    # Refused before any case runs (nothing is built or sent for a report it cannot write).
    assert proc.stderr.splitlines() == [f"error: cannot write `{tmp_path / where}`: {reason}"]
    assert proc.stdout == ""
    assert (tmp_path / "a-file").read_text() == "mine"
    assert list((tmp_path / "a-directory").iterdir()) == []


def test_junit_xml_into_a_read_only_directory(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    policy = str(EXAMPLES / "header-authorization.hp")
    proc = run_in_read_only(locked, "test", policy, "--junit-xml", str(locked / "report.xml"))
    assert proc.returncode == 1, proc.stderr
    [error] = [x for x in proc.stderr.splitlines() if not x.startswith("… ")]
    assert error.startswith(f"error: cannot write `{locked / 'report.xml'}`: ")
    assert list(locked.iterdir()) == []
