"""Diff: what a change to a policy changes in behaviour, as classes of requests.

Both policies' decisions are encoded over one request (`reasoner`); z3 then lists
every distinct pair (rule that decided before, rule that decides now) whose
responses differ, one witness request each, blocking each pair once found.
"No pair" is exact: the policies are equivalent for requests with one reading
(each header sent once, no value read as a list; with several readings, the
earliest rule that denies any reading decides, so reordering rules can matter
there).  Then the same question is asked over every reading of any request
(`Reasoner.check(wide=True)`): a pair found there is reported only if the
evaluator shows a request (with several readings) that the two policies
decide differently, so a change that only a list value makes (`header
user-agent == "a, b"` removed) is listed, never hidden behind "equivalent".
Every witness is re-run through `evaluate` on both policies; one the
evaluator does not confirm is kept as unconfirmed, never as a change.

A named list whose values differ (a list file edited in its own review) is
also reported value by value: for each value added or removed, a request in
which a subject compared with the list has that value and the two policies
decide differently, or the exact answer that no such request exists.
"""

from __future__ import annotations

import json
import posixpath
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import z3

from hdrpolicy.analysis.atoms import Atom, atoms_of
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
from hdrpolicy.frontend.checker import ListReader
from hdrpolicy.frontend.pipeline import Checked, check_file, check_source
from hdrpolicy.printer import policy_string

MAX_CHANGES = 50
# Values of named lists reported one by one, at most.
MAX_VALUES = 1000
# The order changes are listed in: what a security reviewer looks for first.
KINDS = ("now allowed", "now denied", "response changed")
ONE_EACH = "for requests with one reading"
ONE_READING = "each header sent once, no value read as a list"


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
    # The witness's readings: more than one only for a change found beyond ONE_EACH.
    readings: int = 1

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
            "readings": self.readings,
        }


@dataclass(frozen=True)
class ValueChange:
    """A value added to or removed from a named list, and what it changes.

    Each change is a request in which a subject compared with the list has the
    value (`phrase`) and the policies decide differently, one per kind of
    change; with none, `note` says why.
    """

    list_name: str
    value: str
    added: bool
    phrase: str  # `header x-tenant is "globex"`, `client in 10.2.0.0/16`
    # One change per kind (KINDS) that requests with the value undergo; none: `note`.
    changes: tuple[Change, ...] = ()
    note: str | None = None

    @property
    def action(self) -> str:
        return "added" if self.added else "removed"

    def headline(self, kind: str) -> str:
        """`now allowed: header x-tenant is "globex" (added to `tenants`)`."""
        to = "to" if self.added else "from"
        return f"{kind}: {self.phrase} ({self.action} {to} `{self.list_name}`)"

    def to_json(self) -> dict[str, Any]:
        return {
            "list": self.list_name,
            "value": self.value,
            "action": self.action,
            "subject": self.phrase,
            "changes": [c.to_json() for c in self.changes],
            "note": self.note,
        }


@dataclass
class DiffResult:
    """`equivalent`, or the changes; `incomplete` says why the list may not be whole.

    `values`: each value a named list gained or lost, and what it changes.
    """

    changes: list[Change] = field(default_factory=list)
    incomplete: str | None = None
    values: list[ValueChange] = field(default_factory=list)

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
        r = Reasoner([old, new], budget)
        kinds = _find_changes(old, new, r, result)
        _list_changes(old, new, r, kinds, result)
    except BudgetSpent as exc:
        result.incomplete = (
            f"the wall-clock ceiling of {ceiling_ms / 1000:g} s was reached "
            "(raise it with `--budget-ms`)"
            if exc.ceiling
            else f"its budget of {steps} steps is spent (raise it with `--budget {steps * 4}`)"
        )
    result.changes.sort(key=lambda c: (KINDS.index(c.kind), c.old.line or 0, c.new.line or 0))
    return result


