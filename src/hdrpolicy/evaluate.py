"""The reference evaluator: what a policy means, as a small Python function of the IR.

The compiled plug-in must agree with it on every request (the project's
differential tests check this).  It works on the request as the proxy host
hands it to the plug-in: a list of (name, value) byte pairs, pseudo-headers
(`:method`, `:path`, `:authority`) included.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import assert_never

from hdrpolicy import semantics
from hdrpolicy.frontend import ir
from hdrpolicy.frontend.ir import DEFAULT_CONTENT_TYPE, MAX_READINGS
from hdrpolicy.semantics import Literals, fold, list_delimiter

Headers = list[tuple[bytes, bytes]]


def normalize(subject: ir.Subject, value: bytes) -> bytes:
    """The value rules judge: trimmed, and the subject's own rule (`semantics`)."""
    return semantics.subject(subject.kind).normalize(value)


def values_in(subject: ir.Subject, value: bytes) -> list[bytes]:
    """The values a subject has in one value the host passed: the value normalised,
    or a named subject's values in it (a query parameter's, a cookie's)."""
    extract = semantics.subject(subject.kind).extract
    if extract is None:
        return [normalize(subject, value)]
    assert subject.name is not None
    return extract(value, subject.name.encode())


_OWS = semantics.OWS
# The subjects whose values must be in normal form, in the order they are checked.
NORMAL_FORM_ORDER = (ir.SubjectKind.PATH, ir.SubjectKind.QUERY)
# Re-exported: the tests and `explain` read the path's rule from here.
path_in_normal_form = semantics.path_in_normal_form


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
class Refusal:
    """A request refused before any rule runs: the response, and the value behind it."""

    status: int
    body: str
    subject: ir.Subject | None = None
    value: bytes | None = None


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
    # Set when the request was refused before the rules ran.
    refusal: Refusal | None = None

    @property
    def kind(self) -> str:
        return "allow" if self.allowed else "deny"


def _response(response: ir.Response) -> tuple[int, bytes, tuple[tuple[bytes, bytes], ...]]:
    headers = tuple((k.encode(), v.encode()) for k, v in response.sent_headers)
    return response.status, response.body_text.encode(), headers


# -- evaluation ---------------------------------------------------------------


def compare(cmp: ir.Compare, value: bytes | None) -> bool:
    """One comparison against one value (None: the header is missing)."""
    meaning = semantics.comparison(cmp)
    positive = meaning.positive
    if positive.literals is Literals.NONE:
        result = value is not None
    else:
        result = value is not None and any(
            semantics.holds(positive, lit.value, cmp.ignore_case, value) for lit in cmp.values
        )
    return result if meaning.negation_of is None else not result


def _condition(
    cond: ir.Condition, values: dict[str, bytes | None], seen: list[CompareTrace]
) -> bool:
    """Evaluate every comparison (no short cut), so a trace shows all of them."""
    match cond:
        case ir.Compare():
            value = values[cond.subject.key]
            result = compare(cond, value)
            seen.append(CompareTrace(cond, value, result))
            return result
        case ir.Not():
            return not _condition(cond.operand, values, seen)
        case ir.And():
            return all([_condition(op, values, seen) for op in cond.operands])
        case ir.Or():
            return any([_condition(op, values, seen) for op in cond.operands])
        case _:
            assert_never(cond)


def fires(rule: ir.Rule, values: dict[str, bytes | None], seen: list[CompareTrace]) -> bool:
    if rule.condition is None:
        return True
    assert rule.guard is not None
    return semantics.fires(rule.guard, _condition(rule.condition, values, seen))


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


def _raw_values(policy: ir.Policy, headers: Headers) -> list[list[bytes]]:
    """Each subject's values as the host passed them (a pseudo-header: the first only)."""
    out = []
    for subject in policy.subjects:
        name = subject.host_name.encode()
        found = [v for k, v in headers if fold(k) == name]
        out.append(found[:1] if subject.is_pseudo else found)
    return out


