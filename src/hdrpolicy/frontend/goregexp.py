"""Which patterns Go's `regexp` accepts: RE2's syntax plus Go's own limits.

The plug-in compiles every pattern with Go's `regexp` at start-up, so the
checker must accept exactly what it accepts.  The syntax is RE2's (google-re2
checks it, without RE2's smaller memory limit); Go adds limits of its own
(`regexp/syntax/parse.go`): the parse tree may be at most `MAX_HEIGHT` deep and
compile to at most `MAX_SIZE` instructions.  This module sizes the tree Go's
parser builds (literal runs merged, single characters in an alternation merged
into one class) with Go's own formulas, without recursion: a pattern nested a
thousand deep is measured like any other.

Go also factors common prefixes out of alternations (`ab|ac` → `a[bc]`), which
only makes its program smaller; a pattern within a hair of `MAX_SIZE` whose
alternations Go could factor may be refused here although Go would take it.
Go's limit on the runes in character classes (`maxRunes`) cannot be reached by
a pattern within `limits.MAX_PATTERN_CHARS`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import re2

# regexp/syntax: maxHeight, and maxSize = 128 << 20 / instSize (instSize 40).
MAX_HEIGHT = 1000
MAX_SIZE = (128 << 20) // 40


def go_regex_error(pattern: str) -> str | None:
    """Why Go's `regexp` would reject `pattern` (Go's wording), or None."""
    syntax = _syntax_error(pattern)
    if syntax is not None:
        return syntax
    height, size = measure(pattern)
    if height > MAX_HEIGHT:
        return "expression nests too deeply"
    if size > MAX_SIZE:
        return "expression too large"
    return None


def _syntax_error(pattern: str) -> str | None:
    """RE2's verdict on the syntax; RE2 accepts `\\C` (any byte), which Go rejects."""
    if re.search(r"(?<!\\)(\\\\)*\\C", pattern):
        return "invalid escape sequence: `\\C`"
    options = re2.Options()
    options.log_errors = False
    try:
        re2.compile(pattern, options)
    except re2.error as exc:
        detail = exc.args[0]
        text = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
        # RE2's own program-size limit, past parsing: Go's limits decide instead.
        if text.startswith("pattern too large"):
            return None
        return text
    return None


@dataclass
class _Node:
    """A node of Go's parse tree, as far as its size and height go."""

    size: int
    height: int = 1
    runes: int = 0  # > 0: a literal of this many runes (merged with neighbours)
    char: bool = False  # one character or class: merged with its kind in an alternation


@dataclass
class _Group:
    capture: bool
    alternatives: list[list[_Node]] = field(default_factory=list)
    current: list[_Node] = field(default_factory=list)


_CLASS = _Node(size=1, char=True)
_EMPTY_WIDTH = _Node(size=1)
_REPEAT = re.compile(r"\{(\d+)(,(\d*))?\}")
_NAMED = re.compile(r"\(\?P?<[^>]*>")
_FLAGS = re.compile(r"\(\?[imsU-]*(:|\))")
_ESCAPE = re.compile(
    r"\\(?:[pP](?:\{[^}]*\}|.)|x(?:\{[0-9A-Fa-f]*\}|[0-9A-Fa-f]{2})|[0-7]{1,3}|.)", re.DOTALL
)


def measure(pattern: str) -> tuple[int, int]:
    """(height, size in instructions) of the tree Go builds for a syntactically valid pattern."""
    stack = [_Group(capture=False)]
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        group = stack[-1]
        if c == "(":
            named = _NAMED.match(pattern, i)
            flags = _FLAGS.match(pattern, i)
            if named:
                stack.append(_Group(capture=True))
                i = named.end()
            elif flags and flags.group(1) == ")":
                i = flags.end()  # flags only: no node
            elif flags:
                stack.append(_Group(capture=False))
                i = flags.end()
            else:
                stack.append(_Group(capture=True))
                i += 1
        elif c == ")":
            done = stack.pop()
            inner = _alternate(done)
            _push(stack[-1].current, _capture(inner) if done.capture else inner)
            i += 1
        elif c == "|":
            group.alternatives.append(group.current)
            group.current = []
            i += 1
        elif c in "*+?" or (c == "{" and _REPEAT.match(pattern, i)):
            i = _repeat(pattern, i, group.current)
        elif c == "[":
            i = _skip_class(pattern, i)
            _push(group.current, _CLASS)
        elif c == ".":
            _push(group.current, _CLASS)
            i += 1
        elif c in "^$":
            _push(group.current, _EMPTY_WIDTH)
            i += 1
        elif c == "\\":
            i = _escape(pattern, i, group.current)
        else:
            _push(group.current, _literal())
            i += 1
    top = _alternate(stack[0])
    return top.height, top.size