def _find_changes(
    old: ir.Policy, new: ir.Policy, r: Reasoner, result: DiffResult
) -> dict[str, z3.BoolRef]:
    """List the change classes; returns each kind of change (KINDS) as a formula."""
    keys = {k: n for n, k in enumerate(sorted({*_responses(old), *_responses(new)}, key=repr))}
    old_idx, o_resp = _decision(old, "old", r, keys)
    new_idx, n_resp = _decision(new, "new", r, keys)
    differ = r.define("differ", o_resp != n_resp)
    allow = keys.get(response_key(None))
    if allow is None:  # neither policy ever allows
        allowed = denied = z3.BoolVal(False, r.ctx)
    else:
        allowed = r.define("allowed", z3.And(o_resp != allow, n_resp == allow))
        denied = r.define("denied", z3.And(o_resp == allow, n_resp != allow))
    kinds = {
        "now allowed": allowed,
        "now denied": denied,
        "response changed": z3.And(differ, z3.Not(allowed), z3.Not(denied)),
    }
    assert list(kinds) == list(KINDS)
    # Each class found is blocked for the next questions of this loop only, so the
    # values of named lists can be asked about every request afterwards.
    found: list[z3.BoolRef] = []
    # First requests with one reading, then any reading (see the module docstring).
    for wide in (False, True):
        while True:
            if len(result.changes) >= MAX_CHANGES:
                result.incomplete = f"the list stops at {MAX_CHANGES} changes"
                return kinds
            answer = r.check(differ, *found, wide=wide)
            if answer.verdict == "unsat":
                break
            if answer.verdict != "sat":
                result.incomplete = UNSETTLED
                return kinds
            assert answer.model is not None and answer.request is not None
            oi = answer.model.eval(old_idx, model_completion=True).as_long()
            ni = answer.model.eval(new_idx, model_completion=True).as_long()
            found.append(z3.Not(z3.And(old_idx == oi, new_idx == ni)))
            if not wide:
                result.changes.append(_change(old, new, answer.request, oi, ni, r.budget))
            elif (change := _reading_change(old, new, answer.request, r.budget)) is not None:
                result.changes.append(change)
    return kinds


UNSETTLED = "the solver could not settle a pattern it cannot translate exactly"


def _responses(policy: ir.Policy) -> list[tuple[object, ...]]:
    """Each rule's response (`response_key`), then the default's."""
    return [response_key(rule.response) for rule in policy.rules] + [response_key(policy.default)]


def _decision(
    policy: ir.Policy, prefix: str, r: Reasoner, keys: dict[tuple[object, ...], int]
) -> tuple[z3.ArithRef, z3.ArithRef]:
    """The index of the deciding rule (len(rules): none) and its response's number in `keys`."""
    fires = [r.define(f"{prefix}{i}", r.fires(rule)) for i, rule in enumerate(policy.rules)]
    *answers, default = (keys[k] for k in _responses(policy))
    idx = _chain(fires, list(range(len(fires))), len(fires), r.ctx)
    return idx, _chain(fires, answers, default, r.ctx)


def _chain(fires: list[z3.BoolRef], ids: list[int], last: int, ctx: z3.Context) -> z3.ArithRef:
    out: z3.ArithRef = z3.IntVal(last, ctx)
    for f, n in zip(reversed(fires), reversed(ids), strict=True):
        out = z3.If(f, z3.IntVal(n, ctx), out)
    return out


def _change(
    old: ir.Policy, new: ir.Policy, request: Headers, oi: int, ni: int, budget: Budget
) -> Change:
    def shows(candidate: Headers) -> bool:
        before, after = _decide(old, new, candidate, budget)
        return (
            _index(old, before) == oi
            and _index(new, after) == ni
            and (before.allowed, before.status, before.body, before.headers)
            != (after.allowed, after.status, after.body, after.headers)
        )

    return _confirmed(old, new, request, shows)


def _reading_change(
    old: ir.Policy, new: ir.Policy, request: Headers, budget: Budget
) -> Change | None:
    """The change a request with several readings shows, if the evaluator confirms one.

    One reading of it is decided differently; the whole request may not be (the
    earliest rule that denies any reading decides), and then nothing is claimed.
    """
    before, after = _decide(old, new, request, budget)
    if _outcome(before) == _outcome(after):
        return None
    shown = (Outcome.of(before), Outcome.of(after))

    def shows(candidate: Headers) -> bool:
        a, b = _decide(old, new, candidate, budget)
        return (Outcome.of(a), Outcome.of(b)) == shown

    request = simplify(request, shows)
    before, after = evaluate(old, request), evaluate(new, request)
    readings = max(before.readings, after.readings)
    return Change(_kind(before, after), *shown, request, True, readings)


