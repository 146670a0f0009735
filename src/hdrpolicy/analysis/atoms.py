"""Atoms: what a policy asks of each subject, and which answers can hold together.

A comparison is a boolean function of one subject's value.  Every distinct
test a policy applies to a subject (`== L`, `starts_with L`, a regex, each
with its `ignoring case`) is an *atom*; `!=`, `in` and `not in` are built
from `==` atoms, `exists` is the subject's presence.  Each atom is a regular
language (`regular`), so the truth vectors a present value can give its
atoms are found once per subject, exactly, by walking the derivatives of all
of them at once, with one concrete value for each vector.  Rule reasoning is
then propositional (`reasoner`).

Each subject is explored twice when its readings can have values the plug-in
never sees whole in a request with one reading (a list value read whole, a
quoted cookie's value without its quotes; `semantics.reading_domain`): the
*one-reading* vectors give readable witnesses, the *reading* vectors decide
the claims that hold for every request.  Otherwise both are the same.

Two things make a subject's set of vectors *incomplete* (an
over-approximation: any vector is allowed and checked lazily): a regex
outside the translated subset (an opaque atom, decided on concrete values by
RE2 only), and exploration past its caps.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

from hdrpolicy import semantics
from hdrpolicy.analysis.budget import NODE, Budget
from hdrpolicy.analysis.regular import Algebra, Re, Unsupported
from hdrpolicy.frontend import ir
from hdrpolicy.semantics import Literals, list_delimiter

# Exploration caps per subject: past them its vectors are incomplete.
MAX_VECTORS = 4096
MAX_STATES = 100_000
# Values kept per vector: more choices when an opaque atom must also agree.
_WITNESSES = 4

Vector = tuple[bool, ...]


@dataclass(frozen=True)
class Atom:
    """One positive test of a value: `==`, `starts_with`, `ends_with`, `contains`, `matches`."""

    op: ir.Op
    literal: str
    ignore_case: bool
    # The subject kind whose own meaning the operator has (`client in`: an address range).
    kind: ir.SubjectKind | None = None

    @property
    def meaning(self) -> semantics.OperatorMeaning:
        return semantics.operator(self.op, self.kind)

    def holds(self, subject: ir.Subject, value: str) -> bool:
        """The reference evaluator's answer for a present value (`semantics.holds`)."""
        return semantics.holds(self.meaning, self.literal, self.ignore_case, value.encode())


def atoms_of(cmp: ir.Compare) -> list[Atom]:
    """The atoms a comparison is built from (a disjunction; `exists` has none)."""
    meaning = semantics.comparison(cmp).positive
    if meaning.literals is Literals.NONE:
        return []
    assert meaning.atom is not None, meaning.op
    folded = semantics.folds(cmp)
    return [
        Atom(meaning.atom, semantics.fold(v.value) if folded else v.value, folded, meaning.kind)
        for v in cmp.values
    ]


def always_present(subject: ir.Subject) -> bool:
    """Whether every request has a value for the subject: a pseudo-header (`:method`,
    `:path`, `:authority`), or the client address, whose absence its operators judge
    as they judge "" (no range holds either), so "" stands for it.  A query
    parameter is read from `:path` but may be missing."""
    return subject.is_pseudo and semantics.subject(subject.kind).extract is None


@dataclass
class SubjectSpace:
    """One subject's atoms, their languages and the feasible vectors found for them.

    `vectors` maps a vector over the *translated* atoms to values giving it,
    in a request with one reading; `wide` the same for any reading (the same
    dict when the two domains are one); opaque atoms are left out of both
    (RE2 answers them for each value).
    `complete`: no other vector of the translated atoms is possible (in either).
    `untranslated[k]` names the regex construct that made atom k opaque.
    """

    subject: ir.Subject
    atoms: list[Atom] = field(default_factory=list)
    languages: list[Re | None] = field(default_factory=list)
    untranslated: list[str | None] = field(default_factory=list)
    vectors: dict[Vector, list[str]] = field(default_factory=dict)
    wide: dict[Vector, list[str]] = field(default_factory=dict)
    complete: bool = False
    translated: list[int] = field(default_factory=list)
    opaque: list[int] = field(default_factory=list)
    _seen: dict[str, Vector] = field(default_factory=dict)

    def freeze(self) -> None:
        """Fix which atoms are translated, once every atom is known."""
        self.translated = [k for k, lang in enumerate(self.languages) if lang is not None]
        self.opaque = [k for k, lang in enumerate(self.languages) if lang is None]

    def vector(self, value: str) -> Vector:
        """Every atom's truth for a present value, by the evaluator (memoised)."""
        found = self._seen.get(value)
        if found is None:
            found = self._seen[value] = tuple(
                atom.holds(self.subject, value) for atom in self.atoms
            )
        return found

    def remember(self, value: str, key: Vector) -> Vector:
        """The full vector of a value whose translated atoms are known to give `key`."""
        found = self._seen.get(value)
        if found is None:
            full = dict(zip(self.translated, key, strict=True))
            for k in self.opaque:
                full[k] = self.atoms[k].holds(self.subject, value)
            found = self._seen[value] = tuple(full[k] for k in range(len(self.atoms)))
        return found


