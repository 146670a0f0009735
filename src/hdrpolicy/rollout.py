"""Safe rollout: what a build does around a policy's decision (mode, shadow, metrics, filter state).

A *build* is the policy it enforces (the live one), its mode (enforce, or
dry-run: decide but never deny) and optionally a second policy evaluated in
its shadow on the same request.  `run` is the reference for everything a
compiled plug-in does with one request besides deciding it: the response it
lets through or sends, the counters it increments and the filter state it
sets.  The emitter takes every name and string from here, so the plug-in
and this module cannot drift apart; the tests compare them in the SDK's
emulator and in Envoy.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum

from hdrpolicy.backend.golit import go_comment_text
from hdrpolicy.evaluate import Decision, Headers, evaluate
from hdrpolicy.frontend import ir

# At most this many info lines (dry-run decisions, shadow disagreements) per
# second per Wasm VM; the counters count every request.
LOG_LINES_PER_SECOND = 10
# Envoy keeps a plug-in's own metrics under this prefix (`/stats`); its
# Prometheus output strips it.
ENVOY_METRIC_PREFIX = "wasmcustom."


class Mode(StrEnum):
    ENFORCE = "enforce"
    DRY_RUN = "dry-run"


class Comparison(StrEnum):
    """How the shadow policy's decision compares with the live one's."""

    AGREE = "agree"
    NEWLY_DENY = "newly-deny"
    NEWLY_ALLOW = "newly-allow"
    DIFFERENT_RESPONSE = "different-response"


# Why a request was refused before any rule ran, by the refusal's response.
REFUSALS = {
    (ir.TOO_MANY_READINGS_STATUS, ir.TOO_MANY_READINGS_BODY): "too-many-readings",
    (ir.BAD_PATH_STATUS, ir.BAD_PATH_BODY): "path-not-normal",
    (ir.BAD_QUERY_STATUS, ir.BAD_QUERY_BODY): "query-not-well-formed",
    (ir.BAD_VALUE_STATUS, ir.BAD_VALUE_BODY): "padded-value",
    (ir.HOST_ERROR_STATUS, ir.HOST_ERROR_BODY): "host-error",
}
NO_RULE = "no-rule"
DEFAULT = "default"


@dataclass(frozen=True)
class Side:
    """One policy of a build, and the file name its locations show."""

    policy: ir.Policy
    source_name: str

    def location(self, line: int) -> str:
        """`file:line` as the plug-in's logs, filter state and metrics show it."""
        return f"{go_comment_text(self.source_name)}:{line}"


@dataclass(frozen=True)
class Options:
    """The rollout options of `compile` (and `test`, `explain`), before the policies are read."""

    mode: Mode = Mode.ENFORCE
    metrics: bool = True
    filter_state: bool = True
    decision_header: str | None = None
    log_values: bool = False

    def build(self, live: Side, shadow: Side | None = None) -> Build:
        return Build(
            live,
            self.mode,
            shadow,
            self.metrics,
            self.filter_state,
            self.decision_header,
            self.log_values,
        )


@dataclass(frozen=True)
class Build:
    """What `compile` builds: the options that change what the plug-in does."""

    live: Side
    mode: Mode = Mode.ENFORCE
    shadow: Side | None = None
    metrics: bool = True
    filter_state: bool = True
    # A response header naming what decided, on the live policy's denies (opt-in).
    decision_header: str | None = None
    # Header values in the dry-run and shadow info lines (else redacted).
    log_values: bool = False

    @property
    def counters(self) -> list[str]:
        """Every counter the plug-in defines (a request increments some of them)."""
        if not self.metrics:
            return []
        sides = [(self.live, self.role)] + ([(self.shadow, "shadow")] if self.shadow else [])
        names = []
        for side, role in sides:
            policy = side.policy
            causes = [
                (True, side.location(r.span.line))
                for r in policy.rules
                if r.action is ir.Action.ALLOW
            ]
            causes += [
                (False, side.location(r.span.line))
                for r in policy.rules
                if r.action is ir.Action.DENY
            ]
            causes += [(True, NO_RULE), (False, DEFAULT)]
            causes += [(False, refused) for refused in refusals(policy)]
            names += [decision_metric(policy.name, role, allowed, by) for allowed, by in causes]
        if self.shadow:
            names += [shadow_metric(self.live.policy.name, c) for c in Comparison]
        return names

    @property
    def state_keys(self) -> list[str]:
        if not self.filter_state:
            return []
        name = self.live.policy.name
        return [state_key(name)] + ([shadow_state_key(name)] if self.shadow else [])

    @property
    def role(self) -> str:
        """The live policy's role in metric names."""
        return "dry_run" if self.mode is Mode.DRY_RUN else "enforce"


# -- names and strings shared with the plug-in ---------------------------------


def refusals(policy: ir.Policy) -> list[str]:
    """The refusals a policy's plug-in can make (`query-not-well-formed` only when it
    reads a query parameter: other plug-ins have no counter for it)."""
    reads_query = any(s.kind is ir.SubjectKind.QUERY for s in policy.subjects)
    return [
        by
        for (status, body), by in REFUSALS.items()
        if reads_query or (status, body) != (ir.BAD_QUERY_STATUS, ir.BAD_QUERY_BODY)
    ]


