"""Suppressions: a comment that silences analysis findings on one rule, with a reason.

    # hdrpolicy: ignore HP404 — CORS preflight must pass before authentication
    allow when method == "OPTIONS"

    deny 403 "x" when header a matches "\\pL"  # hdrpolicy: ignore HP405 -- letters only

A suppression on its own line applies to the next statement; one after code
applies to the statement on that line.  It names one or more analysis codes
(HP401 to HP405) and must give a reason after `—`, `--`, `-` or `:`.  A
suppression that silences nothing is reported (HP406), so stale ones do not
pile up; a malformed one (no reason, a code that is not the analysis's) is
reported (HP407) and silences nothing.  Both are warnings, so `check --strict`
fails on them.

Comments are found in the source text, as `fmt` finds them (a `#` inside a
string is not a comment), so this needs nothing from the parser; `fmt` keeps
comments next to their statement, so a formatted file keeps its suppressions.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from hdrpolicy.codes import SUPPRESSIBLE
from hdrpolicy.diagnostics import Code, Diagnostic, Source, Span
from hdrpolicy.frontend import ir

# Strings first, so a `#` inside a string is never taken for a comment (as in `fmt`).
_TOKENS = re.compile(r'"(?:[^"\\\n]|\\[^\n])*"|#[^\n]*')
_DIRECTIVE = re.compile(r"#\s*hdrpolicy\s*:\s*ignore\b(.*)$", re.IGNORECASE)
_CODES = re.compile(r"\s*([A-Za-z]{2}\d{3}(?:\s*,\s*[A-Za-z]{2}\d{3})*)(.*)$")
_REASON = re.compile(r"\s*(?:\u2014|\u2013|--|-|:)?\s*(.*?)\s*$")
EXAMPLE = "# hdrpolicy: ignore HP404 — why this finding is fine"


@dataclass(frozen=True)
class Suppression:
    """`codes` are silenced on the statement spanning `lines`, because of `reason`."""

    codes: tuple[str, ...]
    reason: str
    span: Span  # the comment
    lines: tuple[int, int]  # the statement's first and last line


def collect(source: Source, policy: ir.Policy) -> tuple[list[Suppression], list[Diagnostic]]:
    """Every suppression comment in the source, and an HP407 for each malformed one."""
    statements = [(r.span.line, r.span.end_line) for r in policy.rules]
    if policy.default is not None:
        statements.append((policy.default.span.line, policy.default.span.end_line))
    statements.sort()
    found: list[Suppression] = []
    problems: list[Diagnostic] = []
    for m in _TOKENS.finditer(source.text):
        directive = _DIRECTIVE.match(m.group())
        if directive is None:
            continue
        span = source.span(m.start(), m.start() + len(m.group().rstrip()))

        def bad(message: str, span: Span = span) -> None:
            problems.append(
                Diagnostic(
                    Code.HP407,
                    Code.HP407.severity,
                    f"invalid suppression: {message}",
                    span,
                    f"write it as `{EXAMPLE}`",
                )
            )

        codes_match = _CODES.match(directive.group(1))
        if codes_match is None:
            bad("it names no diagnostic code")
            continue
        codes = tuple(c.strip().upper() for c in codes_match.group(1).split(","))
        wrong = [c for c in codes if c not in SUPPRESSIBLE]
        if wrong:
            bad(
                f"`{wrong[0]}` cannot be suppressed; only the analysis's findings "
                f"({', '.join(SUPPRESSIBLE)}) can"
            )
            continue
        reason_match = _REASON.match(codes_match.group(2))
        if reason_match is None or not reason_match.group(1):
            bad("a reason is required after the codes")
            continue
        line = span.line
        trailing = source.line_text(line)[: span.column - 1].strip() != ""
        target = next(
            (s for s in statements if (s[0] <= line <= s[1] if trailing else s[0] > line)),
            None,
        )
        if target is None:
            bad("no rule follows it")
            continue
        found.append(Suppression(codes, reason_match.group(1), span, target))
    return found, problems


def apply(
    suppressions: list[Suppression], findings: list[Diagnostic], complete: bool
) -> list[Diagnostic]:
    """The findings, those a suppression covers marked with its reason; plus HP406s.

    An unused suppression is only reported when the analysis ran to the end
    (`complete`): a finding it was meant for may simply not have been reached.
    """
    used: set[tuple[int, str]] = set()
    out = []
    for d in findings:
        for n, s in enumerate(suppressions):
            if d.code in s.codes and s.lines[0] <= d.span.line <= s.lines[1]:
                used.add((n, d.code))
                d = dataclasses.replace(d, suppression=s.reason)
                break
        out.append(d)
    if complete:
        for n, s in enumerate(suppressions):
            for code in s.codes:
                if (n, code) not in used:
                    out.append(
                        Diagnostic(
                            Code.HP406,
                            Code.HP406.severity,
                            f"unused suppression: the statement at line {s.lines[0]} has no "
                            f"{code} finding",
                            s.span,
                            "remove it (or the code) from the comment",
                        )
                    )
    return out