class Spaces:
    """The atoms of every subject of one or more policies, and their feasible vectors."""

    def __init__(self, policies: list[ir.Policy], budget: Budget) -> None:
        self.alg = Algebra(budget)
        self.budget = budget
        self.subjects: dict[str, SubjectSpace] = {}
        self.index: dict[tuple[str, Atom], int] = {}
        self._domains: dict[tuple[str, bool], Re] = {}
        for policy in policies:
            for rule in policy.rules:
                if rule.condition is not None:
                    for cmp in ir.comparisons(rule.condition):
                        self._add(cmp)
        for space in self.subjects.values():
            space.freeze()
            self._explore(space)

    def _add(self, cmp: ir.Compare) -> None:
        key = cmp.subject.key
        space = self.subjects.setdefault(key, SubjectSpace(cmp.subject))
        for atom in atoms_of(cmp):
            if (key, atom) not in self.index:
                self.budget.charge(NODE)
                self.index[key, atom] = len(space.atoms)
                space.atoms.append(atom)
                language, why = self._language(atom)
                space.languages.append(language)
                space.untranslated.append(why)

    def _language(self, atom: Atom) -> tuple[Re | None, str | None]:
        """The atom's language, or None and the construct that could not be translated."""
        language = atom.meaning.language
        assert language is not None, atom.op
        try:
            return language(self.alg, atom.literal, atom.ignore_case), None
        except Unsupported as exc:
            return None, str(exc)

    def domain(self, subject: ir.Subject, wide: bool = False) -> Re:
        """The values the plug-in can see of this subject in a request with one reading
        (`semantics.domain`), or, `wide`, in any reading (`semantics.reading_domain`)."""
        delimiter = list_delimiter(subject)
        key = (subject.key if delimiter or wide else subject.kind.value, wide)
        if key not in self._domains:
            if wide:
                found = semantics.reading_domain(self.alg, subject)
            else:
                found = semantics.domain(self.alg, subject.kind, delimiter)
            self._domains[key] = found
        return self._domains[key]

    def has_lists(self, subject: ir.Subject) -> bool:
        """Whether a reading can have values a one-reading request cannot."""
        return self.domain(subject, wide=True) is not self.domain(subject)

    # -- exploration ----------------------------------------------------------------

    def _explore(self, space: SubjectSpace) -> None:
        """Every vector of the translated atoms a present value can give, one BFS.

        The state is the domain's derivative and the derivatives of the atoms
        that can still match (an atom whose derivative is empty stays false,
        so it is dropped from the state: a list of 500 values costs a trie,
        not 500 derivatives per character).
        """
        live = []
        for n, k in enumerate(space.translated):
            lang = space.languages[k]
            assert lang is not None
            live.append((n, lang))
        space.complete = self._search(self.domain(space.subject), tuple(live), space, MAX_VECTORS)
        if self.has_lists(space.subject):
            dom = self.domain(space.subject, wide=True)
            space.wide = {}
            space.complete &= self._search(dom, tuple(live), space, MAX_VECTORS, wide=True)
        else:
            space.wide = space.vectors
        for k in space.opaque:
            # Values an opaque pattern is likely to match, so "sat" can often be shown.
            pattern = space.atoms[k].literal
            plain = re.sub(r"\\.", "", pattern)  # escapes such as \b dropped
            for value in sorted({pattern, plain, *re.findall(r"[A-Za-z0-9/._-]+", plain)}):
                for wide in (False, True) if space.wide is not space.vectors else (False,):
                    if self.alg.accepts(self.domain(space.subject, wide), value):
                        self._record(space, value, self._translated_vector(space, value), wide)

    def _translated_vector(self, space: SubjectSpace, value: str) -> Vector:
        alg = self.alg
        out = []
        for k in space.translated:
            lang = space.languages[k]
            assert lang is not None
            out.append(alg.accepts(lang, value))
        return tuple(out)

    def _search(
        self,
        dom: Re,
        live: tuple[tuple[int, Re], ...],
        space: SubjectSpace,
        max_vectors: int,
        target: tuple[Vector, Vector] | None = None,
        wide: bool = False,
    ) -> bool:
        """Breadth-first over derivatives, recording each accepted value; False past a cap.

        With `target` (a translated vector that every value of `dom` gives,
        and the vector of all atoms wanted), stop at the first value giving it.
        `wide`: the values are recorded as readings' (`SubjectSpace.wide`).
        """
        alg = self.alg
        found = space.wide if wide else space.vectors
        width = len(space.translated)
        classes = alg.classes([dom, *(lang for _, lang in live)])
        start = (dom, live)
        seen = {start}
        queue: deque[tuple[Re, tuple[tuple[int, Re], ...], str]] = deque([(dom, live, "")])
        while queue:
            state, atoms, text = queue.popleft()
            if state.nullable:
                if target is None:
                    vector = [False] * width
                    for n, lang in atoms:
                        vector[n] = lang.nullable
                    self._record(space, text, tuple(vector), wide)
                else:
                    self._record(space, text, target[0], wide)
                    if space.remember(text, target[0]) == target[1]:
                        return True
                if len(found) > max_vectors:
                    return False
            if len(seen) > MAX_STATES:
                return False
            for code in classes:
                nxt = alg.derive(state, code)
                if nxt is alg.empty:
                    continue
                after = []
                for n, lang in atoms:
                    d = alg.derive(lang, code)
                    if d is not alg.empty:
                        after.append((n, d))
                key = (nxt, tuple(after))
                if key in seen:
                    continue
                seen.add(key)
                queue.append((nxt, key[1], text + chr(code)))
        return True

    def _record(self, space: SubjectSpace, value: str, key: Vector, wide: bool = False) -> None:
        """Keep a value for its translated vector (the opaque atoms are asked of RE2);
        `wide`: a reading's value (`SubjectSpace.wide`)."""
        kept = (space.wide if wide else space.vectors).setdefault(key, [])
        if len(kept) < _WITNESSES:
            kept.append(value)
            space.remember(value, key)
        elif space.opaque:
            # Past the quota, a value is kept only if its opaque atoms answer differently.
            full = space.remember(value, key)
            if all(space.vector(v) != full for v in kept):
                kept.append(value)

    def realize(self, subject: ir.Subject, vector: Vector, wide: bool = False) -> str | bool:
        """A value giving exactly this vector of all atoms; False if none exists; True: unknown.

        In a request with one reading, or, `wide`, in any reading.  Known
        values are tried first; for an incomplete subject, the language of
        the vector is searched directly.
        """
        space = self.subjects[subject.key]
        vectors = space.wide if wide else space.vectors
        translated = space.translated
        key = tuple(vector[k] for k in translated)
        known = vectors.get(key, [])
        if subject.kind is ir.SubjectKind.CLIENT:
            # "" stands for a client that is not an IP address: show an address if one does.
            known = sorted(known, key=lambda value: value == "")
        for value in known:
            if space.vector(value) == vector:
                return value
        if key not in vectors and space.complete:
            return False
        if space.opaque or not space.complete:
            alg = self.alg
            parts = [self.domain(subject, wide)]
            for k in translated:
                lang = space.languages[k]
                assert lang is not None
                parts.append(lang if vector[k] else alg.compl(lang))
            exhausted = self._search(alg.inter(*parts), (), space, 1 << 30, (key, vector), wide)
            for value in vectors.get(key, []):
                if space.vector(value) == vector:
                    return value
            if exhausted and key not in vectors:
                return False
        # Known vector, but no known value agrees with its opaque atoms: unsettled.
        return key in vectors or not space.complete
