"""Reason about rules: conditions as propositional formulas over atoms, decided by z3.

The string side is settled once per subject (`atoms`): which truth vectors
its atoms can take, with a value for each.  A request is then one presence
flag per subject and one boolean per atom, constrained to those vectors, and
every question the analysis or `diff` asks is a pure-boolean z3 query, so it
takes milliseconds instead of string-theory minutes.

Answers keep the project's contract.  "unsat" is exact: the encoding is
exact for translated atoms and only over-approximates opaque atoms and
subjects whose exploration was cut.  "sat" comes with a request built from
real values whose atoms were re-checked with the evaluator; a model whose
vector no value is known to give is realised on demand, blocked for good if
it is impossible, and the answer is "unknown" if it cannot be settled.

Scope: requests that send each header at most once (one reading), as UTF-8.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import z3

from hdrpolicy import ir
from hdrpolicy.atoms import Spaces, SubjectSpace, atoms_of
from hdrpolicy.evaluate import Headers
from hdrpolicy.smt import build_request

# A query tries at most this many models before saying "unknown".
_MAX_REALIZE = 64


@dataclass
class Answer:
    """A z3 answer: sat with a request (and the model), unsat, or unknown."""

    verdict: str
    request: Headers | None = None
    model: z3.ModelRef | None = None


class Reasoner:
    """One request over the atoms of some policies, and an incremental solver over it."""

    def __init__(self, policies: list[ir.Policy], deadline: float) -> None:
        self.deadline = deadline
        self.spaces = Spaces(policies, deadline)
        self.solver = z3.SimpleSolver()
        self.present: dict[str, z3.BoolRef] = {}
        self.atoms: dict[str, list[z3.BoolRef]] = {}
        # Per subject with opaque atoms or a cut exploration: "one of the known values".
        self.known: list[z3.BoolRef] = []
        # Facts learnt inside a scope, re-added after it.
        self._learnt: list[z3.BoolRef] = []
        # Subjects whose constraint is an over-approximation.
        self.inexact: set[str] = set()
        self._codes: dict[str, z3.ArithRef] = {}
        for n, (key, space) in enumerate(self.spaces.subjects.items()):
            present = self.present[key] = z3.Bool(f"p{n}")
            atoms = self.atoms[key] = [z3.Bool(f"a{n}_{k}") for k in range(len(space.atoms))]
            if space.subject.kind is not ir.SubjectKind.HEADER:
                self.solver.add(present)
            if atoms:
                self.solver.add(z3.Implies(z3.Not(present), z3.And(*[z3.Not(a) for a in atoms])))
            self._constrain(n, space, present, atoms)

    def _constrain(
        self, n: int, space: SubjectSpace, present: z3.BoolRef, atoms: list[z3.BoolRef]
    ) -> None:
        translated = space.translated
        if space.complete and translated:
            options = [
                z3.And(*[_lit(atoms[k], v) for k, v in zip(translated, vector, strict=True)])
                for vector in space.vectors
            ]
            self.solver.add(z3.Implies(present, z3.Or(*options)))
        if space.complete and not space.opaque:
            return
        self.inexact.add(space.subject.key)
        known = z3.Bool(f"known{n}")
        full = {space.vector(value) for values in space.vectors.values() for value in values}
        options = [z3.And(*[_lit(a, v) for a, v in zip(atoms, vec, strict=True)]) for vec in full]
        self.solver.add(z3.Implies(known, z3.Or(z3.Not(present), *options)))
        self.known.append(known)

    # -- formulas -----------------------------------------------------------------

    def condition(self, cond: ir.Condition) -> z3.BoolRef:
        if isinstance(cond, ir.Compare):
            return self.compare(cond)
        if isinstance(cond, ir.Not):
            return z3.Not(self.condition(cond.operand))
        parts = [self.condition(op) for op in cond.operands]
        return z3.And(*parts) if isinstance(cond, ir.And) else z3.Or(*parts)

    def compare(self, cmp: ir.Compare) -> z3.BoolRef:
        key = cmp.subject.key
        if cmp.op is ir.Op.EXISTS:
            return self.present[key]
        index = self.spaces.index
        parts = [self.atoms[key][index[key, atom]] for atom in atoms_of(cmp)]
        positive = parts[0] if len(parts) == 1 else z3.Or(*parts)
        return z3.Not(positive) if cmp.op in ir.NEGATED_OPS else positive

    def fires(self, rule: ir.Rule) -> z3.BoolRef:
        if rule.condition is None:
            return z3.BoolVal(True)
        cond = self.condition(rule.condition)
        return cond if rule.guard is ir.Guard.WHEN else z3.Not(cond)

    def define(self, name: str, formula: z3.BoolRef) -> z3.BoolRef:
        """A fresh boolean equal to `formula`, so later queries stay small."""
        var = z3.Bool(name)
        self.solver.add(var == formula)
        return var

    def add(self, *formulas: z3.BoolRef) -> None:
        """Constrain every later query."""
        self.solver.add(*formulas)

    # -- queries ------------------------------------------------------------------

    @contextmanager
    def scope(self) -> Iterator[None]:
        """Constraints added inside hold until the end of the block (facts learnt stay)."""
        self.solver.push()
        try:
            yield
        finally:
            self.solver.pop()
            self.solver.add(*self._learnt)

    def check(self, *formulas: z3.BoolRef, witness: bool = True) -> Answer:
        """Is there a request making every formula true?  Past the deadline: unknown."""
        with self.scope():
            self.solver.add(*formulas)
            return self.solve(witness)

    def solve(self, witness: bool = True) -> Answer:
        """Decide what is asserted now; with `witness`, a sat answer carries a request.

        Without it, only subjects whose encoding is inexact are realised (the
        others' vectors are known to have values).
        """
        if self.known:
            answer = self._solve([*self.known], witness)
            if answer.verdict == "sat":
                return answer
        return self._solve([], witness)

    def _solve(self, assumptions: list[z3.BoolRef], witness: bool) -> Answer:
        uncertain = False
        for _ in range(_MAX_REALIZE):
            left_ms = int((self.deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                return Answer("unknown")
            self.solver.set("timeout", left_ms)
            result = self.solver.check(*assumptions)
            if result == z3.unsat:
                return Answer("unknown" if uncertain else "unsat")
            if result != z3.sat:
                return Answer("unknown")
            if not witness and not self.inexact:
                return Answer("sat")
            model = self.solver.model()
            values: list[tuple[ir.Subject, str | None]] = []
            for key, space in self.spaces.subjects.items():
                if not witness and key not in self.inexact:
                    continue
                if not z3.is_true(model.eval(self.present[key], model_completion=True)):
                    values.append((space.subject, None))
                    continue
                atoms = self.atoms[key]
                vector = self._vector(model, key)
                got = self.spaces.realize(space.subject, vector)
                if isinstance(got, str):
                    values.append((space.subject, got))
                    continue
                if got is False:  # impossible for every request: block it for good
                    picked = [atoms[k] for k in space.translated]
                    vector = tuple(vector[k] for k in space.translated)
                    fact = _not_vector(self.present[key], picked, vector)
                    self._learnt.append(fact)
                    self.solver.add(fact)
                else:  # unsettled: not this vector, in this scope
                    uncertain = True
                    self.solver.add(_not_vector(self.present[key], atoms, vector))
                break
            else:
                request = build_request(values) if witness else None
                return Answer("sat", request, model)
        return Answer("unknown")

    def _vector(self, model: z3.ModelRef, key: str) -> tuple[bool, ...]:
        """A subject's atoms in a model, read with one evaluation (each one is slow)."""
        atoms = self.atoms[key]
        if not atoms:
            return ()
        code = self._codes.get(key)
        if code is None:
            code = self._codes[key] = z3.Sum([z3.If(a, 1 << k, 0) for k, a in enumerate(atoms)])
        bits = model.eval(code, model_completion=True).as_long()
        return tuple(bool(bits >> k & 1) for k in range(len(atoms)))


def _lit(var: z3.BoolRef, value: bool) -> z3.BoolRef:
    return var if value else z3.Not(var)


def _not_vector(
    present: z3.BoolRef, atoms: list[z3.BoolRef], vector: tuple[bool, ...]
) -> z3.BoolRef:
    return z3.Not(z3.And(present, *[_lit(a, v) for a, v in zip(atoms, vector, strict=True)]))
