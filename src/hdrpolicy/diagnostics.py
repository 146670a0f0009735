"""Diagnostics: user errors as data, with stable codes, spans and one renderer.

Every problem a user can cause becomes a `Diagnostic`; stages collect them and
return them next to their result.  Only the CLI renders them.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

# Re-exported: every stage names severities and codes through this module.
from hdrpolicy.codes import Code as Code
from hdrpolicy.codes import Severity as Severity


class Span(BaseModel):
    """A half-open region of a source file; lines and columns count from 1."""

    model_config = ConfigDict(frozen=True)

    line: int
    column: int
    end_line: int
    end_column: int
    start: int
    end: int


@dataclass(frozen=True)
class Diagnostic:
    """One finding, located in one source file; its code says what kind (`codes.Code`)."""

    code: Code
    severity: Severity
    message: str
    span: Span
    help: str | None = None
    notes: tuple[str, ...] = ()
    # The reason given by a `# hdrpolicy: ignore` comment that silences it (`suppress`).
    suppression: str | None = None
    # The file it is in when that is not the policy file (a list file), else None.
    source: Source | None = field(default=None, compare=False)


# What ends a line.  CR, CRLF and LF are all line breaks (as `cat`, editors and
# git show them): the reader turns them into LF, so the lexer, line numbers and
# `fmt` see one convention.
_LINE_BREAKS = re.compile(r"\r\n?")


@dataclass
class Source:
    """A policy file's text (line breaks as LF) and the path it is shown under.

    `original` is the text as read; `newline` is the file's own line break
    (`\\r\\n` when every line ends so), which `fmt` keeps.
    """

    path: str
    text: str
    original: str = field(default="", init=False, repr=False)
    newline: str = field(default="\n", init=False, repr=False)
    _line_starts: list[int] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self.original = self.text
        if "\r" in self.text:
            crlf = self.text.count("\r\n")
            if crlf and crlf == self.text.count("\n") == self.text.count("\r"):
                self.newline = "\r\n"
            self.text = _LINE_BREAKS.sub("\n", self.text)

    @classmethod
    def read(cls, path: Path) -> tuple[Source, list[Diagnostic]]:
        """Read a policy file; undecodable bytes become a diagnostic, not an exception."""
        return cls.decode(str(path), path.read_bytes())

    @classmethod
    def decode(cls, name: str, raw: bytes) -> tuple[Source, list[Diagnostic]]:
        """Policy text from bytes: UTF-8, a leading byte-order mark dropped (editors add one)."""
        raw = raw.removeprefix(b"\xef\xbb\xbf")
        try:
            return cls(name, raw.decode("utf-8")), []
        except UnicodeDecodeError as exc:
            text = raw.decode("utf-8", errors="replace")
            src = cls(name, text)
            prefix = _LINE_BREAKS.sub("\n", raw[: exc.start].decode("utf-8", errors="replace"))
            pos = len(prefix)
            return src, [
                Diagnostic(
                    Code.HP103,
                    Code.HP103.severity,
                    "source is not valid UTF-8",
                    src.span(pos, pos + 1),
                    help="save the policy file as UTF-8",
                )
            ]

    def _starts(self) -> list[int]:
        if not self._line_starts:
            starts = [0]
            starts.extend(m.end() for m in re.finditer("\n", self.text))
            self._line_starts = starts
        return self._line_starts

    def position(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of a character offset."""
        starts = self._starts()
        index = bisect.bisect_right(starts, offset) - 1
        return index + 1, offset - starts[index] + 1

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
        return self.text[begin : end if end >= 0 else len(self.text)]


def sort_key(d: Diagnostic) -> tuple[str, int, int, str]:
    """The policy file's diagnostics in order, then each list file's."""
    return ("" if d.source is None else d.source.path, d.span.start, d.span.end, d.code)


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.severity is Severity.ERROR for d in diagnostics)


def visible(text: str) -> str:
    """`text` safe to print: control and other invisible characters as `\\uXXXX`.

    What a policy or a request holds (ESC, CR, U+2028, bidi overrides) must not
    drive the terminal or fake lines; a tab shows as one space.
    """
    if text.isprintable():
        return text
    return "".join(_visible_char(ch) for ch in text)


def _visible_char(ch: str) -> str:
    if ch.isprintable():
        return ch
    if ch == "\t":
        return " "
    code = ord(ch)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def render_text(source: Source, d: Diagnostic) -> str:
    """`file:line:col: error[CODE]: message`, the source line, a caret, help."""
    source = d.source or source
    head = f"{source.path}:{d.span.line}:{d.span.column}: {d.severity.value}[{d.code}]: {d.message}"
    line = source.line_text(d.span.line)
    before = visible(line[: d.span.column - 1])
    if d.span.end_line == d.span.line:
        under = visible(line[d.span.column - 1 : d.span.end_column - 1])
    else:
        under = visible(line[d.span.column - 1 :])
    gutter = f"{d.span.line} | "
    caret = " " * (len(gutter) + len(before)) + "^" * max(1, len(under))
    out = [visible(head), gutter + visible(line), caret]
    out.extend(f"  = note: {visible(n)}" for n in d.notes)
    if d.help:
        out.append(f"  = help: {visible(d.help)}")
    return "\n".join(out)


def to_json(source: Source, d: Diagnostic) -> dict[str, Any]:
    source = d.source or source
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
    limit = max(1, len(word) // 3)
    for cand in candidates:
        if abs(len(cand) - len(word)) > limit:
            continue  # too far apart in length to be a typo (and a huge word stays cheap)
        dist = _edit_distance(word.lower(), cand.lower())
        if best is None or dist < best[0]:
            best = (dist, cand)
    if best is not None and best[0] <= limit:
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
