"""`hdrpolicy test --coverage`: what a policy's test cases leave unexercised.

Computed from the reference evaluator's traces, like `opa test --coverage`
from OPA's: each case's request is evaluated reading by reading (a repeated
header gives several readings, each evaluated to the first rule that fires),
and the report says

* which rules decide no case (and whether the default, or the fall-through
  "no rule fired, allowed", is ever reached);
* which side of each rule's condition is never taken (the condition never
  true: the rule never fires; never false: no case gets past it);
* which side of each comparison is never seen, among the rules reached.

The compiled plug-in runs the same cases (`runner`); coverage does not
depend on it, since the two must agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hdrpolicy import semantics
from hdrpolicy.codec import Protocol, deliver, rejected
from hdrpolicy.evaluate import CompareTrace, evaluate, fires, readings
from hdrpolicy.fmt import condition_text
from hdrpolicy.frontend import ir
from hdrpolicy.policytests import Case
from hdrpolicy.runner import PolicyReport


@dataclass
class Sides:
    """How often something was seen true and false (in readings that reached it)."""

    true: int = 0
    false: int = 0

    def see(self, value: bool) -> None:
        if value:
            self.true += 1
        else:
            self.false += 1

    @property
    def missing(self) -> list[str]:
        return [name for name, n in (("true", self.true), ("false", self.false)) if n == 0]


@dataclass
class ComparisonCoverage:
    compare: ir.Compare
    sides: Sides = field(default_factory=Sides)


@dataclass
class RuleCoverage:
    rule: ir.Rule
    decided: int = 0  # cases this rule decided
    condition: Sides = field(default_factory=Sides)  # when reached: fired or passed over
    comparisons: list[ComparisonCoverage] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"line {self.rule.span.line}"


@dataclass
class PolicyCoverage:
    """One policy's coverage by one test file (shown under their paths)."""

    path: str
    tests: str
    policy: ir.Policy
    rules: list[RuleCoverage]
    # Cases decided by the default (or, without one, by no rule: allowed).
    fallthrough: int = 0

    @property
    def rules_covered(self) -> int:
        return sum(r.decided > 0 for r in self.rules)

    def sides(self) -> tuple[int, int]:
        """Sides seen and sides in all: each condition's two and each comparison's two."""
        seen = total = 0
        for r in self.rules:
            parts = ([r.condition] if r.rule.condition is not None else []) + [
                c.sides for c in r.comparisons
            ]
            for s in parts:
                total += 2
                seen += 2 - len(s.missing)
        return seen, total

    def gaps(self) -> list[dict[str, Any]]:
        """What no case exercises, in source order, as data (the text is built from it)."""
        out: list[dict[str, Any]] = []
        for r in self.rules:
            line = r.rule.span.line
            if r.decided == 0:
                out.append({"line": line, "kind": "rule", "what": "decides no case"})
            if r.rule.condition is not None and r.condition.true + r.condition.false == 0:
                # Earlier rules decide every case: its sides say nothing more.
                out.append({"line": line, "kind": "condition", "what": "is reached by no case"})
                continue
            if r.rule.guard is not None:
                # The side of the condition that makes the rule fire.
                firing = "false" if semantics.negates(r.rule.guard) else "true"
                for side in r.condition.missing:
                    what = (
                        f"never fires (its condition is never {firing})"
                        if side == firing
                        else "is never passed over (every case that reaches it is decided by it)"
                    )
                    out.append({"line": line, "kind": "condition", "what": what})
            for c in r.comparisons:
                for side in c.sides.missing:
                    out.append(
                        {
                            "line": c.compare.span.line,
                            "column": c.compare.span.column,
                            "kind": "comparison",
                            "comparison": condition_text(c.compare),
                            "what": f"is never {side}",
                        }
                    )
        if self.fallthrough == 0:
            default = self.policy.default
            end = "the default" if default is not None else "no rule fired (allowed)"
            at = default.span.line if default is not None else None
            out.append({"line": at, "kind": "default", "what": f"{end} decides no case"})
        return out

    def complete_rules(self) -> bool:
        return self.rules_covered == len(self.rules) and self.fallthrough > 0


