"""Analyse: exact findings about a checked policy's rules, decided with z3.

Each finding is a warning with a stable code (HP401 to HP405).  A verdict that
"no request can …" is an unsat answer and is exact (see `smt` for the
request model); a verdict that shows a request is re-checked by running that
witness through the reference evaluator, and is reported as "unknown"
(HP405) when the evaluator disagrees.  Queries past the budget are unknown too.
"""

from __future__ import annotations

import time

import z3

from hdrpolicy import ir
from hdrpolicy.diagnostics import Diagnostic, Severity, Source, Span
from hdrpolicy.evaluate import Decision, Headers, evaluate, fires
from hdrpolicy.fmt import condition_text
from hdrpolicy.reasoner import Answer, Reasoner
from hdrpolicy.smt import render_request, response_key, simplify

DEFAULT_BUDGET_MS = 10_000


# HP404 lists at most this many denies per allow, with witnesses for the first few.
MAX_LISTED = 10
MAX_WITNESSES = 3


class _BudgetExhausted(Exception):
    """Raised when the analysis budget is spent; `run` turns it into one HP405."""


class _Analysis:
    def __init__(self, policy: ir.Policy, source: Source, budget_ms: int) -> None:
        self.policy = policy
        self.source = source
        self.deadline = time.monotonic() + budget_ms / 1000
        self.r = Reasoner([policy], self.deadline)
        # f{i}: rule i fires; nb{i}: no rule before i fires; d{i}: rule i decides.
        self.fires = [self.r.define(f"f{i}", self.r.fires(r)) for i, r in enumerate(policy.rules)]
        self.nb: list[z3.BoolRef] = [z3.BoolVal(True)]
        for i, f in enumerate(self.fires):
            self.nb.append(self.r.define(f"nb{i + 1}", z3.And(self.nb[i], z3.Not(f))))
        self.decides = [
            self.r.define(f"d{i}", z3.And(f, self.nb[i])) for i, f in enumerate(self.fires)
        ]
        self.findings: list[Diagnostic] = []

    def query(self, *formulas: z3.BoolRef, witness: bool = True) -> Answer:
        """One question to the reasoner; a sat answer carries a request only with `witness`."""
        if time.monotonic() >= self.deadline:
            raise _BudgetExhausted
        return self.r.check(*formulas, witness=witness)

    def none_before(self, i: int) -> z3.BoolRef:
        return self.nb[i]

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
        for j, rule in enumerate(self.policy.rules):
            if j not in dead and rule.action is ir.Action.ALLOW:
                self.overridden_denies(j, rule, dead)

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
        formula = self.r.condition(cond)
        for value, test in (("false", formula), ("true", z3.Not(formula))):
            if self.query(test, witness=False).verdict == "unsat":
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
        answer = self.query(fires_i, self.none_before(i), witness=False)
        if answer.verdict == "unknown":
            self.note_unknown(f"whether the rule at line {rule.span.line} can fire", rule.span)
            return False
        if answer.verdict == "sat":
            return False
        overlapping = [
            j
            for j in range(i)
            if self.query(fires_i, self.fires[j], witness=False).verdict != "unsat"
        ]
        # Name a minimal set: drop each rule the others already cover.
        cover = list(overlapping)
        for j in overlapping:
            rest = [k for k in cover if k != j]
            covered = z3.Or(*[self.fires[k] for k in rest]) if rest else z3.BoolVal(False)
            if self.query(fires_i, z3.Not(covered), witness=False).verdict == "unsat":
                cover = rest
        witness = self.query(fires_i)
        lines = ", ".join(str(self.policy.rules[j].span.line) for j in cover)
        which = "rule at line" if len(cover) == 1 else "rules at lines"
        notes = []
        if witness.request is not None:

            def shows(request: Headers) -> bool:
                decision = evaluate(self.policy, request)
                return self._would_fire(rule, decision) and _rank(self.policy, decision) < i

            if shows(witness.request):
                request = simplify(witness.request, shows)
                notes.append(
                    f"witness: {render_request(request)} is decided by "
                    f"{_by(self.policy, evaluate(self.policy, request))} "
                    "although this rule would fire"
                )
        self.warn(
            "HP401",
            f"rule never fires: the {which} {lines} always decide{'s' if len(cover) == 1 else ''} "
            "first",
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
        # The response after rule i is `mine`: built from the end, staying the
        # constant False (no query needed) until a rule or the default agrees.
        same_after: z3.BoolRef | None = (
            z3.BoolVal(True) if response_key(self.policy.default) == mine else None
        )
        for j in range(len(self.policy.rules) - 1, i, -1):
            if response_key(self.policy.rules[j].response) == mine:
                same_after = (
                    self.fires[j] if same_after is None else z3.Or(self.fires[j], same_after)
                )
            elif same_after is not None:
                same_after = z3.And(z3.Not(self.fires[j]), same_after)
        if same_after is None:
            return  # no later rule answers the same: every request it decides would change
        decides = self.decides[i]
        answer = self.query(decides, z3.Not(same_after), witness=False)
        if answer.verdict == "unknown":
            self.note_unknown(f"whether the rule at line {rule.span.line} is redundant", rule.span)
        if answer.verdict != "unsat":
            return
        witness = self.query(decides)
        notes = []
        if witness.request is not None:

            def shows(request: Headers) -> bool:
                before = evaluate(self.policy, request)
                return before.rule is rule and _same(before, evaluate(without, request))

            if shows(witness.request):
                request = simplify(witness.request, shows)
                notes.append(
                    f"witness: {render_request(request)} is decided by this rule; "
                    f"without it, {_by(without, evaluate(without, request))} decides the same"
                )
        self.warn(
            "HP403",
            "redundant rule: removing it changes no decision",
            rule.span,
            "every request it decides gets the same response from the rules after it",
            *notes,
        )

    def overridden_denies(self, j: int, allow: ir.Rule, dead: set[int]) -> None:
        """One note per `allow`: the later denies it takes requests from, with witnesses.

        An `allow` carved out ahead of denies is usually intended (a CORS
        preflight, a health check), so this is a note, not a warning; one per
        allow, listing the denies, keeps a 200-rule policy's output readable.
        """
        lines: list[int] = []
        notes: list[str] = []
        more = False
        for k in range(j + 1, len(self.policy.rules)):
            rule = self.policy.rules[k]
            if k in dead or rule.action is not ir.Action.DENY or rule.condition is None:
                continue
            if len(lines) == MAX_LISTED:
                more = self.query(self.decides[j], self.fires[k], witness=False).verdict == "sat"
                break
            answer = self.query(self.decides[j], self.fires[k])
            if answer.verdict == "unknown":
                self.note_unknown(
                    f"whether the `allow` at line {allow.span.line} overrides the deny at "
                    f"line {rule.span.line}",
                    rule.span,
                )
                continue
            if answer.request is None:
                continue

            def shows(request: Headers, deny: ir.Rule = rule) -> bool:
                decision = evaluate(self.policy, request)
                return decision.rule is allow and self._would_fire(deny, decision)

            if not shows(answer.request):
                self.note_unknown(
                    f"a witness for the deny at line {rule.span.line} (evaluator disagrees)",
                    rule.span,
                )
                continue
            lines.append(rule.span.line)
            if len(notes) < MAX_WITNESSES:
                request = simplify(answer.request, shows)
                notes.append(
                    f"witness: {render_request(request)} is allowed here although "
                    f"line {rule.span.line} would deny it"
                )
        if not lines:
            return
        listed = ", ".join(map(str, lines)) + (" and more" if more else "")
        self.findings.append(
            Diagnostic(
                "HP404",
                Severity.NOTE,
                f"this `allow` decides first, so part of the deny rules at line {listed} "
                "never applies",
                allow.span,
                "requests matching both are allowed; move a deny above this allow "
                "if they should be refused",
                tuple(notes),
            )
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
