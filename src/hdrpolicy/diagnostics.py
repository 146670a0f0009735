"""Diagnostics: user errors as data, with stable codes, spans and one renderer.

Every problem a user can cause becomes a `Diagnostic`; stages collect them and
return them next to their result.  Only the CLI renders them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict


class Span(BaseModel):
    """A half-open region of a source file; lines and columns count from 1."""

    model_config = ConfigDict(frozen=True)

    line: int
    column: int
    end_line: int
    end_column: int
    start: int
    end: int


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    # Worth knowing, often intended (an `allow` carved out before denies):
    # never an error, not even with `--strict`.
    NOTE = "note"


# Stable diagnostic codes.  Never renumber: users filter and suppress by code.
CODES: dict[str, str] = {
    "HP101": "syntax error",
    "HP102": "invalid string escape",
    "HP103": "source is not valid UTF-8",
    "HP201": "invalid header name",
    "HP202": "invalid header value",
    "HP203": "status out of range",
    "HP204": "invalid regular expression",
    "HP205": "duplicate `policy`",
    "HP206": "duplicate `default`",
    "HP207": "`default` is not last",
    "HP208": "unreachable rule",
    "HP209": "empty list",
    "HP210": "subject can never match",
    "HP211": "invalid policy name",
    "HP212": "`policy` is not first",
    "HP213": "`ignoring case` on `matches`",
    "HP214": "response header set by the proxy",
    "HP301": "invalid policy test file",
    # Analysis findings (warnings; `check --strict` makes them errors).
    "HP401": "rule never fires (shadowed)",
    "HP402": "condition always true or always false",
    "HP403": "redundant rule",
    "HP404": "`allow` makes a later deny partly dead",
    "HP405": "analysis could not decide",
    "HP406": "unused suppression",
    "HP407": "invalid suppression",
}


def default_severity(code: str) -> Severity:
    """Checker codes are errors; analysis codes warnings, but HP404 a note."""
    if code == "HP404":
        return Severity.NOTE
    return Severity.ERROR if code < "HP400" else Severity.WARNING


@dataclass(frozen=True)
class Diagnostic:
    """One finding, located in one source file."""

    code: str
    severity: Severity
    message: str
    span: Span
    help: str | None = None
    notes: tuple[str, ...] = ()
    # The reason given by a `# hdrpolicy: ignore` comment that silences it (`suppress`).
    suppression: str | None = None


@dataclass
class Source:
    """A policy file's text and the path it is shown under."""

    path: str
    text: str
    _line_starts: list[int] = field(default_factory=list, init=False, repr=False)

    @classmethod
    def read(cls, path: Path) -> tuple[Source, list[Diagnostic]]:
        """Read a policy file; undecodable bytes become a diagnostic, not an exception."""
        raw = path.read_bytes()
        try:
            return cls(str(path), raw.decode("utf-8")), []
        except UnicodeDecodeError as exc:
            text = raw.decode("utf-8", errors="replace")
            src = cls(str(path), text)
            prefix = raw[: exc.start].decode("utf-8", errors="replace")
            pos = len(prefix)
            return src, [
                Diagnostic(
                    "HP103",
                    Severity.ERROR,
                    "source is not valid UTF-8",
                    src.span(pos, pos + 1),
                    help="save the policy file as UTF-8",
                )
            ]

    def _starts(self) -> list[int]:
        if not self._line_starts:
            starts = [0]
            starts.extend(i + 1 for i, ch in enumerate(self.text) if ch == "\n")
            self._line_starts = starts
        return self._line_starts

    def position(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of a character offset."""
        starts = self._starts()
        lo, hi = 0, len(starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if starts[mid] <= offset:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1, offset - starts[lo] + 1

    def span(self, start: int, end: int) -> Span:
        line, column = self.position(start)
        end_line, end_column = self.position(max(end, start))
        return Span(
            line=line,
            column=column,
            end_line=end_line,
            end_column=end_column,
            start=start,
            end=end,
        )

    def line_text(self, line: int) -> str:
        starts = self._starts()
        if line - 1 >= len(starts):
            return ""
        begin = starts[line - 1]
        end = self.text.find("\n", begin)
        return self.text[begin : end if end >= 0 else len(self.text)].rstrip("\r")


def sort_key(d: Diagnostic) -> tuple[int, int, str]:
    return (d.span.start, d.span.end, d.code)


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.severity is Severity.ERROR for d in diagnostics)


def render_text(source: Source, d: Diagnostic) -> str:
    """`file:line:col: error[CODE]: message`, the source line, a caret, help."""
    head = f"{source.path}:{d.span.line}:{d.span.column}: {d.severity.value}[{d.code}]: {d.message}"
    line = source.line_text(d.span.line).expandtabs(1)
    gutter = f"{d.span.line} | "
    width = (
        d.span.end_column - d.span.column
        if d.span.end_line == d.span.line
        else len(line) - d.span.column + 1
    )
    caret = " " * (len(gutter) + d.span.column - 1) + "^" * max(1, width)
    out = [head, gutter + line, caret]
    out.extend(f"  = note: {n}" for n in d.notes)
    if d.help:
        out.append(f"  = help: {d.help}")
    return "\n".join(out)


def to_json(source: Source, d: Diagnostic) -> dict[str, Any]:
    return {
        "file": source.path,
        "code": d.code,
        "severity": d.severity.value,
        "message": d.message,
        "line": d.span.line,
        "column": d.span.column,
        "end_line": d.span.end_line,
        "end_column": d.span.end_column,
        "help": d.help,
        "notes": list(d.notes),
    }


def render_json(items: list[tuple[Source, Diagnostic]]) -> str:
    return json.dumps([to_json(s, d) for s, d in items], indent=2)


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate by edit distance, if it is close enough to be a typo."""
    best: tuple[int, str] | None = None
    for cand in candidates:
        dist = _edit_distance(word.lower(), cand.lower())
        if best is None or dist < best[0]:
            best = (dist, cand)
    if best is not None and best[0] <= max(1, len(word) // 3):
        return best[1]
    return None


def _edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]