def _decide(
    old: ir.Policy, new: ir.Policy, request: Headers, budget: Budget
) -> tuple[Decision, Decision]:
    """Both policies' decisions on a request, charged to the budget."""
    budget.charge(EVALUATION * (len(old.rules) + len(new.rules) + 2))
    return evaluate(old, request), evaluate(new, request)


def _kind(before: Decision, after: Decision) -> str:
    if before.allowed and not after.allowed:
        return "now denied"
    if after.allowed and not before.allowed:
        return "now allowed"
    return "response changed"


# -- named lists, value by value --------------------------------------------------


def _list_changes(
    old: ir.Policy, new: ir.Policy, r: Reasoner, kinds: dict[str, z3.BoolRef], result: DiffResult
) -> None:
    """For each value a named list gained or lost, a request with the value that the
    policies decide differently, or the exact answer that there is none."""
    before = {named.name: named for named in old.lists}
    after = {named.name: named for named in new.lists}
    names = [*after, *(name for name in before if name not in after)]
    edits = []
    for name in names:
        was = _values(before.get(name))
        now = _values(after.get(name))
        edits += [(name, v, True) for v in now if v not in was]
        edits += [(name, v, False) for v in was if v not in now]
    for name, value, added in edits[:MAX_VALUES]:
        result.values.append(_value_change(old, new, r, kinds, name, value, added))
        if result.values[-1].note == UNSETTLED:
            result.incomplete = UNSETTLED
    if len(edits) > MAX_VALUES:
        result.incomplete = (
            f"only the first {MAX_VALUES} of the {len(edits)} values added to or removed "
            "from lists were examined"
        )


def _values(named: ir.NamedList | None) -> list[str]:
    """A list's values in order, each once (none when the policy has no such list)."""
    return list(dict.fromkeys(v.value for v in named.values)) if named is not None else []


def _uses(policy: ir.Policy, name: str, value: str) -> list[tuple[ir.Subject, Atom]]:
    """The tests `subject has value` that the policy's comparisons with the list make."""
    out: dict[tuple[str, Atom], tuple[ir.Subject, Atom]] = {}
    for rule in policy.rules:
        if rule.condition is None:
            continue
        for cmp in ir.comparisons(rule.condition):
            if cmp.list_name != name:
                continue
            for lit, atom in zip(cmp.values, atoms_of(cmp), strict=True):
                if lit.value == value:
                    out.setdefault((cmp.subject.key, atom), (cmp.subject, atom))
    return list(out.values())


def _phrase(subject: ir.Subject, atom: Atom, value: str) -> str:
    """`header x-tenant is "globex"`, `client in 10.2.0.0/16`."""
    if atom.meaning.networks:
        return f"{subject.label} in {value}"
    return f"{subject.label} is {policy_string(value)}" + (
        " ignoring case" if atom.ignore_case else ""
    )


def _value_change(
    old: ir.Policy,
    new: ir.Policy,
    r: Reasoner,
    kinds: dict[str, z3.BoolRef],
    name: str,
    value: str,
    added: bool,
) -> ValueChange:
    """What requests carrying one value undergo: each kind of change, with a witness."""
    policy = new if added else old
    uses = _uses(policy, name, value)
    if not uses:
        side = "NEW" if added else "OLD"
        note = f"no comparison in {side} reads it"
        return ValueChange(name, value, added, policy_string(value), note=note)
    phrases = dict.fromkeys(_phrase(subject, atom, value) for subject, atom in uses)
    found: list[Change] = []
    unsettled = False
    # First requests with one reading; with none (and no unsettled question), a change
    # only a list value makes, kept only if the evaluator shows it.
    for wide in (False, True):
        for kind, formula in kinds.items():
            for subject, atom in uses:
                answer = r.check(r.atom(subject, atom), formula, wide=wide)
                unsettled |= not wide and answer.verdict == "unknown"
                if answer.verdict != "sat":
                    continue
                assert answer.request is not None
                witness = _value_witness(old, new, r.budget, kind, subject, atom, answer.request)
                if witness.confirmed or not wide:
                    found.append(witness)
                    break
        if found or unsettled:
            break
    phrase = " or ".join(phrases)
    if found:
        return ValueChange(name, value, added, phrase, tuple(found))
    if unsettled:
        return ValueChange(name, value, added, phrase, note=UNSETTLED)
    note = f"every request with one reading in which {phrase} is decided as before"
    return ValueChange(name, value, added, phrase, note=note)


