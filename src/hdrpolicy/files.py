"""Writing files so that nothing is ever half-written: temp file or directory, then rename.

Staging directories are locked while in use and marked as hdrpolicy's, so one
left by a killed run is recognised, and only such a one is ever cleaned up.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def default_mode(directory: bool = False) -> int:
    """What `open`/`mkdir` would give under the current umask (mkstemp/mkdtemp give 0o600/0o700)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def write_atomically(path: Path, text: str, mode: int | None = None) -> None:
    """Temp file in the same directory, then `os.replace`: readers see old or new, never half.

    `mode` defaults to the existing file's (a rewrite keeps permissions), else the umask's.
    A symbolic link is written through: its target gets the new text, the link stays.
    """
    path = Path(os.path.realpath(path))
    if mode is None:
        mode = path.stat().st_mode & 0o7777 if path.exists() else default_mode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# Inside every staging directory hdrpolicy makes, written once the directory is
# locked: a sibling with this file whose lock can be taken belongs to a run
# that died (kill -9), and may be cleaned up.
STAGING_MARKER = ".hdrpolicy-staging"


class KeepStaging(Exception):
    """Raised through `staging_dir` to leave the directory behind for the next run to repair."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


@contextmanager
def staging_dir(parent: Path, prefix: str) -> Iterator[Path]:
    """A new directory in `parent`, locked (flock) and marked as hdrpolicy's while in use.

    Removed afterwards; the lock goes with the process, so after a kill -9 the
    next run's `stale_staging_dirs` finds it.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    keep = False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        (path / STAGING_MARKER).write_text(f"pid {os.getpid()}\n", encoding="utf-8")
        yield path
    except KeepStaging as kept:
        keep = True
        raise kept.error from kept.__cause__
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def stale_staging_dirs(parent: Path, prefix: str) -> Iterator[Path]:
    """Staging directories in `parent` that hdrpolicy made and no running process holds.

    Each is yielded while this process holds its lock (so no other run can
    take it meanwhile); the caller repairs or removes it.
    """
    try:
        entries = sorted(parent.iterdir())
    except OSError:
        return
    for path in entries:
        if not path.name.startswith(prefix) or path.is_symlink() or not path.is_dir():
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a running compile
            if (path / STAGING_MARKER).is_file():
                yield path
        finally:
            os.close(fd)
