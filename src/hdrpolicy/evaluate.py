"""The reference evaluator: what a policy means, as a small Python function of the IR.

The compiled plug-in must agree with it on every request (the project's
differential tests check this).  It works on the request as the proxy host
hands it to the plug-in: a list of (name, value) byte pairs, pseudo-headers
(`:method`, `:path`, `:authority`) included.
"""

from __future__ import annotations

import codecs
import dataclasses
import itertools
from dataclasses import dataclass, field
from functools import cache

import re2

from hdrpolicy import ir
from hdrpolicy.ir import (
    DEFAULT_CONTENT_TYPE,
    MAX_READINGS,
    TOO_MANY_READINGS_BODY,
    TOO_MANY_READINGS_STATUS,
)

Headers = list[tuple[bytes, bytes]]


def _go_replace(exc: UnicodeError) -> tuple[str, int]:
    """Decode like Go's `range` over a string: each invalid byte is one U+FFFD."""
    assert isinstance(exc, UnicodeDecodeError)
    return "\ufffd", exc.start + 1


codecs.register_error("hdrpolicy-go", _go_replace)


def lower_ascii(value: bytes) -> bytes:
    return value.translate(_ASCII_LOWER)


_ASCII_LOWER = bytes(c + 32 if 65 <= c <= 90 else c for c in range(256))


def normalize(subject: ir.Subject, value: bytes) -> bytes:
    """Trim spaces and tabs; the path loses its query, the host its port and upper case."""
    value = value.strip(b" \t")
    if subject.kind is ir.SubjectKind.PATH:
        value = value.split(b"?", 1)[0]
    elif subject.kind is ir.SubjectKind.HOST:
        value = lower_ascii(_strip_port(value))
    return value


def _strip_port(host: bytes) -> bytes:
    i = host.rfind(b":")
    if i < 0 or b"]" in host[i:]:
        return host
    port = host[i + 1 :]
    return host[:i] if all(0x30 <= c <= 0x39 for c in port) else host


@cache
def _regex(pattern: str) -> re2._Regexp:
    options = re2.Options()
    options.log_errors = False
    # Go's `regexp` takes patterns past RE2's default 8 MB (`\\pL{1000}`): so must we.
    options.max_mem = 1 << 31
    return re2.compile(pattern, options)


# -- results ----------------------------------------------------------------


@dataclass(frozen=True)
class CompareTrace:
    """One comparison on one reading: the value it saw (None: missing) and its result."""

    compare: ir.Compare
    value: bytes | None
    result: bool


@dataclass(frozen=True)
class RuleTrace:
    rule: ir.Rule
    fired: bool
    comparisons: tuple[CompareTrace, ...]


@dataclass(frozen=True)
class Decision:
    """allow, or deny with a response; `rule` is the rule that decided, if any."""

    allowed: bool
    status: int | None = None
    body: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    rule: ir.Rule | None = None
    is_default: bool = False
    too_many_readings: bool = False
    readings: int = 1
    trace: tuple[RuleTrace, ...] = ()
    # The deciding reading: each subject's value in it (None: missing).
    values: dict[str, bytes | None] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return "allow" if self.allowed else "deny"


def _response(response: ir.Response) -> tuple[int, bytes, tuple[tuple[bytes, bytes], ...]]:
    headers = tuple((k.encode(), v.encode()) for k, v in response.sent_headers)
    return response.status, response.body_text.encode(), headers


# -- evaluation ---------------------------------------------------------------


def compare(cmp: ir.Compare, value: bytes | None) -> bool:
    """One comparison against one value (None: the header is missing)."""
    op = cmp.op
    if op is ir.Op.EXISTS:
        return value is not None
    if op in ir.NEGATED_OPS:
        return not compare(cmp.model_copy(update={"op": ir.NEGATED_OPS[op]}), value)
    if value is None:
        return False
    if op is ir.Op.MATCHES:
        text = value.decode("utf-8", "hdrpolicy-go")
        return _regex(cmp.values[0].value).search(text) is not None
    literals = [v.value.encode() for v in cmp.values]
    if cmp.ignore_case:
        value = lower_ascii(value)
        literals = [lower_ascii(lit) for lit in literals]
    if op in (ir.Op.EQ, ir.Op.IN):
        return value in literals
    lit = literals[0]
    if op is ir.Op.STARTS_WITH:
        return value.startswith(lit)
    if op is ir.Op.ENDS_WITH:
        return value.endswith(lit)
    return lit in value  # contains