def decided_by(side: Side, decision: Decision) -> str:
    """What decided: `file:line`, `default`, `no-rule`, or the refusal (`path-not-normal`, …)."""
    if decision.refusal is not None:
        return REFUSALS[(decision.refusal.status, decision.refusal.body)]
    if decision.rule is not None:
        return side.location(decision.rule.span.line)
    return DEFAULT if decision.is_default else NO_RULE


def metric_cause(by: str) -> str:
    """`decided_by` as a metric name segment: `line_4`, `default`, `no_rule`, `padded_value`."""
    if by in (DEFAULT, NO_RULE) or by in REFUSALS.values():
        return by.replace("-", "_")
    return "line_" + by.rsplit(":", 1)[1]


def decision_metric(policy_name: str, role: str, allowed: bool, by: str) -> str:
    """hdrpolicy.decisions.POLICY.ROLE.(allow|deny).CAUSE"""
    verdict = "allow" if allowed else "deny"
    return f"hdrpolicy.decisions.{policy_name}.{role}.{verdict}.{metric_cause(by)}"


def shadow_metric(policy_name: str, comparison: Comparison) -> str:
    """hdrpolicy.shadow.POLICY.COMPARISON (POLICY: the live policy's name)."""
    return f"hdrpolicy.shadow.{policy_name}.{comparison.value.replace('-', '_')}"


def state_key(policy_name: str) -> str:
    """The filter state the plug-in sets; Envoy prefixes `wasm.` (`%FILTER_STATE(wasm.…)%`)."""
    return f"hdrpolicy.{policy_name}"


def shadow_state_key(policy_name: str) -> str:
    return state_key(policy_name) + ".shadow"


def state_value(mode: Mode, allowed: bool, status: int | None, by: str) -> str:
    """`allow - BY`, `deny STATUS BY`, or in dry-run `would-deny STATUS BY` (let through)."""
    if allowed:
        return f"allow - {by}"
    verdict = "would-deny" if mode is Mode.DRY_RUN else "deny"
    return f"{verdict} {status} {by}"


def compare(live: Decision, shadow: Decision) -> Comparison:
    """Behaviour, as `hdrpolicy diff` sees it: allowed or not, and the response."""
    if live.allowed and shadow.allowed:
        return Comparison.AGREE
    if live.allowed:
        return Comparison.NEWLY_DENY
    if shadow.allowed:
        return Comparison.NEWLY_ALLOW
    same = (live.status, live.body, live.headers) == (shadow.status, shadow.body, shadow.headers)
    return Comparison.AGREE if same else Comparison.DIFFERENT_RESPONSE


# -- one request ----------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What the plug-in of a build does with one request."""

    # What happens to the request: let through, or this local response.
    allowed: bool
    status: int | None
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    live: Decision
    live_by: str
    shadow: Decision | None = None
    shadow_by: str | None = None
    comparison: Comparison | None = None
    # Counter name → increment (without Envoy's `wasmcustom.` prefix).
    counters: Counter[str] = field(default_factory=Counter)
    # Filter state key (without `wasm.`) → value.
    filter_state: dict[str, bytes] = field(default_factory=dict)


def sent(outcome: Outcome) -> Decision:
    """What the plug-in does to the request, as a decision: allow, or the response it sends."""
    if outcome.allowed:
        return Decision(True)
    return dataclasses.replace(outcome.live, headers=outcome.headers)


def run(build: Build, headers: Headers) -> Outcome:
    """What the build's plug-in does with a request, as the host hands it over."""
    live = evaluate(build.live.policy, headers)
    live_by = decided_by(build.live, live)
    name = build.live.policy.name
    counters: Counter[str] = Counter()
    state: dict[str, bytes] = {}
    if build.metrics:
        counters[decision_metric(name, build.role, live.allowed, live_by)] += 1
    if build.filter_state:
        state[state_key(name)] = state_value(
            build.mode, live.allowed, live.status, live_by
        ).encode()
    enforced = not live.allowed and build.mode is Mode.ENFORCE
    response_headers = live.headers
    if enforced and build.decision_header is not None:
        response_headers += ((build.decision_header.encode(), live_by.encode()),)
    outcome = Outcome(
        allowed=not enforced,
        status=live.status if enforced else None,
        body=live.body if enforced else b"",
        headers=response_headers if enforced else (),
        live=live,
        live_by=live_by,
        counters=counters,
        filter_state=state,
    )
    if build.shadow is None:
        return outcome
    shadow = evaluate(build.shadow.policy, headers)
    shadow_by = decided_by(build.shadow, shadow)
    comparison = compare(live, shadow)
    if build.metrics:
        shadow_name = build.shadow.policy.name
        counters[decision_metric(shadow_name, "shadow", shadow.allowed, shadow_by)] += 1
        counters[shadow_metric(name, comparison)] += 1
    if build.filter_state:
        value = state_value(Mode.ENFORCE, shadow.allowed, shadow.status, shadow_by)
        state[shadow_state_key(name)] = f"{comparison.value} {value}".encode()
    return dataclasses.replace(outcome, shadow=shadow, shadow_by=shadow_by, comparison=comparison)
