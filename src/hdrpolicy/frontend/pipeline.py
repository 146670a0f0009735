"""The front end's stages run in order: read → parse → lower → check.

Callers (the CLI, the compiler, the tests) get a `Checked` result: the source,
the policy when it is usable, and every diagnostic found on the way.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

from hdrpolicy.diagnostics import Diagnostic, Source, has_errors, sort_key
from hdrpolicy.frontend import ir
from hdrpolicy.frontend.checker import ListReader, check
from hdrpolicy.frontend.limits import MAX_LIST_FILE_BYTES, describe
from hdrpolicy.frontend.lower import lower
from hdrpolicy.frontend.parser import parse


@dataclass
class Checked:
    source: Source
    policy: ir.Policy | None
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.policy is not None and not has_errors(self.diagnostics)


def files_beside(directory: Path) -> ListReader:
    """Reads the list files a policy in `directory` names (relative to it): regular
    files only (never a device or a pipe that would not end), up to the size limit."""

    def read(name: str) -> bytes:
        path = directory / name
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
        if not path.is_file():
            raise OSError("not a regular file")
        with path.open("rb") as handle:
            data = handle.read(MAX_LIST_FILE_BYTES + 1)
        if len(data) > MAX_LIST_FILE_BYTES:
            raise OSError(
                f"it is longer than hdrpolicy's limit of {describe(MAX_LIST_FILE_BYTES)} bytes"
            )
        return data

    return read


def check_source(source: Source, default_name: str, read_list: ListReader | None = None) -> Checked:
    """Run parse, lower and check on text; `default_name` names a policy without `policy`;
    list files are read with `read_list` (None: beside `source.path`)."""
    tree, syntax_diags = parse(source)
    if tree is None:
        return Checked(source, None, sorted(syntax_diags, key=sort_key))
    parts, lowering_diags = lower(tree, source)
    reader = read_list if read_list is not None else files_beside(Path(source.path).parent)
    policy, check_diags = check(parts, source, default_name, reader)
    diagnostics = sorted([*syntax_diags, *lowering_diags, *check_diags], key=sort_key)
    # A policy with syntax errors is incomplete: report on it, never compile it.
    return Checked(source, None if syntax_diags else policy, diagnostics)


def check_file(path: Path, shown_as: str | None = None) -> Checked:
    """Read and check a policy file (the caller handles OSError: a missing file is not ours)."""
    source, read_diags = Source.read(path)
    if shown_as is not None:
        source.path = shown_as
    if read_diags:
        return Checked(source, None, read_diags)
    return check_source(source, path.stem, files_beside(path.parent))
