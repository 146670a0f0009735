"""The analysis's budget: counted work, so the same policy gets the same answer anywhere.

`check --strict` gates merges, so its findings must depend on the policy
alone, never on how busy the machine is.  The analysis therefore counts work
instead of time: every z3 call is limited by z3's own deterministic resource
counter (`rlimit`) and charged what it used; every derivative the regular-
language side computes, every formula built and every witness the evaluator
re-runs is charged a fixed cost.  Counts only depend on the policy, so where
the budget runs out is the same on every machine.

A wall-clock ceiling stays as a safety net (a bug, or a pathological
pattern that is slow per step); reaching it is reported as such, since only
that answer can depend on the machine.
"""

from __future__ import annotations

import time

# One step is 1,000 units of z3's resource counter, about half a millisecond
# of solver work on the project's machine; the other charges are in the same
# units, calibrated to take about as long (`benchmarks/bench_analysis.py`).
UNITS_PER_STEP = 1000
# The default for `check`, `compile` and `diff`: several times what the
# README's generated 200-rule policy needs (`benchmarks/bench_analysis.py`).
DEFAULT_STEPS = 40_000
# The safety net, in milliseconds.
DEFAULT_CEILING_MS = 120_000

# Charges, in units, for the work done in Python.
DERIVATIVE = 10  # one new derivative of a regular-language term
NODE = 10  # one new term, or one node of a z3 formula built for a rule or a subject
EVALUATION = 40  # per rule the reference evaluator runs on a witness
QUERY = 1000  # fixed cost of one solver call
MODEL = 3  # reading a model, per assertion the solver holds


class BudgetSpent(Exception):
    """The work budget (or, as a safety net, the wall-clock ceiling) ran out."""

    def __init__(self, ceiling: bool) -> None:
        super().__init__("ceiling" if ceiling else "budget")
        self.ceiling = ceiling


class Budget:
    """Work left for one analysis (or one `diff`), in units; see the module docstring."""

    def __init__(self, steps: int = DEFAULT_STEPS, ceiling_ms: int = DEFAULT_CEILING_MS) -> None:
        self.steps = steps
        self.limit = steps * UNITS_PER_STEP
        self.ceiling_ms = ceiling_ms
        self.deadline = time.monotonic() + ceiling_ms / 1000
        self.spent = 0

    def charge(self, units: int) -> None:
        """Spend `units`; raise `BudgetSpent` when the budget or the ceiling is passed."""
        self.spent += units
        if self.spent > self.limit:
            raise BudgetSpent(ceiling=False)
        if time.monotonic() > self.deadline:
            raise BudgetSpent(ceiling=True)

    @property
    def left(self) -> int:
        """Units left (at least 1, so a z3 limit of 0 never means "unlimited")."""
        return max(1, self.limit - self.spent)

    @property
    def left_ms(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)
