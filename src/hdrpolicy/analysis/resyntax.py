"""Go/RE2 regular expressions as a small syntax tree, for the analysis to translate exactly.

The checker has already made sure Go's `regexp` accepts the pattern (HP204),
so this parser only needs to understand valid patterns.  Every construct it
reads has an exact meaning as a regular language (with assertions resolved by
`regular`); a construct without one is `Untranslatable`, naming it, so the
analysis says "unknown" for that rule instead of guessing.

What stays untranslatable, and why:
  * Unicode classes (`\\pL`, `\\p{Greek}`, `\\PN`): their tables are Go's
    Unicode version, which this module does not carry;
  * `(?i)` on a non-ASCII letter: Go's case folding tables beyond ASCII, same reason;
  * an assertion (`^`, `$`, `\\A`, `\\z`, `\\b`, `\\B`) inside `*`, `+` or
    `{n,}`, or inside a bounded repetition of more than `MAX_ASSERT_REPEAT`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Go's largest code point; `regular.MAX_CHAR` is the analysis's.
MAX_RUNE = 0x10FFFF
# A bounded repetition holding an assertion is unrolled up to this count.
MAX_ASSERT_REPEAT = 16

Ranges = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Chars:
    """One character from a set of code point ranges."""

    ranges: Ranges


@dataclass(frozen=True)
class Concat:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Alternate:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Repeat:
    item: Node
    lo: int
    hi: int | None  # None: unbounded


@dataclass(frozen=True)
class Assert:
    """A zero-width assertion: text_start, text_end, line_start, line_end, word, not_word."""

    kind: str


Node = Chars | Concat | Alternate | Repeat | Assert


@dataclass(frozen=True)
class Untranslatable:
    """A valid pattern the analysis cannot translate exactly; `construct` says what."""

    construct: str


class _Stop(Exception):
    def __init__(self, construct: str) -> None:
        super().__init__(construct)
        self.construct = construct


_PERL = {
    "d": ((0x30, 0x39),),
    "w": ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)),
    "s": ((0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)),
}
_POSIX = {
    "alnum": ((0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)),
    "alpha": ((0x41, 0x5A), (0x61, 0x7A)),
    "ascii": ((0x00, 0x7F),),
    "blank": ((0x09, 0x09), (0x20, 0x20)),
    "cntrl": ((0x00, 0x1F), (0x7F, 0x7F)),
    "digit": ((0x30, 0x39),),
    "graph": ((0x21, 0x7E),),
    "lower": ((0x61, 0x7A),),
    "print": ((0x20, 0x7E),),
    "punct": ((0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)),
    "space": ((0x09, 0x0D), (0x20, 0x20)),
    "upper": ((0x41, 0x5A),),
    "word": ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)),
    "xdigit": ((0x30, 0x39), (0x41, 0x46), (0x61, 0x66)),
}
_SIMPLE_ESC = {"t": "\t", "n": "\n", "r": "\r", "f": "\f", "v": "\v", "a": "\a"}
# Go's simple case folding of ASCII letters includes two non-ASCII characters.
_FOLD_EXTRA = {"k": (0x212A,), "s": (0x17F,)}
_REPEAT = re.compile(r"\{(\d+)(,(\d*))?\}")


# The parser and the translation recurse once per group: patterns Go takes with
# groups nested deeper (up to 999) are left untranslated, never a RecursionError.
MAX_NESTING = 100


def parse(pattern: str) -> Node | Untranslatable:
    """The syntax tree of a valid Go pattern, or the construct that keeps it untranslated."""
    if _nesting(pattern) > MAX_NESTING:
        return Untranslatable(f"groups nested more than {MAX_NESTING} deep")
    try:
        return _Parser(pattern).parse()
    except _Stop as exc:
        return Untranslatable(exc.construct)
    except (IndexError, ValueError):
        return Untranslatable("a construct this analysis does not read")


def _nesting(pattern: str) -> int:
    """How deep `(` nests (an escaped or bracketed `(` may count: it only overestimates)."""
    depth = deepest = 0
    escaped = False
    for ch in pattern:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth -= 1
    return deepest


@dataclass
class _Flags:
    fold: bool = False  # i
    multiline: bool = False  # m
    dot_nl: bool = False  # s


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.s = pattern
        self.i = 0

    def parse(self) -> Node:
        node = self.alternation(_Flags())
        if self.i != len(self.s):
            raise _Stop(f"`{self.s[self.i]}` at offset {self.i}")
        return node

    def peek(self) -> str | None:
        return self.s[self.i] if self.i < len(self.s) else None

    def alternation(self, flags: _Flags) -> Node:
        """Alternatives up to `)` or the end; `(?flags)` changes `flags` for the rest."""
        parts = [self.sequence(flags)]
        while self.peek() == "|":
            self.i += 1
            parts.append(self.sequence(flags))
        return parts[0] if len(parts) == 1 else Alternate(tuple(parts))

    def sequence(self, flags: _Flags) -> Node:
        items: list[Node] = []
        while self.peek() not in (None, "|", ")"):
            if self.s.startswith("\\Q", self.i):
                end = self.s.find("\\E", self.i + 2)
                text = self.s[self.i + 2 : end if end >= 0 else len(self.s)]
                self.i = end + 2 if end >= 0 else len(self.s)
                items.extend(self._char(ord(c), flags) for c in text)
                continue
            if self.s.startswith("(?", self.i) and (m := _FLAGS_ONLY.match(self.s, self.i)):
                self.i = m.end()
                self._set_flags(m.group(1), flags)
                continue
            if items and self._at_repeat():
                # After `(?i)` or `\Q…\E` a repetition applies to what came before (as in Go).
                items[-1] = self.repeat(items[-1])
                continue
            atom = self.atom(flags)
            items.append(self.repeat(atom))
        return items[0] if len(items) == 1 else Concat(tuple(items))

    def _set_flags(self, spec: str, flags: _Flags) -> None:
        on = True
        for c in spec:
            if c == "-":
                on = False
            elif c == "i":
                flags.fold = on
            elif c == "m":
                flags.multiline = on
            elif c == "s":
                flags.dot_nl = on
            elif c != "U":  # U swaps greediness: the same language
                raise _Stop(f"the flag `{c}`")

    def _at_repeat(self) -> bool:
        c = self.peek()
        return c in ("*", "+", "?") or (c == "{" and _REPEAT.match(self.s, self.i) is not None)

    def repeat(self, node: Node) -> Node:
        while True:
            c = self.peek()
            if c == "*":
                node, self.i = Repeat(node, 0, None), self.i + 1
            elif c == "+":
                node, self.i = Repeat(node, 1, None), self.i + 1
            elif c == "?":
                node, self.i = Repeat(node, 0, 1), self.i + 1
            elif c == "{" and (m := _REPEAT.match(self.s, self.i)):
                lo = int(m.group(1))
                hi = lo if m.group(2) is None else (int(m.group(3)) if m.group(3) else None)
                self.i = m.end()
                node = Repeat(node, lo, hi)
            else:
                return node
            if self.peek() == "?":  # non-greedy: the same language
                self.i += 1

    def atom(self, flags: _Flags) -> Node:
        c = self.s[self.i]
        if c == "(":
            return self.group(flags)
        if c == "[":
            return self.char_class(flags)
        if c == ".":
            self.i += 1
            if flags.dot_nl:
                return Chars(((0, MAX_RUNE),))
            return Chars(((0, 0x09), (0x0B, MAX_RUNE)))
        if c == "^":
            self.i += 1
            return Assert("line_start" if flags.multiline else "text_start")
        if c == "$":
            self.i += 1
            return Assert("line_end" if flags.multiline else "text_end")
        if c == "\\":
            nxt = self.s[self.i + 1]
            kinds = {"A": "text_start", "z": "text_end", "b": "word", "B": "not_word"}
            if nxt in kinds:
                self.i += 2
                return Assert(kinds[nxt])
            return self._class(self.escape(), flags)
        if c == "{":  # not a repetition (the checker rejected misplaced ones): a literal
            self.i += 1
            return self._char(ord(c), flags)
        self.i += 1
        return self._char(ord(c), flags)

    def group(self, flags: _Flags) -> Node:
        inner = _Flags(flags.fold, flags.multiline, flags.dot_nl)
        if self.s.startswith("(?:", self.i):
            self.i += 3
        elif m := _FLAGS_GROUP.match(self.s, self.i):
            self.i = m.end()
            self._set_flags(m.group(1), inner)
        elif m := _NAMED.match(self.s, self.i):
            self.i = m.end()
        elif self.s.startswith("(?", self.i):
            raise _Stop("a `(?…)` group")
        else:
            self.i += 1
        node = self.alternation(inner)
        if self.peek() != ")":
            raise _Stop("an unbalanced group")
        self.i += 1
        return node

    def escape(self) -> list[tuple[int, int]]:
        """One escape (`\\d`, `\\x41`, `\\.`, …) as ranges; the index moves past it."""
        c = self.s[self.i + 1]
        self.i += 2
        if c in _PERL:
            return list(_PERL[c])
        if c in "DWS":
            return _negate(list(_PERL[c.lower()]))
        if c in _SIMPLE_ESC:
            return [(ord(_SIMPLE_ESC[c]),) * 2]
        if c in "pP":
            name = self.s[self.i] if self.s[self.i] != "{" else None
            if name is None:
                end = self.s.index("}", self.i)
                name = self.s[self.i + 1 : end]
                self.i = end + 1
            else:
                self.i += 1
            raise _Stop(f"the Unicode class `\\{c}{{{name}}}`")
        if c == "x":
            m = re.compile(r"\{([0-9A-Fa-f]+)\}|([0-9A-Fa-f]{2})").match(self.s, self.i)
            if not m:
                raise _Stop("`\\x`")
            self.i = m.end()
            code = int(m.group(1) or m.group(2), 16)
            return [(code, code)]
        if c in "01234567":
            m = re.compile(r"[0-7]{0,2}").match(self.s, self.i)
            assert m is not None
            self.i = m.end()
            code = int(c + m.group(), 8)
            return [(code, code)]
        if c.isascii() and not c.isalnum():
            return [(ord(c), ord(c))]
        raise _Stop(f"the escape `\\{c}`")

    def char_class(self, flags: _Flags) -> Node:
        self.i += 1
        negate = self.peek() == "^"
        if negate:
            self.i += 1
        ranges: list[tuple[int, int]] = []
        first = True
        while True:
            c = self.s[self.i]
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            if m := _POSIX_CLASS.match(self.s, self.i):
                self.i = m.end()
                found = list(_POSIX[m.group(2)])
                ranges.extend(_negate(found) if m.group(1) else found)
                continue
            if c == "\\":
                got = self.escape()
                if len(got) != 1 or got[0][0] != got[0][1]:
                    ranges.extend(got)
                    continue
                lo = got[0][0]
            else:
                lo = ord(c)
                self.i += 1
            if self.peek() == "-" and self.s[self.i + 1] != "]":
                self.i += 1
                if self.peek() == "\\":
                    got = self.escape()
                    hi = got[0][0]
                else:
                    hi = ord(self.s[self.i])
                    self.i += 1
                ranges.append((lo, hi))
            else:
                ranges.append((lo, lo))
        if flags.fold:
            ranges = _fold(ranges)
        if negate:
            ranges = _negate(ranges)
        return Chars(_normal(ranges))

    def _char(self, code: int, flags: _Flags) -> Node:
        return self._class([(code, code)], flags)

    def _class(self, ranges: list[tuple[int, int]], flags: _Flags) -> Node:
        return Chars(_normal(_fold(ranges) if flags.fold else ranges))


_FLAGS_ONLY = re.compile(r"\(\?([imsU-]+)\)")
_FLAGS_GROUP = re.compile(r"\(\?([imsU-]+):")
_NAMED = re.compile(r"\(\?P?<[A-Za-z0-9_]+>")
_POSIX_CLASS = re.compile(r"\[:(\^?)([a-z]+):\]")


def _normal(ranges: list[tuple[int, int]]) -> Ranges:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


def _negate(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    nxt = 0
    for lo, hi in sorted(ranges):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = max(nxt, hi + 1)
    if nxt <= MAX_RUNE:
        out.append((nxt, MAX_RUNE))
    return out


def _fold(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Add Go's case-fold partners; only ASCII letters (and their two extras) are known."""
    out = list(ranges)
    for lo, hi in ranges:
        for code in range(lo, min(hi, 0x7F) + 1):
            ch = chr(code)
            if ch.isalpha():
                for partner in (ord(ch.lower()), ord(ch.upper()), *_FOLD_EXTRA.get(ch.lower(), ())):
                    out.append((partner, partner))
        for extra, letter in ((0x212A, "k"), (0x17F, "s")):
            if lo <= extra <= hi:
                out.extend([(ord(letter), ord(letter)), (ord(letter.upper()),) * 2])
        if hi > 0x7F and _has_cased_non_ascii(max(lo, 0x80), hi):
            raise _Stop("`(?i)` on a non-ASCII letter")
    return out


def _has_cased_non_ascii(lo: int, hi: int) -> bool:
    if hi - lo > 0x1000:
        return True  # a wide range surely holds cased letters
    return any(
        chr(c).lower() != chr(c) or chr(c).upper() != chr(c)
        for c in range(lo, hi + 1)
        if c not in (0x17F, 0x212A)
    )
