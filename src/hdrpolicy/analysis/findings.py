"""Analyse: exact findings about a checked policy's rules, decided with z3.

Each finding is a warning with a stable code (HP401 to HP405; HP404 is a
note).  A verdict that "no request can …" is an unsat answer and is exact
(see `smt` for the request model); a verdict that shows a request is
re-checked by running that witness through the reference evaluator.

HP401 and HP402 say what no request does, so they are decided over every
reading of every request (`Reasoner.check(wide=True)`: a list value read
whole, a cookie's value without its quotes, values joined), never over
one-reading requests only; witnesses are looked for among one-reading
requests first, which a reader follows.  HP403 compares whole decisions,
which readings combine, so it claims redundancy for requests with one
reading only, and says so; it is still decided reading by reading, so a
rule that matters only to a list value is never called redundant.  HP404
shows one-reading witnesses and says so.

The work is bounded by a `Budget` of counted steps, so the findings depend on
the policy alone.  Rules are analysed in order and each rule's findings are
kept only once all of them are made: if the budget runs out, the findings
for the rules before are complete and one HP405 says where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import assert_never

import z3

from hdrpolicy import semantics
from hdrpolicy.analysis.atoms import atoms_of
from hdrpolicy.analysis.budget import (
    DEFAULT_CEILING_MS,
    DEFAULT_STEPS,
    EVALUATION,
    Budget,
    BudgetSpent,
)
from hdrpolicy.analysis.reasoner import Answer, Reasoner
from hdrpolicy.analysis.smt import render_request, response_key, simplify
from hdrpolicy.diagnostics import Code, Diagnostic, Source, Span
from hdrpolicy.evaluate import Decision, Headers, evaluate, fires
from hdrpolicy.fmt import condition_text
from hdrpolicy.frontend import ir

# HP404 lists at most this many denies per allow, with witnesses for the first few.
MAX_LISTED = 10
MAX_WITNESSES = 3

# What each kind of verdict covers (see "Repeated headers" in the README).
# A rule that never decides, or a condition that is constant, is so for every
# reading (decided over every value a reading can have), and a request's
# decision is one of its readings' decisions; so the verdict holds for repeated
# headers and list values too.  Redundancy and overriding compare whole
# decisions, which readings can combine differently.
ALL_REQUESTS = "this holds for every request, repeated headers and lists in values included"
ONE_EACH = "for requests with one reading"
# What a request with one reading is, said once per finding that is limited to it.
ONE_READING = (
    "which send each header once and no value read as a list (a `,` in a header Envoy "
    "joins or in `host`, a `;` in `header cookie`, a cookie value in double quotes)"
)
STOPPED = "analysis stopped"


@dataclass
class _RuleResult:
    """A rule's findings, kept until the rule is fully analysed."""

    findings: list[Diagnostic] = field(default_factory=list)
    dead: bool = False  # its condition is constant, or it never fires