def _condition(
    cond: ir.Condition, values: dict[str, bytes | None], seen: list[CompareTrace]
) -> bool:
    """Evaluate every comparison (no short cut), so a trace shows all of them."""
    if isinstance(cond, ir.Compare):
        value = values[cond.subject.key]
        result = compare(cond, value)
        seen.append(CompareTrace(cond, value, result))
        return result
    if isinstance(cond, ir.Not):
        return not _condition(cond.operand, values, seen)
    results = [_condition(op, values, seen) for op in cond.operands]
    return all(results) if isinstance(cond, ir.And) else any(results)


def fires(rule: ir.Rule, values: dict[str, bytes | None], seen: list[CompareTrace]) -> bool:
    if rule.condition is None:
        return True
    result = _condition(rule.condition, values, seen)
    return result if rule.guard is ir.Guard.WHEN else not result


def _evaluate_reading(policy: ir.Policy, values: dict[str, bytes | None]) -> Decision:
    trace: list[RuleTrace] = []
    for rule in policy.rules:
        seen: list[CompareTrace] = []
        fired = fires(rule, values, seen)
        trace.append(RuleTrace(rule, fired, tuple(seen)))
        if not fired:
            continue
        if rule.action is ir.Action.ALLOW:
            return Decision(True, rule=rule, trace=tuple(trace), values=values)
        assert rule.response is not None
        status, body, headers = _response(rule.response)
        return Decision(False, status, body, headers, rule, trace=tuple(trace), values=values)
    if policy.default is not None:
        status, body, headers = _response(policy.default)
        return Decision(
            False, status, body, headers, is_default=True, trace=tuple(trace), values=values
        )
    return Decision(True, trace=tuple(trace), values=values)


def readings(policy: ir.Policy, headers: Headers) -> list[dict[str, bytes | None]] | None:
    """Every reading of the request (None if there are more than MAX_READINGS).

    A subject sent once has one value; one sent n > 1 times has n + 1: each
    value alone and all of them joined with ", ".
    """
    options: list[list[bytes | None]] = []
    subjects = policy.subjects
    total = 1
    for subject in subjects:
        name = subject.host_name.encode()
        found = [normalize(subject, v) for k, v in headers if lower_ascii(k) == name]
        if subject.is_pseudo:
            found = found[:1]  # a pseudo-header is single: the first one counts
        if len(found) > 1:
            found.append(b", ".join(found))
            total *= len(found)
            if total > MAX_READINGS:
                return None
        options.append(list(found) if found else [None])
    return [
        {s.key: v for s, v in zip(subjects, combo, strict=True)}
        for combo in itertools.product(*options)
    ]


def _rank(policy: ir.Policy, decision: Decision) -> int:
    if decision.rule is not None:
        return next(i for i, r in enumerate(policy.rules) if r is decision.rule)
    return len(policy.rules)


def evaluate(policy: ir.Policy, headers: Headers) -> Decision:
    """The policy's decision on a request.

    A request with repeated headers is allowed only if every reading is; else
    the earliest rule that denies any reading decides.
    """
    all_readings = readings(policy, headers)
    if all_readings is None:
        return Decision(
            False,
            TOO_MANY_READINGS_STATUS,
            TOO_MANY_READINGS_BODY.encode(),
            ((DEFAULT_CONTENT_TYPE[0].encode(), DEFAULT_CONTENT_TYPE[1].encode()),),
            too_many_readings=True,
            readings=MAX_READINGS + 1,
        )
    decisions = [_evaluate_reading(policy, values) for values in all_readings]
    denied = [d for d in decisions if not d.allowed]
    chosen = min(denied, key=lambda d: _rank(policy, d)) if denied else decisions[0]
    return dataclasses.replace(chosen, readings=len(decisions))
