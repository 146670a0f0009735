"""Where hdrpolicy keeps what it can rebuild: parser tables, built plug-ins, the emulator."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`$XDG_CACHE_HOME/hdrpolicy`, else `~/.cache/hdrpolicy`; created by whoever writes."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hdrpolicy"