class _Analysis:
    def __init__(self, policy: ir.Policy, source: Source, budget: Budget) -> None:
        self.policy = policy
        self.source = source
        self.budget = budget
        self.findings: list[Diagnostic] = []
        self._results: dict[int, _RuleResult] = {}

    def _setup(self) -> None:
        self.r = Reasoner([self.policy], self.budget)
        r = self.r
        # f{i}: rule i fires; nb{i}: no rule before i fires; d{i}: rule i decides.
        self.fires = [r.define(f"f{i}", r.fires(rule)) for i, rule in enumerate(self.policy.rules)]
        self.nb: list[z3.BoolRef] = [z3.BoolVal(True, r.ctx)]
        for i, f in enumerate(self.fires):
            self.nb.append(r.define(f"nb{i + 1}", z3.And(self.nb[i], z3.Not(f))))
        self.decides = [r.define(f"d{i}", z3.And(f, self.nb[i])) for i, f in enumerate(self.fires)]

    def query(
        self,
        *formulas: z3.BoolRef,
        witness: bool = True,
        about: ir.Condition | None = None,
        wide: bool = False,
    ) -> Answer:
        """One question to the reasoner; a sat answer carries a request only with `witness`.

        `about`: the formulas only speak of this condition's subjects.  `wide`:
        over every reading of every request, not only requests with one reading.
        """
        subjects = None
        if about is not None:
            subjects = {cmp.subject.key for cmp in ir.comparisons(about)}
        return self.r.check(*formulas, witness=witness, subjects=subjects, wide=wide)

    def witness(self, *formulas: z3.BoolRef) -> Answer:
        """A request making the formulas true: one with one reading if there is one,
        else one whose several readings show it."""
        answer = self.query(*formulas)
        if answer.request is None:
            answer = self.query(*formulas, wide=True)
        return answer

    def upto(self, j: int, rule: ir.Rule) -> ir.Policy:
        """Rules 0..j and then `rule`: the same first rule to fire up to j, cheaper to run.

        A witness sends each header once, so its decision is its first
        firing rule; whether that is rule j (and `rule` would fire) only
        depends on these rules.
        """
        return self.policy.model_copy(update={"rules": [*self.policy.rules[: j + 1], rule]})

    def evaluate(self, policy: ir.Policy, request: Headers) -> Decision:
        """The reference evaluator, charged to the budget (witnesses are re-run often)."""
        self.budget.charge(EVALUATION * (len(policy.rules) + 1))
        return evaluate(policy, request)

    # -- running --------------------------------------------------------------------

    def run(self) -> list[Diagnostic]:
        at = self.policy.rules[0].span if self.policy.rules else self.policy.span
        try:
            self._setup()
            self._untranslated()
            for i, rule in enumerate(self.policy.rules):
                at = rule.span
                self.findings.extend(self._rule(i, rule))
        except BudgetSpent as exc:
            self._stopped(exc, at)
        return self.findings

    def _stopped(self, exc: BudgetSpent, at: Span) -> None:
        b = self.budget
        if exc.ceiling:
            message = (
                f"{STOPPED} at this rule: it ran past its wall-clock ceiling of "
                f"{b.ceiling_ms / 1000:g} s, a safety net that only a pathological policy or "
                "an overloaded machine reaches; this rule and the ones after it were not analysed"
            )
            help = f"raise the ceiling with `--budget-ms` (now {b.ceiling_ms})"
        else:
            message = (
                f"{STOPPED} at this rule: its budget of {b.steps} steps is spent; "
                "this rule and the ones after it were not analysed"
            )
            help = (
                f"raise it with `--budget {b.steps * 4}` (steps are counted work, so the "
                "result is the same on any machine)"
            )
        self.warn(Code.HP405, message, at, help)

    def _untranslated(self) -> None:
        """One HP405 per comparison whose pattern, or whose subject, the analysis cannot model."""
        spaces = self.r.spaces
        reported: set[str] = set()
        for rule in self.policy.rules:
            if rule.condition is None:
                continue
            for cmp in ir.comparisons(rule.condition):
                key = cmp.subject.key
                space = spaces.subjects[key]
                if semantics.comparison(cmp).pattern:
                    k = spaces.index[key, atoms_of(cmp)[0]]
                    construct = space.untranslated[k]
                    if construct is not None:
                        self.warn(
                            Code.HP405,
                            f"analysis cannot translate this pattern exactly: it uses {construct}",
                            cmp.span,
                            f"the analysis does not translate {construct}, so findings that "
                            "depend on this comparison are not reported (the README lists the "
                            "untranslatable constructs)",
                        )
                if not space.complete and key not in reported:
                    reported.add(key)
                    self.warn(
                        Code.HP405,
                        f"analysis could not list every combination of the tests on "
                        f"`{cmp.subject.label}`",
                        cmp.span,
                        f"findings that depend on `{cmp.subject.label}` may be missing",
                    )

    def _rule(self, i: int, rule: ir.Rule) -> list[Diagnostic]:
        result = self._dead(i)
        found = list(result.findings)
        if not result.dead:
            found.extend(self.redundant(i, rule))
            if rule.action is ir.Action.ALLOW:
                found.extend(self.overridden_denies(i, rule))
        return found

    def _dead(self, i: int) -> _RuleResult:
        """HP402 and HP401 for rule i (memoised: an `allow` asks about later rules)."""
        found = self._results.get(i)
        if found is None:
            rule = self.policy.rules[i]
            found = _RuleResult()
            if rule.condition is not None:
                found.dead = self.constant_conditions(rule, found.findings)
            if not found.dead:
                found.dead = self.shadowed(i, rule, found.findings)
            self._results[i] = found
        return found

    def warn(self, code: Code, message: str, span: Span, help: str | None, *notes: str) -> None:
        self.findings.append(Diagnostic(code, code.severity, message, span, help, notes))

    # -- findings ------------------------------------------------------------------

    def constant_conditions(self, rule: ir.Rule, out: list[Diagnostic]) -> bool:
        """Report the outermost sub-conditions that are always true or always false.

        Returns True when the whole condition is constant (the rule then never
        or always fires, and the other findings would only repeat this one).
        """
        assert rule.condition is not None
        whole = self._constant(rule.condition, out)
        if whole is None:
            self._constant_parts(rule.condition, out)
        return whole is not None

    def _constant(self, cond: ir.Condition, out: list[Diagnostic]) -> str | None:
        formula = self.r.condition(cond)
        known = self.r.compare_values(cond) if isinstance(cond, ir.Compare) else None
        for value, test in (("false", formula), ("true", z3.Not(formula))):
            if known is not None:
                if (value == "false") in known:  # it can take the other value
                    continue
            elif self.query(test, witness=False, about=cond, wide=True).verdict != "unsat":
                continue
            out.append(
                Diagnostic(
                    Code.HP402,
                    Code.HP402.severity,
                    f"condition is always {value}: `{condition_text(cond)}`",
                    cond.span,
                    "no request can make it " + ("true" if value == "false" else "false"),
                    (f"decided exactly over every value of each subject; {ALL_REQUESTS}",),
                )
            )
            return value
        return None

    def _constant_parts(self, cond: ir.Condition, out: list[Diagnostic]) -> None:
        match cond:
            case ir.Compare():
                return
            case ir.Not():
                children = [cond.operand]
            case ir.And() | ir.Or():
                children = cond.operands
            case _:
                assert_never(cond)
        for child in children:
            if isinstance(child, ir.Not) or self._constant(child, out) is None:
                self._constant_parts(child, out)

    def shadowed(self, i: int, rule: ir.Rule, out: list[Diagnostic]) -> bool:
        """HP401: rule i never decides; name every earlier rule that decides in its place."""
        fires_i = self.fires[i]
        if self.query(fires_i, self.nb[i], witness=False, wide=True).verdict != "unsat":
            return False
        # Every reading it fires on is decided by an earlier rule: those are the
        # ones to name (each decides some such reading, so none is superfluous).
        deciders = [
            j
            for j in range(i)
            if self.query(self.decides[j], fires_i, witness=False, wide=True).verdict == "sat"
        ]
        if not deciders:  # it never fires: HP402 said so, unless a query was unsettled
            return False
        # The fewest of them that fire on every request it fires on: often one
        # rule covers it though others before may decide some of those requests.
        cover = list(deciders)
        for j in deciders:
            rest = [k for k in cover if k != j]
            if (
                rest
                and self.query(
                    fires_i, z3.Not(z3.Or(*[self.fires[k] for k in rest])), witness=False, wide=True
                ).verdict
                == "unsat"
            ):
                cover = rest
        notes = []
        # The witness is decided by the nearest of the covering rules.
        for j in cover[-1:]:
            answer = self.witness(self.decides[j], fires_i)
            if answer.request is None:
                break
            decider = self.policy.rules[j]
            prefix = self.upto(j, rule)

            def shows(
                request: Headers, decider: ir.Rule = decider, prefix: ir.Policy = prefix
            ) -> bool:
                decision = self.evaluate(prefix, request)
                return decision.rule is decider and self._would_fire(rule, decision)

            if shows(answer.request):
                request = simplify(answer.request, shows)
                notes.append(
                    f"witness: {render_request(request)} is decided by the rule at line "
                    f"{decider.span.line}, although this rule would fire"
                )
        if cover != deciders:
            covering = [self.policy.rules[k].span.line for k in cover]
            notes.append(
                f"every request it fires on makes the {_rules(covering)} fire; "
                "the others decide first for some of them"
            )
        notes.append(ALL_REQUESTS)
        lines = [self.policy.rules[j].span.line for j in deciders]
        if len(lines) == 1:
            who = f"the rule at line {lines[0]} always decides first"
        else:
            who = f"the rules at lines {_listed(lines)} decide first (one or another)"
        out.append(
            Diagnostic(
                Code.HP401,
                Code.HP401.severity,
                f"rule never fires: {who}",
                rule.span,
                "remove it, or move it above the rules that decide first",
                tuple(notes),
            )
        )
        return True

    def redundant(self, i: int, rule: ir.Rule) -> list[Diagnostic]:
        """Removing rule i changes no decision: where it decides, the rest decides the same."""
        rest = [r for j, r in enumerate(self.policy.rules) if j != i]
        without = self.policy.model_copy(update={"rules": rest})
        mine = response_key(rule.response)
        # The response after rule i is `mine`: built from the end, staying the
        # constant False (no query needed) until a rule or the default agrees.
        same_after: z3.BoolRef | None = (
            z3.BoolVal(True, self.r.ctx) if response_key(self.policy.default) == mine else None
        )
        for j in range(len(self.policy.rules) - 1, i, -1):
            if response_key(self.policy.rules[j].response) == mine:
                same_after = (
                    self.fires[j] if same_after is None else z3.Or(self.fires[j], same_after)
                )
            elif same_after is not None:
                same_after = z3.And(z3.Not(self.fires[j]), same_after)
        if same_after is None:
            return []  # no later rule answers the same: every request it decides would change
        decides = self.decides[i]
        # Over every reading: a rule that decides only readings a one-reading request
        # cannot have (`header x == "a, b"`) is not called redundant for lacking those.
        if self.query(decides, z3.Not(same_after), witness=False, wide=True).verdict != "unsat":
            return []
        witness = self.witness(decides)
        notes = []
        if witness.request is not None:

            def shows(request: Headers) -> bool:
                before = self.evaluate(self.policy, request)
                return before.rule is rule and _same(before, self.evaluate(without, request))

            if shows(witness.request):
                request = simplify(witness.request, shows)
                notes.append(
                    f"witness: {render_request(request)} is decided by this rule; "
                    f"without it, {_by(without, self.evaluate(without, request))} decides the same"
                )
        notes.append(
            f"decided {ONE_EACH}, {ONE_READING}; with several readings, the earliest rule "
            "that denies any reading decides, so removing this rule can change which rule "
            "that is"
        )
        return [
            Diagnostic(
                Code.HP403,
                Code.HP403.severity,
                f"redundant rule: removing it changes no decision {ONE_EACH}",
                rule.span,
                "every request it decides gets the same response from the rules after it",
                tuple(notes),
            )
        ]

    def overridden_denies(self, j: int, allow: ir.Rule) -> list[Diagnostic]:
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
            if rule.action is not ir.Action.DENY or rule.condition is None or self._dead(k).dead:
                continue
            if len(lines) == MAX_LISTED:
                more = self.query(self.decides[j], self.fires[k], witness=False).verdict == "sat"
                break
            answer = self.query(self.decides[j], self.fires[k])
            if answer.request is None:
                continue

            prefix = self.upto(j, rule)

            def shows(request: Headers, deny: ir.Rule = rule, prefix: ir.Policy = prefix) -> bool:
                decision = self.evaluate(prefix, request)
                return decision.rule is allow and self._would_fire(deny, decision)

            if not shows(answer.request):
                continue  # an opaque pattern the solver over-approximated: not shown
            lines.append(rule.span.line)
            if len(notes) < MAX_WITNESSES:
                request = simplify(answer.request, shows)
                notes.append(
                    f"witness: {render_request(request)} is allowed here although "
                    f"line {rule.span.line} would deny it"
                )
        if not lines:
            return []
        listed = _listed(lines) + (" and more" if more else "")
        which = "rule at line" if len(lines) == 1 and not more else "rules at lines"
        notes.append(
            f"decided {ONE_EACH}, {ONE_READING}; with several readings, a reading this "
            "`allow` does not take can still be denied"
        )
        return [
            Diagnostic(
                Code.HP404,
                Code.HP404.severity,
                f"this `allow` decides first, so part of the deny {which} {listed} never applies",
                allow.span,
                "requests matching both are allowed; move a deny above this allow "
                "if they should be refused",
                tuple(notes),
            )
        ]

    def _would_fire(self, rule: ir.Rule, decision: Decision) -> bool:
        return fires(rule, decision.values, [])