def _value_witness(
    old: ir.Policy,
    new: ir.Policy,
    budget: Budget,
    kind: str,
    subject: ir.Subject,
    atom: Atom,
    request: Headers,
) -> Change:
    """The change (of this kind) a request with the value undergoes, confirmed and
    simplified by the evaluator: the subject has the value, and the policies decide
    the request differently, in this way."""

    def shows(candidate: Headers) -> bool:
        before, after = _decide(old, new, candidate, budget)
        reading = after.values.get(subject.key)
        return (
            _outcome(before) != _outcome(after)
            and _kind(before, after) == kind
            and reading is not None
            and atom.holds(subject, reading.decode("utf-8", "replace"))
        )

    return _confirmed(old, new, request, shows)


def _outcome(d: Decision) -> tuple[object, ...]:
    return (d.allowed, d.status, d.body, d.headers)


def _confirmed(
    old: ir.Policy, new: ir.Policy, request: Headers, shows: Callable[[Headers], bool]
) -> Change:
    """The change a witness shows: confirmed (and simplified) when the evaluator
    decides it as `shows` requires, else kept as unconfirmed."""
    confirmed = shows(request)
    if confirmed:
        request = simplify(request, shows)
    before, after = evaluate(old, request), evaluate(new, request)
    readings = max(before.readings, after.readings)
    return Change(
        _kind(before, after), Outcome.of(before), Outcome.of(after), request, confirmed, readings
    )


def _index(policy: ir.Policy, d: Decision) -> int:
    if d.rule is None:
        return len(policy.rules)
    return next(i for i, r in enumerate(policy.rules) if r is d.rule)


# -- loading -----------------------------------------------------------------------


def load_policy(spec: str, cwd: Path | None = None) -> Checked:
    """A policy from a file, or from git as `REV:PATH` (e.g. `main:policies/edge.hp`).

    A path that exists wins over a revision spelling.  A policy from git reads
    its list files from the same revision.  Git's errors become an OSError for
    the caller (the CLI's one error renderer), as a missing file does; a list
    file missing at that revision is the checker's located HP219.
    """
    path = Path(spec)
    if path.exists() or ":" not in spec:
        return check_file(path)
    rev, _, rel = spec.partition(":")
    if rev.startswith("-"):
        raise OSError(f"`{spec}` is not a revision")  # never let it reach git as an option
    try:
        text = _git_show(rev, rel, cwd).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise OSError(f"{spec} is not UTF-8") from exc
    return check_source(Source(spec, text), Path(rel).stem, _files_at(rev, rel, cwd))


