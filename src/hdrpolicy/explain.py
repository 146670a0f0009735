"""Renders a decision and its trace for people (text) and programs (JSON)."""

from __future__ import annotations

from typing import Any

from hdrpolicy import rollout
from hdrpolicy.diagnostics import Source, visible
from hdrpolicy.evaluate import CompareTrace, Decision, RuleTrace
from hdrpolicy.frontend import ir


def _show(value: bytes | None) -> str:
    """A value in double quotes, safe to print: `\\"`, `\\\\`, a byte that is not
    UTF-8 as `\\xHH`, control and invisible characters as `\\uXXXX`."""
    if value is None:
        return "missing"
    return '"' + "".join(_show_char(ch) for ch in value.decode("utf-8", "surrogateescape")) + '"'


def _show_char(ch: str) -> str:
    if ch in '"\\':
        return "\\" + ch
    if "\udc80" <= ch <= "\udcff":
        return f"\\x{ord(ch) - 0xDC00:02x}"
    if ch == "\t":
        return "\\t"
    return visible(ch)


def _rule_text(source: Source, node: ir.Node) -> str:
    return visible(" ".join(source.text[node.span.start : node.span.end].split()))


def _compare_text(source: Source, c: CompareTrace) -> str:
    seen = f"{c.compare.subject.label} is {_show(c.value)}"
    return f"{_rule_text(source, c.compare)}  ({seen}) → {str(c.result).lower()}"


def outcome(decision: Decision) -> str:
    if decision.allowed:
        return "allow"
    return f"deny {decision.status} {_show(decision.body)}"


def decided_by(source: Source, decision: Decision) -> str:
    if decision.too_many_readings:
        return f"more than {decision.readings - 1} readings of repeated headers"
    refused = decision.refusal
    if refused is not None and refused.subject is not None:
        return (
            f"refused before any rule: {refused.body} "
            f"({refused.subject.label} is {_show(refused.value)})"
        )
    if decision.rule is not None:
        return f"{source.path}:{decision.rule.span.line}: {_rule_text(source, decision.rule)}"
    if decision.is_default:
        return "the default"
    return "no rule fired"


def render_text(source: Source, decision: Decision) -> str:
    lines = [f"decision: {outcome(decision)}", f"decided by: {decided_by(source, decision)}"]
    if decision.readings > 1:
        lines.append(
            f"readings: {decision.readings} (repeated headers or list values); "
            "the trace is of the deciding one"
        )
    for step in decision.trace:
        lines.append(_step_text(source, step))
    return "\n".join(lines)


def _step_text(source: Source, step: RuleTrace) -> str:
    verdict = "fired" if step.fired else "did not fire"
    out = [f"  line {step.rule.span.line}: {_rule_text(source, step.rule)}  → {verdict}"]
    out.extend(f"      {_compare_text(source, c)}" for c in step.comparisons)
    return "\n".join(out)


def to_json(source: Source, decision: Decision) -> dict[str, Any]:
    def value(v: bytes | None) -> str | None:
        return None if v is None else v.decode("utf-8", "backslashreplace")

    return {
        "decision": decision.kind,
        "status": decision.status,
        "body": None if decision.allowed else value(decision.body),
        "headers": [[value(k), value(v)] for k, v in decision.headers],
        "rule": None
        if decision.rule is None
        else {"line": decision.rule.span.line, "source": _rule_text(source, decision.rule)},
        "default": decision.is_default,
        "refused": None
        if decision.refusal is None
        else {
            "reason": decision.refusal.body,
            "subject": None if decision.refusal.subject is None else decision.refusal.subject.label,
            "value": value(decision.refusal.value),
        },
        "readings": decision.readings,
        "trace": [
            {
                "line": step.rule.span.line,
                "source": _rule_text(source, step.rule),
                "fired": step.fired,
                "comparisons": [
                    {
                        "source": _rule_text(source, c.compare),
                        "subject": c.compare.subject.label,
                        "value": value(c.value),
                        "result": c.result,
                    }
                    for c in step.comparisons
                ],
            }
            for step in decision.trace
        ],
    }


# -- builds (`explain --mode dry-run`, `--shadow`) -------------------------------


def render_outcome(sources: tuple[Source, Source | None], outcome: rollout.Outcome) -> str:
    """The live decision and its trace; then what the build does, and the shadow's decision."""
    live, shadow_source = sources
    lines = []
    if outcome.allowed and not outcome.live.allowed:
        lines.append("mode: dry-run: the request goes through; the policy would deny it")
    lines.append(render_text(live, outcome.live))
    if outcome.shadow is not None and shadow_source is not None:
        assert outcome.comparison is not None
        lines.append(f"shadow {shadow_source.path}: {outcome.comparison.value}")
        lines.extend("  " + x for x in render_text(shadow_source, outcome.shadow).splitlines())
    return "\n".join(lines)


def outcome_json(sources: tuple[Source, Source | None], outcome: rollout.Outcome) -> dict[str, Any]:
    """`to_json` of the live decision, with what the build does and the shadow's decision."""
    live, shadow_source = sources
    out = to_json(live, outcome.live)
    out["decided_by"] = outcome.live_by
    out["let_through"] = outcome.allowed
    out["shadow"] = None
    if outcome.shadow is not None and shadow_source is not None:
        assert outcome.comparison is not None
        out["shadow"] = {
            "policy": shadow_source.path,
            "comparison": outcome.comparison.value,
            "decided_by": outcome.shadow_by,
            **to_json(shadow_source, outcome.shadow),
        }
    out["counters"] = dict(sorted(outcome.counters.items()))
    out["filter_state"] = {k: v.decode() for k, v in sorted(outcome.filter_state.items())}
    return out