def _rules(lines: list[int]) -> str:
    """`rule at line 4`, `rules at lines 4 and 6`."""
    return f"rule at line {lines[0]}" if len(lines) == 1 else f"rules at lines {_listed(lines)}"


def _listed(lines: list[int]) -> str:
    """`4`, `4 and 6`, `4, 6 and 9`; past ten, the first ten and how many more."""
    shown = [str(n) for n in lines[:MAX_LISTED]]
    if len(lines) > MAX_LISTED:
        return ", ".join(shown) + f" and {len(lines) - MAX_LISTED} more"
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]


def _by(policy: ir.Policy, decision: Decision) -> str:
    if decision.rule is not None:
        return f"the rule at line {decision.rule.span.line}"
    return "the default" if decision.is_default else "no rule (allowed)"


def _same(a: Decision, b: Decision) -> bool:
    return (a.allowed, a.status, a.body, a.headers) == (b.allowed, b.status, b.body, b.headers)


def is_stop(d: Diagnostic) -> bool:
    """The HP405 that says the analysis stopped before the end (budget or ceiling)."""
    return d.code is Code.HP405 and d.message.startswith(STOPPED)


def analyse(
    policy: ir.Policy,
    source: Source,
    steps: int = DEFAULT_STEPS,
    ceiling_ms: int = DEFAULT_CEILING_MS,
    *,
    budget: Budget | None = None,
) -> list[Diagnostic]:
    """Every analysis finding for a policy that checked without errors.

    `steps` is the deterministic work budget; `ceiling_ms` the wall-clock
    safety net (see `budget`); or pass a `Budget` to read what was spent.
    """
    return _Analysis(policy, source, budget or Budget(steps, ceiling_ms)).run()
