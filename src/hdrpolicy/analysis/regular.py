"""Regular languages over code points, decided with Brzozowski derivatives.

Why not z3's string theory: every atom of a policy (`==`, `starts_with`, a
translated regex, the domain of a subject) is a regular language, and asking
z3 which combinations of 40 prefixes a path can satisfy took minutes.  Here a
language is a term; its derivative by a character is another term, and
because terms are kept in a normal form (unions and intersections are sets,
concatenation is right-nested) a term has finitely many derivatives.  Walking
them decides emptiness, membership and "which atoms can hold together"
exactly, in milliseconds for the shapes policies use.

Terms are interned by an `Algebra`, so equal terms are the same object and
compare by identity; one algebra lives as long as one analysis.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterable

from hdrpolicy.analysis import resyntax
from hdrpolicy.analysis.budget import DERIVATIVE, NODE, Budget

# The largest character the analysis models; values beyond it are outside the model.
MAX_CHAR = 0x2FFFF

Intervals = tuple[tuple[int, int], ...]

_EMPTY, _EPS, _CHARS, _CAT, _STAR, _OR, _AND, _NOT, _LOOP = range(9)


class Unsupported(Exception):
    """A pattern this module does not model; the caller treats the atom as opaque."""


class Re:
    """One interned term: its kind, its operands and whether it accepts the empty string."""

    __slots__ = ("args", "kind", "nullable")

    def __init__(self, kind: int, args: tuple[object, ...], nullable: bool) -> None:
        self.kind = kind
        self.args = args
        self.nullable = nullable


def _union_intervals(sets: Iterable[Intervals]) -> Intervals:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(r for s in sets for r in s):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


def _intersect_intervals(a: Intervals, b: Intervals) -> Intervals:
    out = []
    for lo, hi in a:
        for lo2, hi2 in b:
            if max(lo, lo2) <= min(hi, hi2):
                out.append((max(lo, lo2), min(hi, hi2)))
    return _union_intervals([tuple(out)])


def contains(intervals: Intervals, code: int) -> bool:
    i = bisect.bisect_right(intervals, (code, MAX_CHAR + 1)) - 1
    return i >= 0 and intervals[i][0] <= code <= intervals[i][1]


class Algebra:
    """Builds terms in normal form and takes their derivatives (memoised)."""

    def __init__(self, budget: Budget | None = None) -> None:
        # New terms and new derivatives are charged to the budget: their
        # number depends on the terms alone, so the charge is deterministic.
        self.budget = budget
        self._table: dict[tuple[int, tuple[object, ...]], Re] = {}
        self._derivatives: dict[tuple[Re, int], Re] = {}
        self._contexts: dict[str, Re] = {}
        self.empty = self._mk(_EMPTY, (), False)
        self.eps = self._mk(_EPS, (), True)
        self.any_char = self.chars(((0, MAX_CHAR),))
        self.full = self._mk(_STAR, (self.any_char,), True)

    def _mk(self, kind: int, args: tuple[object, ...], nullable: bool) -> Re:
        key = (kind, args)
        found = self._table.get(key)
        if found is None:
            if self.budget is not None:
                self.budget.charge(NODE)
            found = self._table[key] = Re(kind, args, nullable)
        return found

    # -- constructors ---------------------------------------------------------------

    def chars(self, intervals: Iterable[tuple[int, int]]) -> Re:
        norm = _union_intervals(
            [tuple((lo, min(hi, MAX_CHAR)) for lo, hi in intervals if lo <= hi)]
        )
        return self._mk(_CHARS, (norm,), False) if norm else self.empty

    def literal(self, text: str) -> Re:
        """The one-string language."""
        return self.cat(*[self.chars([(ord(ch), ord(ch))]) for ch in text])

    def cat(self, *parts: Re) -> Re:
        out = self.eps
        for part in reversed(parts):
            out = self._cat2(part, out)
        return out

    def _cat2(self, a: Re, b: Re) -> Re:
        if a is self.empty or b is self.empty:
            return self.empty
        if a is self.eps:
            return b
        if b is self.eps:
            return a
        if a.kind == _CAT:
            x, y = a.args
            assert isinstance(x, Re) and isinstance(y, Re)
            return self._cat2(x, self._cat2(y, b))
        return self._mk(_CAT, (a, b), a.nullable and b.nullable)

    def star(self, r: Re) -> Re:
        if r is self.empty or r is self.eps:
            return self.eps
        if r.kind == _STAR:
            return r
        return self._mk(_STAR, (r,), True)

    def union(self, *rs: Re) -> Re:
        items: set[Re] = set()
        chars: list[Intervals] = []
        for r in rs:
            for x in _flat(r, _OR):
                if x is self.full:
                    return self.full
                if x.kind == _CHARS:
                    chars.append(x.args[0])  # type: ignore[arg-type]
                elif x is not self.empty:
                    items.add(x)
        if chars:
            items.add(self.chars(_union_intervals(chars)))
        return self._set(_OR, items, self.empty, any(x.nullable for x in items))

    def inter(self, *rs: Re) -> Re:
        items: set[Re] = set()
        chars: Intervals | None = None
        for r in rs:
            for x in _flat(r, _AND):
                if x is self.empty:
                    return self.empty
                if x.kind == _CHARS:
                    got: Intervals = x.args[0]  # type: ignore[assignment]
                    chars = got if chars is None else _intersect_intervals(chars, got)
                elif x is not self.full:
                    items.add(x)
        if chars is not None:
            if not chars:
                return self.empty
            items.add(self.chars(chars))
        return self._set(_AND, items, self.full, all(x.nullable for x in items))

    def _set(self, kind: int, items: set[Re], unit: Re, nullable: bool) -> Re:
        if not items:
            return unit
        if len(items) == 1:
            return next(iter(items))
        return self._mk(kind, (frozenset(items),), nullable)

    def compl(self, r: Re) -> Re:
        if r.kind == _NOT:
            inner = r.args[0]
            assert isinstance(inner, Re)
            return inner
        if r is self.empty:
            return self.full
        if r is self.full:
            return self.empty
        return self._mk(_NOT, (r,), not r.nullable)

    def loop(self, r: Re, lo: int, hi: int | None) -> Re:
        """`r{lo,hi}` (hi None: unbounded), kept as one term: its derivatives count down.

        If r accepts the empty string, `r{lo,hi}` is `r{0,hi}`, so `lo` only
        matters for a non-nullable r, and d(r{lo,hi}) = d(r)·r{lo-1,hi-1}.
        """
        if r.nullable:
            lo = 0
        if hi == 0 or r is self.eps:
            return self.eps
        if r is self.empty:
            return self.eps if lo == 0 else self.empty
        if hi is None and lo == 0:
            return self.star(r)
        if lo == 1 and hi == 1:
            return r
        return self._mk(_LOOP, (r, lo, hi), lo == 0)

    # -- derivatives ----------------------------------------------------------------

    def derive(self, r: Re, code: int) -> Re:
        """The strings w such that chr(code) + w is in r."""
        key = (r, code)
        found = self._derivatives.get(key)
        if found is None:
            if self.budget is not None:
                self.budget.charge(DERIVATIVE)
            found = self._derivatives[key] = self._derive(r, code)
        return found

    def _derive(self, r: Re, code: int) -> Re:
        kind, args = r.kind, r.args
        if kind in (_EMPTY, _EPS):
            return self.empty
        if kind == _CHARS:
            return self.eps if contains(args[0], code) else self.empty  # type: ignore[arg-type]
        if kind == _CAT:
            a, b = args
            assert isinstance(a, Re) and isinstance(b, Re)
            first = self._cat2(self.derive(a, code), b)
            return self.union(first, self.derive(b, code)) if a.nullable else first
        if kind == _STAR:
            inner = args[0]
            assert isinstance(inner, Re)
            return self._cat2(self.derive(inner, code), r)
        if kind == _NOT:
            inner = args[0]
            assert isinstance(inner, Re)
            return self.compl(self.derive(inner, code))
        if kind == _LOOP:
            inner, lo, hi = args
            assert isinstance(inner, Re) and isinstance(lo, int)
            assert hi is None or isinstance(hi, int)
            rest = self.loop(inner, max(lo - 1, 0), None if hi is None else hi - 1)
            return self._cat2(self.derive(inner, code), rest)
        parts = [self.derive(x, code) for x in args[0]]  # type: ignore[attr-defined]
        return self.union(*parts) if kind == _OR else self.inter(*parts)

    def accepts(self, r: Re, text: str) -> bool:
        for ch in text:
            r = self.derive(r, ord(ch))
        return r.nullable

    # -- alphabet -------------------------------------------------------------------

    def classes(self, terms: Iterable[Re]) -> list[int]:
        """One representative character per class of characters no term tells apart."""
        sets: set[Intervals] = set()
        seen: set[Re] = set()
        stack = list(terms)
        while stack:
            r = stack.pop()
            if r in seen:
                continue
            seen.add(r)
            if r.kind == _CHARS:
                sets.add(r.args[0])  # type: ignore[arg-type]
            elif r.kind in (_OR, _AND):
                stack.extend(r.args[0])  # type: ignore[arg-type]
            else:
                stack.extend(a for a in r.args if isinstance(a, Re))
        cuts = sorted({0, MAX_CHAR + 1} | {b for s in sets for lo, hi in s for b in (lo, hi + 1)})
        ordered = sorted(sets)
        by_signature: dict[tuple[bool, ...], list[tuple[int, int]]] = {}
        for lo, nxt in itertools.pairwise(cuts):
            signature = tuple(contains(s, lo) for s in ordered)
            by_signature.setdefault(signature, []).append((lo, nxt - 1))
        return sorted(_representative(ranges) for ranges in by_signature.values())

    # -- from a Go regex ---------------------------------------------------------

    def search(self, node: resyntax.Node) -> Re:
        """The values a pattern matches somewhere in (RE2's unanchored search).

        Assertions depend on the characters around them, so a sub-pattern that
        holds one is translated once per *context*: what precedes its match
        (the start of the text, a word character, a newline, anything else)
        and what follows it (the end, or one of those classes).  The search
        language joins each context's language with the text around it.
        """
        if isinstance(node, resyntax.Alternate):
            return self.union(*(self.search(item) for item in node.items))
        # The common `^…$`: anchors at the ends need no contexts.
        items = list(node.items) if isinstance(node, resyntax.Concat) else [node]
        start = bool(items) and items[0] in _TEXT_START
        end = len(items) > start and items[-1] in _TEXT_END
        core = self._translate(resyntax.Concat(tuple(items[int(start) : len(items) - int(end)])))
        if isinstance(core, Re):
            return self.cat(self.eps if start else self.full, core, self.eps if end else self.full)
        t = self._translate(node)
        if isinstance(t, Re):
            return self.cat(self.full, t, self.full)
        parts = []
        for left in _LEFT:
            before = self.eps if left == "S" else self.cat(self.full, self._ctx[left])
            for right in _RIGHT:
                after = self.eps if right == "E" else self.cat(self._ctx[right], self.full)
                parts.append(self.cat(before, t[left, right], after))
        return self.union(*parts)

    @property
    def _ctx(self) -> dict[str, Re]:
        found = self._contexts
        if not found:
            word = self.chars(_WORD)
            newline = self.chars([(0x0A, 0x0A)])
            other = self.inter(self.any_char, self.compl(self.union(word, newline)))
            found.update(W=word, N=newline, O=other)
        return found

    def _translate(self, node: resyntax.Node) -> Re | _Table:
        if isinstance(node, resyntax.Chars):
            return self.chars(node.ranges)
        if isinstance(node, resyntax.Assert):
            test = _ASSERTIONS[node.kind]
            return {
                (lf, rt): self.eps if test(lf, rt) else self.empty for lf in _LEFT for rt in _RIGHT
            }
        if isinstance(node, resyntax.Concat):
            out: Re | _Table = self.eps
            for item in node.items:
                out = self._concat(out, self._translate(item))
            return out
        if isinstance(node, resyntax.Alternate):
            parts = [self._translate(item) for item in node.items]
            if all(isinstance(p, Re) for p in parts):
                return self.union(*parts)  # type: ignore[arg-type]
            tables = [self._lift(p) for p in parts]
            return {k: self.union(*(t[k] for t in tables)) for k in tables[0]}
        if _zero_width(node.item):
            # Matching only the empty string: `x{0,n}` is always met, `x{m,n}` as `x`.
            return self.eps if node.lo == 0 else self._translate(node.item)
        inner = self._translate(node.item)
        if isinstance(inner, Re):
            return self.loop(inner, node.lo, node.hi)
        if node.hi is None or node.hi > resyntax.MAX_ASSERT_REPEAT:
            raise Unsupported(
                "an assertion (`^`, `$`, `\\b`, …) inside `*`, `+`, `{n,}` or a large `{m,n}`"
            )
        options = []
        for count in range(node.lo, node.hi + 1):
            copies: Re | _Table = self.eps
            for _ in range(count):
                copies = self._concat(copies, inner)
            options.append(self._lift(copies))
        return {k: self.union(*(t[k] for t in options)) for k in options[0]}

    def _lift(self, t: Re | _Table) -> _Table:
        return {(lf, rt): t for lf in _LEFT for rt in _RIGHT} if isinstance(t, Re) else t

    def _concat(self, a: Re | _Table, b: Re | _Table) -> Re | _Table:
        """Concatenation in context: the boundary's class is the context of each side."""
        if isinstance(a, Re) and isinstance(b, Re):
            return self.cat(a, b)
        ctx = self._ctx
        ends = {c: self.cat(self.full, ctx[c]) for c in _CLASSES}
        starts = {c: self.cat(ctx[c], self.full) for c in _CLASSES}
        out: _Table = {}
        for lf in _LEFT:
            for rt in _RIGHT:
                if isinstance(a, Re):  # the left part sees no context
                    parts = [self.cat(self.inter(a, ends[c]), b[c, rt]) for c in _CLASSES]  # type: ignore[index]
                    if a.nullable:
                        parts.append(b[lf, rt])  # type: ignore[index]
                elif isinstance(b, Re):
                    parts = [self.cat(a[lf, c], self.inter(b, starts[c])) for c in _CLASSES]
                    if b.nullable:
                        parts.append(a[lf, rt])
                else:
                    parts = [
                        self.cat(self.inter(a[lf, c2], ends[c1]), self.inter(b[c1, rt], starts[c2]))
                        for c1 in _CLASSES
                        for c2 in _CLASSES
                    ]
                    parts += [self.inter(a[lf, rt], ends[c]) for c in _CLASSES if b[c, rt].nullable]
                    parts += [
                        self.inter(b[lf, rt], starts[c]) for c in _CLASSES if a[lf, c].nullable
                    ]
                    if a[lf, rt].nullable and b[lf, rt].nullable:
                        parts.append(self.eps)
                out[lf, rt] = self.union(*parts)
        return out


# Contexts of a match: what precedes it (Start, a Word character, a Newline,
# any Other character) and what follows it (End, or a class).
_LEFT = ("S", "W", "N", "O")
_RIGHT = ("E", "W", "N", "O")
_CLASSES = ("W", "N", "O")
_WORD = [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]
_Table = dict[tuple[str, str], Re]
_TEXT_START = (resyntax.Assert("text_start"),)
_TEXT_END = (resyntax.Assert("text_end"),)


def _zero_width(node: resyntax.Node) -> bool:
    """Does the node match only the empty string (assertions, empty groups)?"""
    if isinstance(node, resyntax.Assert):
        return True
    if isinstance(node, resyntax.Chars):
        return False
    if isinstance(node, resyntax.Repeat):
        return node.hi == 0 or _zero_width(node.item)
    return all(_zero_width(item) for item in node.items)


def _is_word(ctx: str) -> bool:
    return ctx == "W"


_ASSERTIONS: dict[str, Callable[[str, str], bool]] = {
    "text_start": lambda left, right: left == "S",
    "text_end": lambda left, right: right == "E",
    "line_start": lambda left, right: left in ("S", "N"),
    "line_end": lambda left, right: right in ("E", "N"),
    "word": lambda left, right: _is_word(left) != _is_word(right),
    "not_word": lambda left, right: _is_word(left) == _is_word(right),
}


def _flat(r: Re, kind: int) -> Iterable[Re]:
    if r.kind == kind:
        yield from r.args[0]  # type: ignore[misc]
    else:
        yield r


def _representative(ranges: list[tuple[int, int]]) -> int:
    """A readable member of a class: a letter or digit, else printable ASCII, else the first."""
    for lo, hi in ranges:
        for code in range(max(lo, 0x21), min(hi, 0x7E) + 1):
            if chr(code).isalnum():
                return code
    for lo, hi in ranges:
        if max(lo, 0x21) <= min(hi, 0x7E):
            return max(lo, 0x21)
    return ranges[0][0]
