"""Diff: what a change to a policy changes in behaviour, as classes of requests.

Both policies' decisions are encoded over one request (`reasoner`); z3 then lists
every distinct pair (rule that decided before, rule that decides now) whose
responses differ, one witness request each, blocking each pair once found.
"No pair" is exact: the policies are equivalent for requests that send each
header once (with a header repeated, the earliest rule that denies any reading
decides, so reordering rules can matter there).  Every witness is re-run
through `evaluate` on both policies; one the evaluator does not confirm is
kept as unconfirmed, never as a change.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import z3

from hdrpolicy.analysis.budget import (
    DEFAULT_CEILING_MS,
    DEFAULT_STEPS,
    EVALUATION,
    Budget,
    BudgetSpent,
)
from hdrpolicy.analysis.reasoner import Reasoner
from hdrpolicy.analysis.smt import render_request, response_key, simplify
from hdrpolicy.diagnostics import Source
from hdrpolicy.evaluate import Decision, Headers, evaluate
from hdrpolicy.frontend import ir
from hdrpolicy.frontend.pipeline import Checked, check_file, check_source
from hdrpolicy.printer import policy_string

MAX_CHANGES = 50
# The order changes are listed in: what a security reviewer looks for first.
KINDS = ("now allowed", "now denied", "response changed")
ONE_EACH = "for requests that send each header once"


@dataclass(frozen=True)
class Outcome:
    """How one policy decided the witness: allow, or deny with a response, by which line."""

    allowed: bool
    status: int | None
    body: str
    line: int | None
    is_default: bool
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, d: Decision) -> Outcome:
        line = d.rule.span.line if d.rule is not None else None
        headers = tuple((k.decode(), v.decode("utf-8", "replace")) for k, v in d.headers)
        return cls(
            d.allowed, d.status, d.body.decode("utf-8", "replace"), line, d.is_default, headers
        )

    def response(self, headers: tuple[tuple[str, str], ...] = ()) -> str:
        """`allowed`, or `denied 403 "body"` (with `headers`: the ones that changed)."""
        if self.allowed:
            return "allowed"
        out = f"denied {self.status}" + (f" {policy_string(self.body)}" if self.body else "")
        if headers:
            out += " with " + ", ".join(f"{k}: {policy_string(v)}" for k, v in headers)
        return out

    def by(self) -> str:
        if self.line is not None:
            return f"by the rule at line {self.line}"
        return "by the default" if self.is_default else "(no rule fired)"

    def describe(self, headers: tuple[tuple[str, str], ...] = ()) -> str:
        return f"{self.response(headers)} {self.by()}"


@dataclass(frozen=True)
class Change:
    """A class of requests whose decision changed, with one request of it."""

    kind: str  # one of KINDS
    old: Outcome
    new: Outcome
    witness: Headers
    confirmed: bool

    def sides(self) -> tuple[str, str]:
        """Before and after; two denies alike but for headers name the headers that differ."""
        alike = (
            not self.old.allowed
            and not self.new.allowed
            and (self.old.status, self.old.body) == (self.new.status, self.new.body)
        )
        if not alike:
            return self.old.describe(), self.new.describe()
        old = tuple(h for h in self.old.headers if h not in self.new.headers)
        new = tuple(h for h in self.new.headers if h not in self.old.headers)
        return self.old.describe(old), self.new.describe(new)

    def describe(self) -> str:
        """`denied 403 "a" by the rule at line 2 → denied 403 "b" by the rule at line 3`."""
        before, after = self.sides()
        return f"{before} → {after}"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "old": {**self.old.__dict__, "headers": [list(h) for h in self.old.headers]},
            "new": {**self.new.__dict__, "headers": [list(h) for h in self.new.headers]},
            "witness": [[k.decode(), v.decode()] for k, v in self.witness],
            "confirmed": self.confirmed,
        }


@dataclass
class DiffResult:
    """`equivalent`, or the changes; `incomplete` says why the list may not be whole."""

    changes: list[Change] = field(default_factory=list)
    incomplete: str | None = None

    @property
    def complete(self) -> bool:
        return self.incomplete is None

    @property
    def equivalent(self) -> bool:
        return self.complete and not self.changes


def diff_policies(
    old: ir.Policy,
    new: ir.Policy,
    *,
    steps: int = DEFAULT_STEPS,
    ceiling_ms: int = DEFAULT_CEILING_MS,
) -> DiffResult:
    """Every behaviour change from `old` to `new`, one witness request per change class.

    The work is bounded like the analysis's (`budget`): the same two
    policies give the same answer on any machine.
    """
    budget = Budget(steps, ceiling_ms)
    result = DiffResult()
    try:
        _find_changes(old, new, Reasoner([old, new], budget), result)
    except BudgetSpent as exc:
        result.incomplete = (
            f"the wall-clock ceiling of {ceiling_ms / 1000:g} s was reached "
            "(raise it with `--budget-ms`)"
            if exc.ceiling
            else f"its budget of {steps} steps is spent (raise it with `--budget {steps * 4}`)"
        )
    result.changes.sort(key=lambda c: (KINDS.index(c.kind), c.old.line or 0, c.new.line or 0))
    return result


def _find_changes(old: ir.Policy, new: ir.Policy, r: Reasoner, result: DiffResult) -> None:
    old_fires = [r.define(f"old{i}", r.fires(rule)) for i, rule in enumerate(old.rules)]
    new_fires = [r.define(f"new{i}", r.fires(rule)) for i, rule in enumerate(new.rules)]
    old_idx, old_key = _decision(old, old_fires, r.ctx)
    new_idx, new_key = _decision(new, new_fires, r.ctx)
    keys = {k: n for n, k in enumerate(sorted({*old_key.keys(), *new_key.keys()}, key=repr))}
    o_resp = _chain(
        old_fires,
        [keys[response_key(rule.response)] for rule in old.rules],
        keys[response_key(old.default)],
        r.ctx,
    )
    n_resp = _chain(
        new_fires,
        [keys[response_key(rule.response)] for rule in new.rules],
        keys[response_key(new.default)],
        r.ctx,
    )
    r.add(o_resp != n_resp)
    for _ in range(MAX_CHANGES):
        answer = r.solve()
        if answer.verdict == "unsat":
            return
        if answer.verdict != "sat":
            result.incomplete = "the solver could not settle a pattern it cannot translate exactly"
            return
        assert answer.model is not None and answer.request is not None
        oi = answer.model.eval(old_idx, model_completion=True).as_long()
        ni = answer.model.eval(new_idx, model_completion=True).as_long()
        result.changes.append(_change(old, new, answer.request, oi, ni, r.budget))
        r.add(z3.Not(z3.And(old_idx == oi, new_idx == ni)))
    result.incomplete = f"the list stops at {MAX_CHANGES} changes"


def _decision(
    policy: ir.Policy, fires: list[z3.BoolRef], ctx: z3.Context
) -> tuple[z3.ArithRef, dict[tuple[object, ...], None]]:
    """The index of the deciding rule (len(rules): none) and the responses in play."""
    idx = _chain(fires, list(range(len(fires))), len(fires), ctx)
    responses = {response_key(r.response): None for r in policy.rules}
    responses[response_key(policy.default)] = None
    return idx, responses


def _chain(fires: list[z3.BoolRef], ids: list[int], last: int, ctx: z3.Context) -> z3.ArithRef:
    out: z3.ArithRef = z3.IntVal(last, ctx)
    for f, n in zip(reversed(fires), reversed(ids), strict=True):
        out = z3.If(f, z3.IntVal(n, ctx), out)
    return out


def _change(
    old: ir.Policy, new: ir.Policy, request: Headers, oi: int, ni: int, budget: Budget
) -> Change:
    def shows(candidate: Headers) -> bool:
        budget.charge(EVALUATION * (len(old.rules) + len(new.rules) + 2))
        before, after = evaluate(old, candidate), evaluate(new, candidate)
        return (
            _index(old, before) == oi
            and _index(new, after) == ni
            and (before.allowed, before.status, before.body, before.headers)
            != (after.allowed, after.status, after.body, after.headers)
        )

    confirmed = shows(request)
    if confirmed:
        request = simplify(request, shows)
    before, after = evaluate(old, request), evaluate(new, request)
    o, n = Outcome.of(before), Outcome.of(after)
    if before.allowed and not after.allowed:
        kind = "now denied"
    elif after.allowed and not before.allowed:
        kind = "now allowed"
    else:
        kind = "response changed"
    return Change(kind, o, n, request, confirmed)


def _index(policy: ir.Policy, d: Decision) -> int:
    if d.rule is None:
        return len(policy.rules)
    return next(i for i, r in enumerate(policy.rules) if r is d.rule)


# -- loading -----------------------------------------------------------------------


def load_policy(spec: str, cwd: Path | None = None) -> Checked:
    """A policy from a file, or from git as `REV:PATH` (e.g. `main:policies/edge.hp`).

    A path that exists wins over a revision spelling.  Git's errors become an
    OSError for the caller (the CLI's one error renderer), as a missing file does.
    """
    path = Path(spec)
    if path.exists() or ":" not in spec:
        return check_file(path)
    rev, _, rel = spec.partition(":")
    if rev.startswith("-"):
        raise OSError(f"`{spec}` is not a revision")  # never let it reach git as an option
    proc = subprocess.run(
        ["git", "show", "--end-of-options", f"{rev}:{rel}"],
        cwd=cwd,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise OSError(proc.stderr.decode("utf-8", "replace").strip() or f"git show {spec} failed")
    try:
        text = proc.stdout.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise OSError(f"{spec} is not UTF-8") from exc
    return check_source(Source(spec, text), Path(rel).stem)


# -- rendering ---------------------------------------------------------------------


def render_text(result: DiffResult, old_name: str, new_name: str) -> str:
    if result.equivalent:
        return f"{old_name} and {new_name} are equivalent {ONE_EACH}\n"
    out = []
    if result.changes:
        out.append(
            f"{len(result.changes)} change(s) in behaviour from {old_name} to {new_name} "
            f"({ONE_EACH}):"
        )
    for c in result.changes:
        mark = "" if c.confirmed else " (unconfirmed by the evaluator)"
        out.append(f"- {c.kind}: {c.describe()}{mark}")
        out.append(f"  witness: {render_request(c.witness)}")
    if result.incomplete is not None:
        found = "there may be more" if result.changes else "none was found before it stopped"
        out.append(f"diff incomplete: {result.incomplete}; {found}")
    return "\n".join(out) + "\n"


def render_json(result: DiffResult, old_name: str, new_name: str) -> str:
    return json.dumps(
        {
            "old": old_name,
            "new": new_name,
            "equivalent": result.equivalent,
            "complete": result.complete,
            "incomplete": result.incomplete,
            "scope": ONE_EACH,
            "changes": [c.to_json() for c in result.changes],
        },
        indent=2,
    )


def render_markdown(result: DiffResult, old_name: str, new_name: str) -> str:
    if result.equivalent:
        return (
            f"**`{old_name}` → `{new_name}`: equivalent**, no request that sends each header "
            "once is decided differently.\n"
        )
    out = [f"### `{old_name}` → `{new_name}`: {len(result.changes)} change(s) in behaviour", ""]
    if result.changes:
        out += [
            "| change | before | after | witness request |",
            "| --- | --- | --- | --- |",
        ]
    for c in result.changes:
        witness = render_request(c.witness).replace("|", "\\|")
        mark = "" if c.confirmed else " ⚠ unconfirmed"
        before, after = (side.replace("|", "\\|") for side in c.sides())
        out.append(f"| {c.kind}{mark} | {before} | {after} | `{witness}` |")
    if result.incomplete is not None:
        out += ["", f"**Incomplete:** {result.incomplete}; there may be more changes."]
    else:
        out += ["", f"_Decided {ONE_EACH}._"]
    return "\n".join(out) + "\n"
