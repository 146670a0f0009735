"""Diff: what a change to a policy changes in behaviour, as classes of requests.

Both policies' decisions are encoded over one request (`reasoner`); z3 then lists
every distinct pair (rule that decided before, rule that decides now) whose
responses differ, one witness request each, blocking each pair once found.
"No pair" is exact: the policies are equivalent (for requests with at most one
of each header).  Every witness is re-run through `evaluate` on both policies;
one the evaluator does not confirm is kept as unconfirmed, never as a change.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import z3

from hdrpolicy import ir
from hdrpolicy.diagnostics import Source
from hdrpolicy.evaluate import Decision, Headers, evaluate
from hdrpolicy.pipeline import Checked, check_file, check_source
from hdrpolicy.reasoner import Reasoner
from hdrpolicy.smt import render_request, response_key, simplify

MAX_CHANGES = 50
DEFAULT_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class Outcome:
    """How one policy decided the witness: `allow` or `deny STATUS`, by which line."""

    allowed: bool
    status: int | None
    body: str
    line: int | None
    is_default: bool

    @classmethod
    def of(cls, d: Decision) -> Outcome:
        line = d.rule.span.line if d.rule is not None else None
        return cls(d.allowed, d.status, d.body.decode("utf-8", "replace"), line, d.is_default)

    def describe(self) -> str:
        what = "allowed" if self.allowed else f"denied {self.status}"
        if self.line is not None:
            return f"{what} by the rule at line {self.line}"
        return f"{what} by the default" if self.is_default else f"{what} (no rule fired)"


@dataclass(frozen=True)
class Change:
    """A class of requests whose decision changed, with one request of it."""

    kind: str  # "now denied", "now allowed", "response changed"
    old: Outcome
    new: Outcome
    witness: Headers
    confirmed: bool

    def describe(self) -> str:
        return f"was {self.old.describe()}, now {self.new.describe()}"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "old": self.old.__dict__,
            "new": self.new.__dict__,
            "witness": [[k.decode(), v.decode()] for k, v in self.witness],
            "confirmed": self.confirmed,
        }


@dataclass
class DiffResult:
    """`equivalent`, or the changes; `complete` is False when z3 gave up or the list was cut."""

    changes: list[Change] = field(default_factory=list)
    complete: bool = True

    @property
    def equivalent(self) -> bool:
        return self.complete and not self.changes


def diff_policies(
    old: ir.Policy, new: ir.Policy, *, timeout_ms: int = DEFAULT_TIMEOUT_MS
) -> DiffResult:
    """Every behaviour change from `old` to `new`, one witness request per change class."""
    r = Reasoner([old, new], time.monotonic() + timeout_ms / 1000)
    old_fires = [r.define(f"old{i}", r.fires(rule)) for i, rule in enumerate(old.rules)]
    new_fires = [r.define(f"new{i}", r.fires(rule)) for i, rule in enumerate(new.rules)]
    old_idx, old_key = _decision(old, old_fires)
    new_idx, new_key = _decision(new, new_fires)
    keys = {k: n for n, k in enumerate(sorted({*old_key.keys(), *new_key.keys()}, key=repr))}
    o_resp = _chain(
        old_fires,
        [keys[response_key(r.response)] for r in old.rules],
        keys[response_key(old.default)],
    )
    n_resp = _chain(
        new_fires,
        [keys[response_key(r.response)] for r in new.rules],
        keys[response_key(new.default)],
    )
    r.add(o_resp != n_resp)
    result = DiffResult()
    for _ in range(MAX_CHANGES):
        answer = r.solve()
        if answer.verdict == "unsat":
            return result
        if answer.verdict != "sat":
            result.complete = False
            return result
        assert answer.model is not None and answer.request is not None
        oi = answer.model.eval(old_idx, model_completion=True).as_long()
        ni = answer.model.eval(new_idx, model_completion=True).as_long()
        result.changes.append(_change(old, new, answer.request, oi, ni))
        r.add(z3.Not(z3.And(old_idx == oi, new_idx == ni)))
    result.complete = False
    return result


def _decision(
    policy: ir.Policy, fires: list[z3.BoolRef]
) -> tuple[z3.ArithRef, dict[tuple[object, ...], None]]:
    """The index of the deciding rule (len(rules): none) and the responses in play."""
    idx = _chain(fires, list(range(len(fires))), len(fires))
    responses = {response_key(r.response): None for r in policy.rules}
    responses[response_key(policy.default)] = None
    return idx, responses


def _chain(fires: list[z3.BoolRef], ids: list[int], last: int) -> z3.ArithRef:
    out: z3.ArithRef = z3.IntVal(last)
    for f, n in zip(reversed(fires), reversed(ids), strict=True):
        out = z3.If(f, z3.IntVal(n), out)
    return out


def _change(old: ir.Policy, new: ir.Policy, request: Headers, oi: int, ni: int) -> Change:
    def shows(candidate: Headers) -> bool:
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
        return f"{old_name} and {new_name} are equivalent\n"
    out = [f"{len(result.changes)} change(s) in behaviour from {old_name} to {new_name}:"]
    for c in result.changes:
        mark = "" if c.confirmed else " (unconfirmed by the evaluator)"
        out.append(f"- {c.kind}: {c.describe()}{mark}")
        out.append(f"  witness: {render_request(c.witness)}")
    if not result.complete:
        out.append("(incomplete: the solver gave up or the list was cut; there may be more)")
    return "\n".join(out) + "\n"


def render_json(result: DiffResult, old_name: str, new_name: str) -> str:
    return json.dumps(
        {
            "old": old_name,
            "new": new_name,
            "equivalent": result.equivalent,
            "complete": result.complete,
            "changes": [c.to_json() for c in result.changes],
        },
        indent=2,
    )


def render_markdown(result: DiffResult, old_name: str, new_name: str) -> str:
    if result.equivalent:
        return f"**`{old_name}` → `{new_name}`: equivalent**, no request is decided differently.\n"
    out = [
        f"### `{old_name}` → `{new_name}`: {len(result.changes)} change(s) in behaviour",
        "",
        "| change | before | after | witness request |",
        "| --- | --- | --- | --- |",
    ]
    for c in result.changes:
        witness = render_request(c.witness).replace("|", "\\|")
        mark = "" if c.confirmed else " ⚠ unconfirmed"
        out.append(f"| {c.kind}{mark} | {c.old.describe()} | {c.new.describe()} | `{witness}` |")
    if not result.complete:
        out += ["", "_Incomplete: the solver gave up or the list was cut._"]
    return "\n".join(out) + "\n"
