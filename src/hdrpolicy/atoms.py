"""Atoms: what a policy asks of each subject, and which answers can hold together.

A comparison is a boolean function of one subject's value.  Every distinct
test a policy applies to a subject (`== L`, `starts_with L`, a regex, each
with its `ignoring case`) is an *atom*; `!=`, `in` and `not in` are built
from `==` atoms, `exists` is the subject's presence.  Each atom is a regular
language (`regular`), so the truth vectors a present value can give its
atoms are found once per subject, exactly, by walking the derivatives of all
of them at once, with one concrete value for each vector.  Rule reasoning is
then propositional (`reasoner`).

Two things make a subject's set of vectors *incomplete* (an
over-approximation: any vector is allowed and checked lazily): a regex
outside the translated subset (an opaque atom, decided on concrete values by
RE2 only), and exploration past its caps.
"""

from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass, field

from hdrpolicy import ir
from hdrpolicy.codec import list_delimiter
from hdrpolicy.diagnostics import Span
from hdrpolicy.evaluate import compare
from hdrpolicy.regular import Algebra, Re, Unsupported
from hdrpolicy.smt import domain_regexes, translate_regex

# Exploration caps per subject: past them its vectors are incomplete.
MAX_VECTORS = 512
MAX_STATES = 20_000
# Values kept per vector: more choices when an opaque atom must also agree.
_WITNESSES = 4

_NO_SPAN = Span(line=1, column=1, end_line=1, end_column=1, start=0, end=0)
Vector = tuple[bool, ...]


@dataclass(frozen=True)
class Atom:
    """One positive test of a value: `==`, `starts_with`, `ends_with`, `contains`, `matches`."""

    op: ir.Op
    literal: str
    ignore_case: bool

    def holds(self, subject: ir.Subject, value: str) -> bool:
        """The reference evaluator's answer for a present value."""
        cmp = ir.Compare(
            subject=subject,
            op=self.op,
            values=[ir.StringLit(value=self.literal, span=_NO_SPAN)],
            ignore_case=self.ignore_case,
            span=_NO_SPAN,
        )
        return compare(cmp, value.encode())


def atoms_of(cmp: ir.Compare) -> list[Atom]:
    """The atoms a comparison is built from (a disjunction; `exists` has none)."""
    op = ir.NEGATED_OPS.get(cmp.op, cmp.op)
    if op is ir.Op.EXISTS:
        return []
    if op is ir.Op.IN:
        op = ir.Op.EQ
    return [
        Atom(op, _fold(v.value) if cmp.ignore_case else v.value, cmp.ignore_case)
        for v in cmp.values
    ]


def _fold(text: str) -> str:
    return "".join(c.lower() if c.isascii() else c for c in text)


@dataclass
class SubjectSpace:
    """One subject's atoms, their languages and the feasible vectors found for them.

    `vectors` maps a vector over the *translated* atoms to values giving it
    (each re-checked with the evaluator); opaque atoms are left out of it.
    `complete`: no other vector of the translated atoms is possible.
    """

    subject: ir.Subject
    atoms: list[Atom] = field(default_factory=list)
    languages: list[Re | None] = field(default_factory=list)
    vectors: dict[Vector, list[str]] = field(default_factory=dict)
    complete: bool = False
    _seen: dict[str, Vector] = field(default_factory=dict)

    @property
    def translated(self) -> list[int]:
        return [k for k, lang in enumerate(self.languages) if lang is not None]

    @property
    def opaque(self) -> list[int]:
        return [k for k, lang in enumerate(self.languages) if lang is None]

    def vector(self, value: str) -> Vector:
        """Every atom's truth for a present value, by the evaluator (memoised)."""
        found = self._seen.get(value)
        if found is None:
            found = self._seen[value] = tuple(
                atom.holds(self.subject, value) for atom in self.atoms
            )
        return found


