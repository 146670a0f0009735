"""Analyse: exact findings about a checked policy's rules, decided with z3.

Each finding is a warning with a stable code (HP401 to HP405).  A verdict that
"no request can …" is an unsat answer and is exact (see `smt` for the
request model); a verdict that shows a request is re-checked by running that
witness through the reference evaluator, and is reported as "unknown"
(HP405) when the evaluator disagrees.  Queries past the budget are unknown too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import z3

from hdrpolicy import ir
from hdrpolicy.diagnostics import Diagnostic, Severity, Source, Span
from hdrpolicy.evaluate import Decision, Headers, evaluate, fires
from hdrpolicy.fmt import condition_text
from hdrpolicy.smt import Encoder, render_request, response_key

DEFAULT_BUDGET_MS = 10_000
# One query never takes more than this share of the budget.
_QUERY_SHARE = 4


class _BudgetExhausted(Exception):
    """Raised when the analysis budget is spent; `run` turns it into one HP405."""


@dataclass
class _Query:
    """A z3 answer: sat with a request, unsat, or unknown."""

    verdict: str
    request: Headers | None = None


class _Analysis:
    def __init__(self, policy: ir.Policy, source: Source, budget_ms: int) -> None:
        self.policy = policy
        self.source = source
        self.deadline = time.monotonic() + budget_ms / 1000
        self.query_ms = max(1, budget_ms // _QUERY_SHARE)
        self.enc = Encoder()
        self.fires = [self.enc.fires(r) for r in policy.rules]
        self.solver = z3.Solver()
        self.solver.add(*self.enc.domain())
        self.findings: list[Diagnostic] = []
        self.unknown: list[str] = []

    def query(self, *formulas: z3.BoolRef) -> _Query:
        left_ms = int((self.deadline - time.monotonic()) * 1000)
        if left_ms <= 0:
            raise _BudgetExhausted
        self.solver.set("timeout", min(self.query_ms, left_ms))
        self.solver.push()
        try:
            self.solver.add(*formulas)
            result = self.solver.check()
            if result == z3.sat:
                return _Query("sat", self.enc.request(self.solver.model()))
            return _Query("unsat" if result == z3.unsat else "unknown")
        finally:
            self.solver.pop()

    def none_before(self, i: int) -> z3.BoolRef:
        return z3.And(*[z3.Not(f) for f in self.fires[:i]]) if i else z3.BoolVal(True)

    def warn(self, code: str, message: str, span: Span, help: str | None, *notes: str) -> None:
        self.findings.append(Diagnostic(code, Severity.WARNING, message, span, help, notes))

    def note_unknown(self, what: str, span: Span) -> None:
        self.warn(
            "HP405",
            f"analysis could not decide {what}",
            span,
            "the solver ran out of budget, or a pattern is outside the supported regex subset",
        )

    # -- findings ------------------------------------------------------------------

    def run(self) -> list[Diagnostic]:
        try:
            self._run()
        except _BudgetExhausted:
            self.warn(
                "HP405",
                "analysis stopped: its time budget is spent; later findings are unknown",
                self.policy.span,
                "raise the analysis budget to analyse the whole policy",
            )
        return self.findings

    def _run(self) -> None:
        dead: set[int] = set()
        for i, rule in enumerate(self.policy.rules):
            if rule.condition is not None and self.constant_conditions(i, rule):
                dead.add(i)
                continue
            if self.shadowed(i, rule):
                dead.add(i)
        for i, rule in enumerate(self.policy.rules):
            if i not in dead:
                self.redundant(i, rule)
        for i, rule in enumerate(self.policy.rules):
            if i not in dead and rule.action is ir.Action.DENY and rule.condition is not None:
                self.partly_dead(i, rule)

    def constant_conditions(self, i: int, rule: ir.Rule) -> bool:
        """Report the outermost sub-conditions that are always true or always false.

        Returns True when the whole condition is constant (the rule then never
        or always fires, and the other findings would only repeat this one).
        """
        assert rule.condition is not None
        whole = self._constant(rule.condition)
        if whole is None:
            self._constant_parts(rule.condition)
        return whole is not None

    def _constant(self, cond: ir.Condition) -> str | None:
        formula = self.enc.condition(cond)
        for value, test in (("false", formula), ("true", z3.Not(formula))):
            if self.query(test).verdict == "unsat":
                text = condition_text(cond)
                self.warn(
                    "HP402",
                    f"condition is always {value}: `{text}`",
                    cond.span,
                    "no request can make it " + ("true" if value == "false" else "false"),
                    "decided by z3 over every request with at most one of each header",
                )
                return value
        return None

    def _constant_parts(self, cond: ir.Condition) -> None:
        if isinstance(cond, ir.Compare):
            return
        children = [cond.operand] if isinstance(cond, ir.Not) else cond.operands
        for child in children:
            if isinstance(child, ir.Not) or self._constant(child) is None:
                self._constant_parts(child)

    def shadowed(self, i: int, rule: ir.Rule) -> bool:
        fires_i = self.fires[i]
        answer = self.query(fires_i, self.none_before(i))
        if answer.verdict == "unknown":
            self.note_unknown(f"whether the rule at line {rule.span.line} can fire", rule.span)
            return False
        if answer.verdict == "sat":
            return False
        overlapping = [j for j in range(i) if self.query(fires_i, self.fires[j]).verdict != "unsat"]
        witness = self.query(fires_i)
        lines = ", ".join(str(self.policy.rules[j].span.line) for j in overlapping)
        notes = []
        if witness.request is not None:
            decision = evaluate(self.policy, witness.request)
            if self._would_fire(rule, decision) and _rank(self.policy, decision) < i:
                notes.append(
                    f"witness: {render_request(witness.request)} "
                    f"is decided by {_by(self.policy, decision)} although this rule would fire"
                )
        self.warn(
            "HP401",
            f"rule never fires: the rules at line {lines} always decide first",
            rule.span,
            "remove it, or move it above the rules that shadow it",
            *notes,
        )
        return True

    def redundant(self, i: int, rule: ir.Rule) -> None:
        """Removing rule i changes no decision: where it decides, the rest decides the same."""
        rest = [r for j, r in enumerate(self.policy.rules) if j != i]
        without = self.policy.model_copy(update={"rules": rest})
        mine = response_key(rule.response)
        same_after: z3.BoolRef = z3.BoolVal(response_key(self.policy.default) == mine)
        for j in range(len(self.policy.rules) - 1, i, -1):
            later = self.policy.rules[j]
            same = z3.BoolVal(response_key(later.response) == mine)
            same_after = z3.If(self.fires[j], same, same_after)
        decides = z3.And(self.fires[i], self.none_before(i))
        answer = self.query(decides, z3.Not(same_after))
        if answer.verdict == "unknown":
            self.note_unknown(f"whether the rule at line {rule.span.line} is redundant", rule.span)
        if answer.verdict != "unsat":
            return
        witness = self.query(decides)
        notes = []
        if witness.request is not None:
            before = evaluate(self.policy, witness.request)
            after = evaluate(without, witness.request)
            if before.rule is rule and _same(before, after):
                notes.append(
                    f"witness: {render_request(witness.request)} is decided by this rule; "
                    f"without it, {_by(without, after)} decides the same"
                )
        self.warn(
            "HP403",
            "redundant rule: removing it changes no decision",
            rule.span,
            "every request it decides gets the same response from the rules after it",
            *notes,
        )

    def partly_dead(self, k: int, rule: ir.Rule) -> None:
        """Each earlier `allow` that decides some requests this deny would refuse."""
        allows = [j for j in range(k) if self.policy.rules[j].action is ir.Action.ALLOW]
        blocked: list[z3.BoolRef] = []
        for _ in allows:
            decided_by_allow = z3.Or(*[z3.And(self.fires[j], self.none_before(j)) for j in allows])
            answer = self.query(self.fires[k], decided_by_allow, *blocked)
            if answer.verdict == "unknown":
                self.note_unknown(
                    f"which `allow` rules cover the deny at line {rule.span.line}", rule.span
                )
                return
            if answer.request is None:
                return
            decision = evaluate(self.policy, answer.request)
            allow = decision.rule
            if allow is None or not decision.allowed or not self._would_fire(rule, decision):
                self.note_unknown(
                    f"a witness for the deny at line {rule.span.line} (evaluator disagrees)",
                    rule.span,
                )
                return
            j = next(n for n, r in enumerate(self.policy.rules) if r is allow)
            blocked.append(z3.Not(z3.And(self.fires[j], self.none_before(j))))
            self.warn(
                "HP404",
                f"the `allow` at line {allow.span.line} makes this deny partly dead",
                rule.span,
                "requests that match both are allowed; move the deny above the allow "
                "if they should be refused",
                f"witness: {render_request(answer.request)} is allowed by line "
                f"{allow.span.line} although this rule would deny it",
            )

    def _would_fire(self, rule: ir.Rule, decision: Decision) -> bool:
        return fires(rule, decision.values, [])


def _rank(policy: ir.Policy, decision: Decision) -> int:
    if decision.rule is None:
        return len(policy.rules)
    return next(i for i, r in enumerate(policy.rules) if r is decision.rule)


def _by(policy: ir.Policy, decision: Decision) -> str:
    if decision.rule is not None:
        return f"the rule at line {decision.rule.span.line}"
    return "the default" if decision.is_default else "no rule (allowed)"


def _same(a: Decision, b: Decision) -> bool:
    return (a.allowed, a.status, a.body, a.headers) == (b.allowed, b.status, b.body, b.headers)


def analyse(
    policy: ir.Policy, source: Source, budget_ms: int = DEFAULT_BUDGET_MS
) -> list[Diagnostic]:
    """Every analysis finding for a policy that checked without errors, as warnings."""
    return _Analysis(policy, source, budget_ms).run()
