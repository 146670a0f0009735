"""Renders a decision and its trace for people (text) and programs (JSON)."""

from __future__ import annotations

from typing import Any

from hdrpolicy import rollout, semantics
from hdrpolicy.diagnostics import Source, visible
from hdrpolicy.evaluate import CompareTrace, Decision, RuleTrace
from hdrpolicy.frontend import ir
from hdrpolicy.semantics import Literals


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


def matched(c: CompareTrace) -> str | None:
    """The value of an `in`/`not in` list that the subject's value matched (None: none,
    or not a list): for `client`, the address range that holds the address."""
    meaning = semantics.comparison(c.compare).positive
    if meaning.literals is not Literals.LIST or c.value is None:
        return None
    for lit in c.compare.values:
        if semantics.holds(meaning, lit.value, c.compare.ignore_case, c.value):
            return lit.value
    return None


def _seen(c: CompareTrace) -> str:
    """The value a comparison judged, as the plug-in sees it (a query parameter decoded,
    a cookie's value, the client's address in `client`'s form), and for a list what
    matched: always for a named list, for a list in place when it is not the value."""
    cmp = c.compare
    seen = f"{cmp.subject.label} is {_show(c.value)}"
    if cmp.subject.kind is ir.SubjectKind.CLIENT and c.value == b"":
        seen += " (not an IP address)"
    if semantics.comparison(cmp).literals is not Literals.LIST or c.value is None:
        return seen
    found = matched(c)
    named = cmp.list_name
    if found is None:
        return f"{seen}; {named} has no match" if named else seen
    if named is None and found.encode() == c.value:
        return seen
    return f"{seen}; {named or 'the list'} has {_show(found.encode())}"


def _compare_text(source: Source, c: CompareTrace) -> str:
    return f"{_rule_text(source, c.compare)}  ({_seen(c)}) → {str(c.result).lower()}"


def outcome(decision: Decision) -> str:
    if decision.allowed:
        return "allow"
    return f"deny {decision.status} {_show(decision.body)}"


def decided_by(source: Source, decision: Decision) -> str:
    if decision.too_many_readings:
        return f"more than {decision.readings - 1} readings of repeated headers"
    refused = decision.refusal
    if refused is not None and refused.subject is not None:
        # A query parameter's refusal is of the whole query string: show the path it is in.
        subject = refused.subject
        label = "the path" if subject.kind is ir.SubjectKind.QUERY else subject.label
        return f"refused before any rule: {refused.body} ({label} is {_show(refused.value)})"
    if decision.rule is not None:
        return f"{source.path}:{decision.rule.span.line}: {_rule_text(source, decision.rule)}"
    if decision.is_default:
        return "the default"
    return "no rule fired"


def render_text(source: Source, decision: Decision) -> str:
    lines = [f"decision: {outcome(decision)}", f"decided by: {decided_by(source, decision)}"]
    if decision.readings > 1:
        lines.append(
            f"readings: {decision.readings} (repeated headers, query parameters or cookies, "
            "or list values); "
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
                        "list": c.compare.list_name,
                        "matched": matched(c),
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
