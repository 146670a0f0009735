"""Where the grammar and the Go templates are read from.

The repository keeps them in the top-level `grammar/` and `templates/go/`
directories beside `src/` (the source of truth, as the design lays the stages
out); a built wheel carries copies inside the package, put there by the build
step in `setup.py`.  Running from a checkout (an editable install, or `src/`
on the path), the checkout's own directories are read, so an edit there takes
effect at once and no stale copy can shadow it.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_CHECKOUT = _PACKAGE.parent.parent


def asset(*parts: str) -> Path:
    """`asset("grammar", "hdrpolicy.lark")`: the checkout's file, else the installed copy."""
    if _PACKAGE.parent.name == "src" and (_CHECKOUT / "pyproject.toml").is_file():
        local = _CHECKOUT.joinpath(*parts)
        if local.exists():
            return local
    return _PACKAGE.joinpath(*parts)