def refusal(policy: ir.Policy, headers: Headers) -> Refusal | None:
    """Why the request is refused before the rules run, checked in this order (None: it is not).

    A path not in normal form (when the policy reads `path`); a header value
    with surrounding spaces or tabs (Envoy passes them over HTTP/2; RFC 9113
    §8.2.1 calls such a field malformed), so every value judged is trimmed
    (pseudo-headers never carry them in Envoy: HTTP/1.1 trims the Host,
    HTTP/2 rejects such an `:authority`; they are trimmed like before);
    more than MAX_READINGS readings.
    """
    raw = _raw_values(policy, headers)
    for kind in NORMAL_FORM_ORDER:
        for subject, values in zip(policy.subjects, raw, strict=True):
            meaning = semantics.subject(subject.kind)
            if subject.kind is not kind or not values:
                continue
            assert meaning.in_normal_form is not None and meaning.refusal is not None
            if not meaning.in_normal_form(values[0]):
                status, body = meaning.refusal
                return Refusal(status, body, subject, values[0])
    for subject, values in zip(policy.subjects, raw, strict=True):
        padded = not subject.is_pseudo and semantics.subject(subject.kind).extract is None
        for value in values if padded else ():
            if value != value.strip(_OWS):
                return Refusal(ir.BAD_VALUE_STATUS, ir.BAD_VALUE_BODY, subject, value)
    total = 1
    for subject, values in zip(policy.subjects, raw, strict=True):
        total *= len(subject_readings(subject, values)) or 1
        if total > MAX_READINGS:
            return Refusal(ir.TOO_MANY_READINGS_STATUS, ir.TOO_MANY_READINGS_BODY)
    return None


def subject_readings(subject: ir.Subject, values: list[bytes]) -> list[bytes]:
    """A subject's readings, each once, in this order: for each value the host
    passed, its values (`values_in`) and (a header Envoy joins, `host`, the
    `cookie` header) each of its list elements; then, for a subject with more
    than one value, all of them joined (`semantics.joiner`: ", " for headers,
    "; " for the cookie header, "," for a query parameter; cookies are not joined).

    Stops past MAX_READINGS: more can only be refused.
    """
    delimiter = list_delimiter(subject)
    out: list[bytes] = []
    found: list[bytes] = []

    def add(value: bytes) -> None:
        if value not in out and len(out) <= MAX_READINGS:
            out.append(value)

    for value in values:
        own = values_in(subject, value)
        found.extend(own)
        for each in own:
            add(each)
        if delimiter is not None and delimiter.encode() in value:
            for part in value.split(delimiter.encode()):
                add(normalize(subject, part.strip(_OWS)))
    joiner = semantics.joiner(subject)
    if len(found) > 1 and joiner is not None:
        add(joiner.encode().join(found))
    return out


def readings(policy: ir.Policy, headers: Headers) -> list[dict[str, bytes | None]]:
    """Every reading of a request that `refusal` lets through: one value per subject."""
    options: list[list[bytes | None]] = [
        list(subject_readings(subject, values)) or [None]
        for subject, values in zip(policy.subjects, _raw_values(policy, headers), strict=True)
    ]
    return [
        {s.key: v for s, v in zip(policy.subjects, combo, strict=True)}
        for combo in itertools.product(*options)
    ]


def _rank(policy: ir.Policy, decision: Decision) -> int:
    if decision.rule is not None:
        return next(i for i, r in enumerate(policy.rules) if r is decision.rule)
    return len(policy.rules)


def evaluate(policy: ir.Policy, headers: Headers) -> Decision:
    """The policy's decision on a request.

    A request with several readings is allowed only if every reading is; else
    the earliest rule that denies any reading decides.
    """
    refused = refusal(policy, headers)
    if refused is not None:
        return Decision(
            False,
            refused.status,
            refused.body.encode(),
            ((DEFAULT_CONTENT_TYPE[0].encode(), DEFAULT_CONTENT_TYPE[1].encode()),),
            too_many_readings=refused.status == ir.TOO_MANY_READINGS_STATUS,
            readings=MAX_READINGS + 1 if refused.subject is None else 1,
            values={
                s.key: next(iter(subject_readings(s, vs)), None)
                for s, vs in zip(policy.subjects, _raw_values(policy, headers), strict=True)
            },
            refusal=refused,
        )
    all_readings = readings(policy, headers)
    decisions = [_evaluate_reading(policy, values) for values in all_readings]
    denied = [d for d in decisions if not d.allowed]
    chosen = min(denied, key=lambda d: _rank(policy, d)) if denied else decisions[0]
    return dataclasses.replace(chosen, readings=len(decisions))