class Spaces:
    """The atoms of every subject of one or more policies, and their feasible vectors."""

    def __init__(self, policies: list[ir.Policy], deadline: float) -> None:
        self.alg = Algebra()
        self.deadline = deadline
        self.subjects: dict[str, SubjectSpace] = {}
        self.index: dict[tuple[str, Atom], int] = {}
        self._domains: dict[str, Re] = {}
        for policy in policies:
            for rule in policy.rules:
                if rule.condition is not None:
                    for cmp in ir.comparisons(rule.condition):
                        self._add(cmp)
        for space in self.subjects.values():
            self._explore(space)

    def _add(self, cmp: ir.Compare) -> None:
        key = cmp.subject.key
        space = self.subjects.setdefault(key, SubjectSpace(cmp.subject))
        for atom in atoms_of(cmp):
            if (key, atom) not in self.index:
                self.index[key, atom] = len(space.atoms)
                space.atoms.append(atom)
                space.languages.append(self._language(atom))

    def _language(self, atom: Atom) -> Re | None:
        alg = self.alg
        if atom.op is ir.Op.MATCHES:
            regex = translate_regex(atom.literal)
            if regex is None:
                return None
            try:
                return alg.from_z3(regex)
            except Unsupported:
                return None
        lit = alg.literal(atom.literal, fold=atom.ignore_case)
        if atom.op is ir.Op.EQ:
            return lit
        if atom.op is ir.Op.STARTS_WITH:
            return alg.cat(lit, alg.full)
        if atom.op is ir.Op.ENDS_WITH:
            return alg.cat(alg.full, lit)
        return alg.cat(alg.full, lit, alg.full)

    def domain(self, subject: ir.Subject) -> Re:
        """The values the plug-in can see of this subject (`smt.domain_regexes`)."""
        delimiter = list_delimiter(subject.host_name)
        key = subject.key if delimiter else subject.kind.value
        if key not in self._domains:
            parts = [self.alg.from_z3(r) for r in domain_regexes(subject.kind, delimiter)]
            self._domains[key] = self.alg.inter(*parts)
        return self._domains[key]

    # -- exploration ----------------------------------------------------------------

    def _explore(self, space: SubjectSpace) -> None:
        """Every vector of the translated atoms a present value can give, one BFS.

        The state is the tuple of derivatives (domain first); a state whose
        domain part accepts is a value, and its atoms' acceptance is its vector.
        """
        langs = [lang for lang in space.languages if lang is not None]
        start = (self.domain(space.subject), *langs)
        space.complete = self._search(start, space, MAX_VECTORS)
        for k in space.opaque:
            # Values an opaque pattern is likely to match, so "sat" can often be shown.
            pattern = space.atoms[k].literal
            plain = re.sub(r"\\.", "", pattern)  # escapes such as \b dropped
            for value in sorted({pattern, plain, *re.findall(r"[A-Za-z0-9/._-]+", plain)}):
                if self.alg.accepts(start[0], value):
                    self._record(space, value)

    def _search(self, start: tuple[Re, ...], space: SubjectSpace, max_vectors: int) -> bool:
        """Breadth-first over derivatives, recording each accepted value; False past a cap."""
        alg = self.alg
        classes = alg.classes(start)
        seen = {start}
        queue: deque[tuple[tuple[Re, ...], str]] = deque([(start, "")])
        while queue:
            state, text = queue.popleft()
            if state[0].nullable:
                self._record(space, text)
                if len(space.vectors) > max_vectors:
                    return False
            if len(seen) > MAX_STATES or time.monotonic() > self.deadline:
                return False
            for code in classes:
                nxt = tuple(alg.derive(r, code) for r in state)
                if nxt[0] is alg.empty or nxt in seen:
                    continue
                seen.add(nxt)
                queue.append((nxt, text + chr(code)))
        return True

    def _record(self, space: SubjectSpace, value: str) -> None:
        full = space.vector(value)
        key = tuple(full[k] for k in space.translated)
        kept = space.vectors.setdefault(key, [])
        # A value is kept if there is room, or if its opaque atoms answer differently.
        if len(kept) < _WITNESSES or all(space.vector(v) != full for v in kept):
            kept.append(value)

    def realize(self, subject: ir.Subject, vector: Vector) -> str | bool:
        """A value giving exactly this vector of all atoms; False if none exists; True: unknown.

        Known values are tried first; for an incomplete subject, the language
        of the vector is searched directly.
        """
        space = self.subjects[subject.key]
        translated = space.translated
        key = tuple(vector[k] for k in translated)
        if key not in space.vectors and not space.complete:
            alg = self.alg
            parts = [self.domain(subject)]
            for k in translated:
                lang = space.languages[k]
                assert lang is not None
                parts.append(lang if vector[k] else alg.compl(lang))
            exhausted = self._search((alg.inter(*parts),), space, MAX_VECTORS + len(space.vectors))
            if exhausted and key not in space.vectors:
                return False
        for value in space.vectors.get(key, []):
            if space.vector(value) == vector:
                return value
        # Known vector, but no known value agrees with its opaque atoms: unsettled.
        return key in space.vectors or not space.complete