def _literal(runes: int = 1) -> _Node:
    return _Node(size=runes, runes=runes, char=runes == 1)


def _escape(pattern: str, i: int, items: list[_Node]) -> int:
    if pattern.startswith("\\Q", i):
        end = pattern.find("\\E", i + 2)
        text = pattern[i + 2 :] if end < 0 else pattern[i + 2 : end]
        for _ in text:
            _push(items, _literal())
        return len(pattern) if end < 0 else end + 2
    m = _ESCAPE.match(pattern, i)
    assert m is not None
    letter = pattern[i + 1] if i + 1 < len(pattern) else ""
    if letter in "pPdDsSwW":
        _push(items, _CLASS)
    elif letter in "bBAz":
        _push(items, _EMPTY_WIDTH)
    else:
        _push(items, _literal())
    return m.end()


def _skip_class(pattern: str, i: int) -> int:
    """The index after a character class that starts at `i`."""
    i += 1
    if pattern.startswith("^", i):
        i += 1
    first = True
    while i < len(pattern):
        c = pattern[i]
        if c == "]" and not first:
            return i + 1
        first = False
        if pattern.startswith("[:", i):
            end = pattern.find(":]", i + 2)
            i = end + 2 if end >= 0 else i + 1
        elif c == "\\":
            m = _ESCAPE.match(pattern, i)
            i = m.end() if m else i + 2
        else:
            i += 1
    return i


def _push(items: list[_Node], node: _Node) -> None:
    """Append to a concatenation as Go's `maybeConcat` does.

    The newest node stays apart (a repetition applies to it alone); the two
    before it merge if both are literals.
    """
    _merge_top(items)
    items.append(node)


def _merge_top(items: list[_Node]) -> None:
    if len(items) >= 2 and items[-1].runes and items[-2].runes:
        runes = items[-2].runes + items.pop().runes
        items[-1] = _literal(runes)


def _repeat(pattern: str, i: int, items: list[_Node]) -> int:
    """Apply `* + ? {m,n}` at `i` to the last node; returns the index after it."""
    if not items:  # `^*` and the like: RE2 took it; nothing to size
        return i + 1
    last = items.pop()
    c = pattern[i]
    if c == "*":
        node, i = _Node(size=2 + last.size, height=last.height + 1), i + 1
    elif c in "+?":
        node, i = _Node(size=1 + last.size, height=last.height + 1), i + 1
    else:
        m = _REPEAT.match(pattern, i)
        assert m is not None
        lo = int(m.group(1))
        hi = lo if m.group(2) is None else (int(m.group(3)) if m.group(3) else -1)
        if hi == -1:
            size = 2 + last.size if lo == 0 else 1 + lo * last.size
        else:
            size = hi * last.size + (hi - lo)
        node, i = _Node(size=max(1, size), height=last.height + 1), m.end()
    if pattern.startswith("?", i):
        i += 1  # non-greedy: the same tree
    items.append(node)
    return i


def _capture(inner: _Node) -> _Node:
    return _Node(size=2 + inner.size, height=inner.height + 1)


def _concat(items: list[_Node]) -> _Node:
    _merge_top(items)
    if not items:
        return _EMPTY_WIDTH  # OpEmptyMatch
    if len(items) == 1:
        return items[0]
    return _Node(size=sum(x.size for x in items), height=1 + max(x.height for x in items))


def _alternate(group: _Group) -> _Node:
    """Go's alternation: adjacent single characters and classes become one class."""
    merged: list[_Node] = []
    for node in (_concat(alt) for alt in [*group.alternatives, group.current]):
        if node.char and merged and merged[-1].char:
            merged[-1] = _CLASS
        else:
            merged.append(node)
    if len(merged) == 1:
        return merged[0]
    size = sum(x.size for x in merged) + len(merged) - 1
    return _Node(size=size, height=1 + max(x.height for x in merged))