def _git_show(rev: str, rel: str, cwd: Path | None) -> bytes:
    """A file as it is at a revision (`git show REV:PATH`); OSError with git's reason."""
    proc = subprocess.run(
        ["git", "show", "--end-of-options", f"{rev}:{rel}"],
        cwd=cwd,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        reason = proc.stderr.decode("utf-8", "replace").strip().removeprefix("fatal: ")
        raise OSError(reason or f"git show {rev}:{rel} failed")
    return proc.stdout


def _files_at(rev: str, rel: str, cwd: Path | None) -> ListReader:
    """Reads the list files a policy at `rev:rel` names, from the same revision
    (relative to the policy's directory there, as `files_beside` reads them)."""
    directory = posixpath.dirname(rel)

    def read(name: str) -> bytes:
        joined = posixpath.normpath(posixpath.join(directory, name))
        if rel.startswith(("./", "../")) and not joined.startswith("../"):
            joined = "./" + joined  # git reads `./x` relative to the working directory
        return _git_show(rev, joined, cwd)

    return read


# -- rendering ---------------------------------------------------------------------


def render_text(result: DiffResult, old_name: str, new_name: str) -> str:
    out = []
    if result.equivalent:
        out.append(f"{old_name} and {new_name} are equivalent {ONE_EACH}")
    # A list edit's own answer first: what each value added or removed changes.
    if result.values:
        out.append(f"{_count_values(result.values)}, value by value:")
    for v in result.values:
        if not v.changes:
            out.append(f"- {v.headline('no change')}: {v.note}")
        for c in v.changes:
            mark = "" if c.confirmed else " (unconfirmed by the evaluator)"
            mark += _several(c)
            out.append(f"- {v.headline(c.kind)}: {c.describe()}{mark}")
            out.append(f"  witness: {render_request(c.witness)}")
    if result.changes:
        scope = ONE_EACH
        if any(c.readings > 1 for c in result.changes):
            scope = f"every one {ONE_EACH}; those marked, only with several readings"
        out.append(
            f"{len(result.changes)} change(s) in behaviour from {old_name} to {new_name} ({scope}):"
        )
    for c in result.changes:
        mark = "" if c.confirmed else " (unconfirmed by the evaluator)"
        mark += _several(c)
        out.append(f"- {c.kind}: {c.describe()}{mark}")
        out.append(f"  witness: {render_request(c.witness)}")
    if result.incomplete is not None:
        found = "there may be more" if result.changes else "none was found before it stopped"
        out.append(f"diff incomplete: {result.incomplete}; {found}")
    return "\n".join(out) + "\n"


def _several(change: Change) -> str:
    """What marks a change only a request with several readings shows."""
    if change.readings == 1:
        return ""
    return f" (a request with {change.readings} readings)"


def _count_values(values: list[ValueChange]) -> str:
    """`named lists: 2 value(s) added, 1 removed`."""
    added = sum(v.added for v in values)
    return f"named lists: {added} value(s) added, {len(values) - added} removed"


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
            "list_values": [v.to_json() for v in result.values],
        },
        indent=2,
    )


def render_markdown(result: DiffResult, old_name: str, new_name: str) -> str:
    if result.equivalent:
        out = [
            f"**`{old_name}` → `{new_name}`: equivalent**, no request with one reading "
            f"({ONE_READING}) is decided differently."
        ]
    else:
        out = [
            f"### `{old_name}` → `{new_name}`: {len(result.changes)} change(s) in behaviour",
            "",
        ]
    if result.changes:
        out += [
            "| change | before | after | witness request |",
            "| --- | --- | --- | --- |",
        ]
    for c in result.changes:
        witness = _cell(render_request(c.witness))
        mark = ("" if c.confirmed else " ⚠ unconfirmed") + _several(c)
        before, after = (_cell(side) for side in c.sides())
        out.append(f"| {c.kind}{mark} | {before} | {after} | `{witness}` |")
    if result.values:
        out += [
            "",
            f"#### {_count_values(result.values).capitalize()}",
            "",
            "| list | value | change | before | after | witness request |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
    for v in result.values:
        head = f"| `{v.list_name}` | {v.action} {_cell(policy_string(v.value))} |"
        if not v.changes:
            out.append(f"{head} no change: {_cell(v.note or '')} | | | |")
        for c in v.changes:
            mark = ("" if c.confirmed else " ⚠ unconfirmed") + _several(c)
            before, after = (_cell(side) for side in c.sides())
            witness = _cell(render_request(c.witness))
            what = f"{c.kind}{mark}: {_cell(v.phrase)}"
            out.append(f"{head} {what} | {before} | {after} | `{witness}` |")
    if result.incomplete is not None:
        out += ["", f"**Incomplete:** {result.incomplete}; there may be more changes."]
    elif not result.equivalent or result.values:
        out += ["", f"_Decided {ONE_EACH} ({ONE_READING})._"]
    return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
