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
from hdrpolicy.codec import list_delimiter
from hdrpolicy.ir import DEFAULT_CONTENT_TYPE, MAX_READINGS

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


_OWS = b" \t"
_HEX = b"0123456789ABCDEF"
# RFC 3986 unreserved characters, and `/` and `\`: never percent-encoded in normal form.
NEVER_ENCODED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/\\")


def path_in_normal_form(value: bytes) -> bool:
    """Whether `:path` (up to `?`) is the one spelling of its resource a service resolves.

    It starts with `/`; has no `.` or `..` segment (nor `..;x`), no `//`, no
    `\\`, no `#`; and percent signs only as `%XX` with upper-case hex digits
    that do not encode an unreserved character, `/` or `\\`.
    """
    path = value.split(b"?", 1)[0]
    if not path.startswith(b"/") or b"//" in path or b"\\" in path or b"#" in path:
        return False
    for segment in path.split(b"/"):
        if segment.split(b";", 1)[0] in (b".", b".."):
            return False
    i = path.find(b"%")
    while i >= 0:
        digits = path[i + 1 : i + 3]
        if len(digits) < 2 or any(c not in _HEX for c in digits):
            return False
        if int(digits, 16) in NEVER_ENCODED:
            return False
        i = path.find(b"%", i + 3)
    return True


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


def _raw_values(policy: ir.Policy, headers: Headers) -> list[list[bytes]]:
    """Each subject's values as the host passed them (a pseudo-header: the first only)."""
    out = []
    for subject in policy.subjects:
        name = subject.host_name.encode()
        found = [v for k, v in headers if lower_ascii(k) == name]
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
    for subject, values in zip(policy.subjects, raw, strict=True):
        if subject.kind is ir.SubjectKind.PATH and values and not path_in_normal_form(values[0]):
            return Refusal(ir.BAD_PATH_STATUS, ir.BAD_PATH_BODY, subject, values[0])
    for subject, values in zip(policy.subjects, raw, strict=True):
        for value in values if not subject.is_pseudo else ():
            if value != value.strip(_OWS):
                return Refusal(ir.BAD_VALUE_STATUS, ir.BAD_VALUE_BODY, subject, value)
    total = 1
    for subject, values in zip(policy.subjects, raw, strict=True):
        total *= len(subject_readings(subject, values)) or 1
        if total > MAX_READINGS:
            return Refusal(ir.TOO_MANY_READINGS_STATUS, ir.TOO_MANY_READINGS_BODY)
    return None


def subject_readings(subject: ir.Subject, values: list[bytes]) -> list[bytes]:
    """A subject's readings, each once, in this order: for each value, the value and
    (a header Envoy joins, `host`, `cookie`) each of its list elements; then, for
    a subject sent more than once, all values joined with ", " ("; " for cookies).

    Stops past MAX_READINGS: more can only be refused.
    """
    delimiter = list_delimiter(subject.host_name)
    out: list[bytes] = []

    def add(value: bytes) -> None:
        if value not in out and len(out) <= MAX_READINGS:
            out.append(value)

    for value in values:
        add(normalize(subject, value))
        if delimiter is not None and delimiter.encode() in value:
            for part in value.split(delimiter.encode()):
                add(normalize(subject, part.strip(_OWS)))
    if len(values) > 1:
        joiner = b"; " if delimiter == ";" else b", "
        add(joiner.join(normalize(subject, v) for v in values))
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
                s.key: normalize(s, vs[0]) if vs else None
                for s, vs in zip(policy.subjects, _raw_values(policy, headers), strict=True)
            },
            refusal=refused,
        )
    all_readings = readings(policy, headers)
    decisions = [_evaluate_reading(policy, values) for values in all_readings]
    denied = [d for d in decisions if not d.allowed]
    chosen = min(denied, key=lambda d: _rank(policy, d)) if denied else decisions[0]
    return dataclasses.replace(chosen, readings=len(decisions))
