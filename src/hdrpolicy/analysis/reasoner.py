"""Reason about rules: conditions as propositional formulas over atoms, decided by z3.

The string side is settled once per subject (`atoms`): which truth vectors
its atoms can take, with a value for each.  A request is then one presence
flag per subject and one boolean per atom, constrained to those vectors, and
every question the analysis or `diff` asks is a pure-boolean z3 query, so it
takes milliseconds instead of string-theory minutes.

Answers keep the project's contract.  "unsat" is exact: the encoding is
exact for translated atoms and only over-approximates opaque atoms and
subjects whose exploration was cut.  "sat" comes with a request built from
real values (their translated atoms read off the automaton, the others
asked of RE2), which the analysis then re-runs through the evaluator; a
model whose vector no value is known to give is realised on demand, blocked
for good if it is impossible, and the answer is "unknown" if it cannot be
settled.

Scope: by default, requests with one reading (each header sent at most once,
no value read as a list), as UTF-8, so a witness is decided by its one
reading; with `wide`, any reading of any request (`semantics.reading_domain`),
which is what a claim about every request must be decided over.  One flag,
`narrow`, assumed by every one-reading query, rules out the values only
readings have.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import assert_never

import z3

from hdrpolicy import semantics
from hdrpolicy.analysis.atoms import (
    Atom,
    Spaces,
    SubjectSpace,
    Vector,
    always_present,
    atoms_of,
)
from hdrpolicy.analysis.budget import MODEL, NODE, QUERY, Budget, BudgetSpent
from hdrpolicy.analysis.smt import build_request
from hdrpolicy.evaluate import Headers
from hdrpolicy.frontend import ir

# A query tries at most this many models before saying "unknown".
_MAX_REALIZE = 64


@dataclass
class Answer:
    """A z3 answer: sat with a request (and the model), unsat, or unknown."""

    verdict: str
    request: Headers | None = None
    model: z3.ModelRef | None = None


class _Solver:
    """A z3 solver over some subjects (None: all, with every rule definition), and its limits."""

    def __init__(self, keys: frozenset[str] | None, ctx: z3.Context) -> None:
        self.z3 = z3.SimpleSolver(ctx=ctx)
        self.keys = keys
        self.size = 0  # assertions added: reading a model costs about this much

    def add(self, *facts: z3.BoolRef) -> None:
        self.size += len(facts)
        self.z3.add(*facts)
        self.rlimit: int | None = None
        self.timeout: int | None = None


class Reasoner:
    """One request over the atoms of some policies, and incremental solvers over it.

    Every solver call is limited by z3's deterministic resource counter to
    what is left of the budget, and charged what it used (`budget`).  A
    question about one condition goes to a solver that holds only its
    subjects' constraints, so its cost does not grow with the policy.
    """

    def __init__(self, policies: list[ir.Policy], budget: Budget) -> None:
        self.budget = budget
        self.spaces = Spaces(policies, budget)
        # A context of its own: z3's work counter (and so the budget) then does
        # not depend on what else the process asked z3 before.
        self.ctx = z3.Context()
        self.main = _Solver(None, self.ctx)
        self._partial: dict[frozenset[str], _Solver] = {}
        self.present: dict[str, z3.BoolRef] = {}
        self.atoms: dict[str, list[z3.BoolRef]] = {}
        # Each subject's constraints (and the facts learnt about it since).
        self.facts: dict[str, list[z3.BoolRef]] = {}
        # Per subject with opaque atoms or a cut exploration: "one of the known values".
        self.known: dict[str, z3.BoolRef] = {}
        self._codes: dict[str, z3.ArithRef] = {}
        self._compare_cache: dict[tuple[object, ...], frozenset[bool]] = {}
        self._queries = 0
        self._guard: z3.BoolRef | None = None
        # Assumed by one-reading queries: no subject has a value only readings have.
        self.narrow = z3.Bool("narrow", self.ctx)
        for n, (key, space) in enumerate(self.spaces.subjects.items()):
            present = self.present[key] = z3.Bool(f"p{n}", self.ctx)
            atoms = self.atoms[key] = [
                z3.Bool(f"a{n}_{k}", self.ctx) for k in range(len(space.atoms))
            ]
            facts = self.facts[key] = []
            if always_present(space.subject):
                facts.append(present)
            if atoms:
                facts.append(z3.Implies(z3.Not(present), z3.And(*[z3.Not(a) for a in atoms])))
            self._constrain(n, space, present, atoms)
            self.main.add(*facts)

    def _constrain(
        self, n: int, space: SubjectSpace, present: z3.BoolRef, atoms: list[z3.BoolRef]
    ) -> None:
        """The feasible vectors, as "exactly one selector" and each atom as selectors' `or`.

        Listing each vector as a conjunction of every atom costs vectors times
        atoms (250,000 literals for a 500-value list); with one selector per
        vector, an atom is the `or` of the selectors whose vector has it true
        (or, if shorter, its negation the `or` of the others), so the size is
        what the vectors hold, not their product.
        """
        facts = self.facts[space.subject.key]
        translated = space.translated
        if space.complete and translated:
            picked = [atoms[k] for k in translated]
            vectors = list(space.wide)
            facts.extend(self._one_of(f"s{n}", vectors, picked, present, set(space.vectors)))
        if space.complete and not space.opaque:
            return
        known = self.known[space.subject.key] = z3.Bool(f"known{n}", self.ctx)
        full: dict[Vector, None] = {}
        narrow: set[Vector] = set()
        for found in (space.vectors, space.wide):
            for values in found.values():
                for value in values:
                    full[space.vector(value)] = None
                    if found is space.vectors:
                        narrow.add(space.vector(value))
        for fact in self._one_of(f"k{n}", list(full), atoms, present, narrow):
            facts.append(z3.Implies(known, fact))

    def _one_of(
        self,
        prefix: str,
        vectors: list[Vector],
        atoms: list[z3.BoolRef],
        present: z3.BoolRef,
        narrow: set[Vector],
    ) -> list[z3.BoolRef]:
        """Exactly one of `vectors` (or absent); those not in `narrow` only in a reading
        a one-reading request cannot have."""
        absent = z3.Not(present)
        select = [z3.Bool(f"{prefix}_{v}", self.ctx) for v in range(len(vectors))]
        self.budget.charge(NODE * (len(vectors) + 1))
        facts = [z3.PbEq([(s, 1) for s in select] + [(absent, 1)], 1)]
        wide_only = [s for s, vector in zip(select, vectors, strict=True) if vector not in narrow]
        if wide_only:
            self.budget.charge(NODE * len(wide_only))
            facts.append(z3.Implies(self.narrow, z3.Not(z3.Or(*wide_only))))
        for k, atom in enumerate(atoms):
            true = [select[v] for v, vector in enumerate(vectors) if vector[k]]
            false = [select[v] for v, vector in enumerate(vectors) if not vector[k]]
            self.budget.charge(NODE * (min(len(true), len(false)) + 1))
            if len(true) <= len(false):
                facts.append(atom == z3.Or(*true) if true else z3.Not(atom))
            else:
                facts.append(z3.Not(atom) == z3.Or(absent, *false))
        return facts

    # -- formulas -----------------------------------------------------------------

    def condition(self, cond: ir.Condition) -> z3.BoolRef:
        match cond:
            case ir.Compare():
                return self.compare(cond)
            case ir.Not():
                return z3.Not(self.condition(cond.operand))
            case ir.And():
                return z3.And(*[self.condition(op) for op in cond.operands])
            case ir.Or():
                return z3.Or(*[self.condition(op) for op in cond.operands])
            case _:
                assert_never(cond)

    def compare(self, cmp: ir.Compare) -> z3.BoolRef:
        key = cmp.subject.key
        meaning = semantics.comparison(cmp)
        if meaning.positive.literals is semantics.Literals.NONE:
            positive = self.present[key]
        else:
            index = self.spaces.index
            parts = [self.atoms[key][index[key, atom]] for atom in atoms_of(cmp)]
            positive = parts[0] if len(parts) == 1 else z3.Or(*parts)
        return positive if meaning.negation_of is None else z3.Not(positive)

    def atom(self, subject: ir.Subject, atom: Atom) -> z3.BoolRef:
        """Whether the subject's value passes one test (an atom of the policies)."""
        key = subject.key
        return self.atoms[key][self.spaces.index[key, atom]]

    def compare_values(self, cmp: ir.Compare) -> frozenset[bool] | None:
        """The values one comparison can take in any reading, read off its subject's
        vectors (no z3).

        None when the subject's vectors are not exact (opaque atoms, a cut
        exploration): then only the solver can say.
        """
        key = cmp.subject.key
        space = self.spaces.subjects[key]
        if not space.complete or space.opaque:
            return None
        cache_key = (key, cmp.op, tuple(v.value for v in cmp.values), cmp.ignore_case)
        found = self._compare_cache.get(cache_key)
        if found is not None:
            return found
        meaning = semantics.comparison(cmp)
        if meaning.positive.literals is semantics.Literals.NONE:
            positive = {True} if always_present(cmp.subject) else {True, False}
        else:
            index = self.spaces.index
            picked = [space.translated.index(index[key, atom]) for atom in atoms_of(cmp)]
            self.budget.charge(len(space.wide) * len(picked))
            positive = {any(vector[n] for n in picked) for vector in space.wide}
            if not always_present(cmp.subject):
                positive.add(False)  # the header may be missing
        if meaning.negation_of is not None:
            positive = {not v for v in positive}
        found = self._compare_cache[cache_key] = frozenset(positive)
        return found

    def fires(self, rule: ir.Rule) -> z3.BoolRef:
        if rule.condition is None:
            return z3.BoolVal(True, self.ctx)
        assert rule.guard is not None
        cond = self.condition(rule.condition)
        return z3.Not(cond) if semantics.negates(rule.guard) else cond

    def define(self, name: str, formula: z3.BoolRef) -> z3.BoolRef:
        """A fresh boolean equal to `formula`, so later queries stay small."""
        self.budget.charge(NODE * (1 + formula.num_args()))
        var = z3.Bool(name, self.ctx)
        self.main.add(var == formula)
        return var

    def add(self, *formulas: z3.BoolRef) -> None:
        """Constrain every later query about whole requests."""
        self.main.add(*formulas)

    # -- queries ------------------------------------------------------------------

    def check(
        self,
        *formulas: z3.BoolRef,
        witness: bool = True,
        subjects: Iterable[str] | None = None,
        wide: bool = False,
    ) -> Answer:
        """Is there a request with one reading making every formula true?  With `wide`:
        is there a reading of any request that does (its witness has that reading)?  An
        "unsat" with `wide` holds for every request.

        With `subjects` (the only subjects the formulas mention), the question
        goes to a solver holding just their constraints.  The formulas are
        asserted under a fresh guard that the call assumes and then retires
        (asserting its negation), which z3 handles faster than push and pop.
        """
        solver = self.main if subjects is None else self._solver_for(frozenset(subjects))
        self._queries += 1
        guard = z3.Bool(f"q{self._queries}", self.ctx)
        solver.add(z3.Implies(guard, z3.And(*formulas)))
        self._guard = guard
        try:
            return self._solve_all(solver, witness, wide)
        finally:
            self._guard = None
            solver.add(z3.Not(guard))

    def _solver_for(self, keys: frozenset[str]) -> _Solver:
        found = self._partial.get(keys)
        if found is None:
            found = self._partial[keys] = _Solver(keys, self.ctx)
            for key in sorted(keys):
                self.budget.charge(NODE * len(self.facts[key]))
                found.add(*self.facts[key])
        return found

    def solve(self, witness: bool = True) -> Answer:
        """Decide what is asserted now about whole requests (`add`); see `_solve_all`."""
        return self._solve_all(self.main, witness)

    def _solve_all(self, solver: _Solver, witness: bool, wide: bool = False) -> Answer:
        """Decide what `solver` holds; with `witness`, a sat answer carries a request.

        Without it, only subjects whose encoding is inexact are realised (the
        others' vectors are known to have values).  `wide`: over any reading.
        """
        guard = [] if self._guard is None else [self._guard]
        if not wide:
            guard.append(self.narrow)
        known = [v for k, v in self.known.items() if solver.keys is None or k in solver.keys]
        if known:
            answer = self._solve(solver, [*guard, *known], witness, wide)
            if answer.verdict == "sat":
                return answer
        return self._solve(solver, guard, witness, wide)

    def _learn(self, key: str, fact: z3.BoolRef) -> None:
        """A fact about one subject, for every solver from now on."""
        self.facts[key].append(fact)
        self.main.add(fact)
        for keys, solver in self._partial.items():
            if key in keys:
                solver.add(fact)

    def _solve(
        self, solver: _Solver, assumptions: list[z3.BoolRef], witness: bool, wide: bool
    ) -> Answer:
        uncertain = False
        inexact = [k for k in self.known if solver.keys is None or k in solver.keys]
        for _ in range(_MAX_REALIZE):
            result = self._check(solver, assumptions)
            if result == z3.unsat:
                return Answer("unknown" if uncertain else "unsat")
            if result != z3.sat:
                return Answer("unknown")
            if not witness and not inexact:
                return Answer("sat")
            self.budget.charge(MODEL * solver.size)
            model = solver.z3.model()
            values: list[tuple[ir.Subject, str | None]] = []
            for key, space in self.spaces.subjects.items():
                if solver.keys is not None and key not in solver.keys:
                    continue
                if not witness and key not in self.known:
                    continue
                if not z3.is_true(model.eval(self.present[key], model_completion=True)):
                    values.append((space.subject, None))
                    continue
                atoms = self.atoms[key]
                vector = self._vector(model, key)
                got = self.spaces.realize(space.subject, vector, wide)
                if isinstance(got, str):
                    values.append((space.subject, got))
                    continue
                if got is False:  # impossible for every request: block it for good
                    picked = [atoms[k] for k in space.translated]
                    vector = tuple(vector[k] for k in space.translated)
                    fact = _not_vector(self.present[key], picked, vector)
                    # Impossible in one reading may still be possible in another.
                    self._learn(key, fact if wide else z3.Implies(self.narrow, fact))
                else:  # unsettled: not this vector, in this query
                    uncertain = True
                    fact = _not_vector(self.present[key], atoms, vector)
                    solver.add(fact if self._guard is None else z3.Implies(self._guard, fact))
                break
            else:
                request = build_request(values) if witness else None
                return Answer("sat", request, model)
        return Answer("unknown")

    def _check(self, solver: _Solver, assumptions: list[z3.BoolRef]) -> z3.CheckSatResult:
        """One solver call within the budget: z3's `rlimit` is what is left of it."""
        budget = self.budget
        # Setting a parameter costs about as much as a small query, so both are
        # set rarely: z3's limit is what is left of the budget (one call can
        # overshoot by at most that, deterministically, and is then charged);
        # the timeout follows the wall-clock ceiling when it comes close.
        if solver.rlimit is None:
            solver.rlimit = budget.left
            solver.z3.set("rlimit", solver.rlimit)
        left_ms = max(1, budget.left_ms)
        if solver.timeout is None or left_ms < solver.timeout // 2:
            solver.timeout = left_ms
            solver.z3.set("timeout", left_ms)
        before = _rlimit_count(solver.z3)
        result = solver.z3.check(*assumptions)
        budget.charge(QUERY + _rlimit_count(solver.z3) - before)
        if result == z3.unknown and budget.left_ms <= 0:
            raise BudgetSpent(ceiling=True)
        return result

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


def _rlimit_count(solver: z3.Solver) -> int:
    """z3's resource counter: deterministic work, cumulative over the context."""
    try:
        return int(solver.statistics().get_key_value("rlimit count"))
    except z3.Z3Exception:  # no call yet
        return 0


def _lit(var: z3.BoolRef, value: bool) -> z3.BoolRef:
    return var if value else z3.Not(var)


def _not_vector(
    present: z3.BoolRef, atoms: list[z3.BoolRef], vector: tuple[bool, ...]
) -> z3.BoolRef:
    return z3.Not(z3.And(present, *[_lit(a, v) for a, v in zip(atoms, vector, strict=True)]))