def of_reports(reports: list[PolicyReport]) -> list[PolicyCoverage]:
    """Coverage for every report whose policy and tests ran (a broken run has none)."""
    return [
        measure(r.checked.source.path, r.tests.source.path, r.checked.policy, r.tests.cases)
        for r in reports
        if r.checked.policy is not None
        and r.tests is not None
        and r.error is None
        and not r.diagnostics
    ]


def measure(path: str, tests: str, policy: ir.Policy, cases: list[Case]) -> PolicyCoverage:
    """Run every case through the evaluator and count what each reading exercised."""
    rules = [RuleCoverage(rule) for rule in policy.rules]
    by_compare: dict[int, ComparisonCoverage] = {}
    for r in rules:
        if r.rule.condition is not None:
            for cmp in ir.comparisons(r.rule.condition):
                r.comparisons.append(by_compare.setdefault(id(cmp), ComparisonCoverage(cmp)))
    coverage = PolicyCoverage(path, tests, policy, rules)
    for case in cases:
        # What the plug-in sees differs per protocol (codec.deliver): a case covers
        # what the readings of either protocol exercise, each distinct reading once;
        # its decision is counted once, over the first protocol that judges it
        # (Envoy's codecs and the refusals may stop it before any rule on one).
        seen_readings: dict[tuple[tuple[str, bytes | None], ...], dict[str, bytes | None]] = {}
        counted = False
        for protocol in Protocol:
            if rejected(protocol, case.request()):
                continue  # Envoy refuses it before the plug-in runs
            request = deliver(protocol, case.request())
            decision = evaluate(policy, request)
            if decision.refusal is not None:
                continue  # refused before any rule ran
            if not counted and decision.rule is not None:
                decided = next(i for i, r in enumerate(policy.rules) if r is decision.rule)
                rules[decided].decided += 1
            elif not counted:
                coverage.fallthrough += 1
            counted = True
            for values in readings(policy, request):
                seen_readings.setdefault(tuple(sorted(values.items())), values)
        for values in seen_readings.values():
            for r in rules:
                seen: list[CompareTrace] = []
                fired = fires(r.rule, values, seen)
                for trace in seen:
                    by_compare[id(trace.compare)].sides.see(trace.result)
                if r.rule.guard is not None:
                    # The condition's value: `fires` is its own inverse.
                    r.condition.see(semantics.fires(r.rule.guard, fired))
                if fired:
                    break
    return coverage


# -- rendering ----------------------------------------------------------------


def render_text(c: PolicyCoverage) -> str:
    path = c.path
    seen, total = c.sides()
    end = "default" if c.policy.default is not None else "fall-through"
    lines = [
        f"coverage of {path} by {c.tests}: {c.rules_covered}/{len(c.rules)} rules decide a case, "
        f"{end} {'reached' if c.fallthrough else 'never reached'}, "
        f"{seen}/{total} sides of conditions and comparisons seen"
    ]
    for gap in c.gaps():
        where = f"{path}:{gap['line']}" if gap["line"] is not None else path
        if gap["kind"] == "comparison":
            lines.append(f"  {where}:{gap['column']}: `{gap['comparison']}` {gap['what']}")
        elif gap["kind"] == "default":
            lines.append(f"  {where}: {gap['what']}")
        else:
            lines.append(f"  {where}: the rule {gap['what']}")
    return "\n".join(lines)


def to_json(c: PolicyCoverage) -> dict[str, Any]:
    seen, total = c.sides()
    return {
        "policy": c.path,
        "tests": c.tests,
        "rules": {"covered": c.rules_covered, "total": len(c.rules)},
        "fallthrough": {
            "kind": "default" if c.policy.default is not None else "allow",
            "cases": c.fallthrough,
        },
        "sides": {"covered": seen, "total": total},
        "per_rule": [
            {
                "line": r.rule.span.line,
                "decided": r.decided,
                "condition": None
                if r.rule.condition is None
                else {"true": r.condition.true, "false": r.condition.false},
                "comparisons": [
                    {
                        "line": x.compare.span.line,
                        "column": x.compare.span.column,
                        "comparison": condition_text(x.compare),
                        "true": x.sides.true,
                        "false": x.sides.false,
                    }
                    for x in r.comparisons
                ],
            }
            for r in c.rules
        ],
        "uncovered": c.gaps(),
    }
