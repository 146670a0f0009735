"""Writing files so that nothing is ever half-written: temp file, then rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def default_mode(directory: bool = False) -> int:
    """What `open`/`mkdir` would give under the current umask (mkstemp/mkdtemp give 0o600/0o700)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def write_atomically(path: Path, text: str, mode: int | None = None) -> None:
    """Temp file in the same directory, then `os.replace`: readers see old or new, never half.

    `mode` defaults to the existing file's (a rewrite keeps permissions), else the umask's.
    """
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
