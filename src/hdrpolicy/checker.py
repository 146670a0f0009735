"""Stage 3, check: assemble the IR and find every mistake before any Go is written.

All findings are collected, not raised; the policy is usable only if none of
them is an error.
"""

from __future__ import annotations

import re

import re2

from hdrpolicy import ir
from hdrpolicy.diagnostics import Diagnostic, Severity, Source, Span
from hdrpolicy.lower import PolicyParts
from hdrpolicy.printer import policy_string

MIN_STATUS, MAX_STATUS = 200, 599
# RFC 9110 token characters: what an HTTP field name may consist of.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Metadata names (Kubernetes DNS-1123 label) and OCI repository components both accept this.
_POLICY_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# Bytes that cannot appear in a field value: controls other than HTAB, and DEL.
_BAD_VALUE_CHAR = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_PROXY_SET_HEADERS = {"content-length", "transfer-encoding"}
_PSEUDO_SUBJECTS = {":path": "path", ":method": "method", ":authority": "host", "host": "host"}


def _re2_options() -> object:
    options = re2.Options()
    options.log_errors = False
    return options


def go_regex_error(pattern: str) -> str | None:
    """Why Go's `regexp` would reject `pattern`, or None.

    Go's syntax is RE2's; RE2 additionally accepts `\\C` (any byte), which Go rejects.
    """
    if re.search(r"(?<!\\)(\\\\)*\\C", pattern):
        return "invalid escape sequence: `\\C`"
    try:
        re2.compile(pattern, _re2_options())
    except re2.error as exc:
        detail = exc.args[0]
        return detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
    return None


class _Checker:
    def __init__(self, source: Source) -> None:
        self.source = source
        self.diagnostics: list[Diagnostic] = []

    def error(self, code: str, message: str, span: Span, help: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(code, Severity.ERROR, message, span, help=help))

    # -- statements ------------------------------------------------------------

    def assemble(self, parts: PolicyParts, default_name: str) -> ir.Policy:
        name, name_span = self._policy_name(parts, default_name)
        for i, (kind, span, _) in enumerate(parts.order):
            if kind == "policy" and i > 0:
                first_kind = parts.order[0][0]
                if first_kind != "policy":
                    self.error(
                        "HP212",
                        "`policy` must be the first statement of the file",
                        span,
                        help="move this line to the top of the file",
                    )
            if kind == "default" and i != len(parts.order) - 1:
                self.error(
                    "HP207",
                    "`default` must be the last statement of the file",
                    span,
                    help="rules after `default` would never run; move `default` to the end",
                )
        for extra in parts.defaults[1:]:
            self.error("HP206", "duplicate `default`", extra.span, help="keep a single `default`")
        self._unreachable(parts)
        for rule in parts.rules:
            self.rule(rule)
        for response in parts.defaults:
            self.response(response)
        return ir.Policy(
            name=name,
            name_span=name_span,
            rules=parts.rules,
            default=parts.defaults[0] if parts.defaults else None,
            span=self.source.span(0, len(self.source.text)),
        )

    def _policy_name(self, parts: PolicyParts, default_name: str) -> tuple[str, Span | None]:
        for _, span in parts.names[1:]:
            self.error("HP205", "duplicate `policy`", span, help="a file names one plug-in")
        if parts.names:
            name, span = parts.names[0]
            if not _POLICY_NAME.match(name):
                self.error(
                    "HP211",
                    f"invalid policy name `{name}`",
                    span,
                    help=_name_help(name),
                )
            return name, span
        if not _POLICY_NAME.match(default_name):
            self.error(
                "HP211",
                f"the file name gives the invalid policy name `{default_name}`",
                self.source.span(0, 0),
                help=f'add a first line `policy "{_suggest_name(default_name)}"`',
            )
        return default_name, None

    def _unreachable(self, parts: PolicyParts) -> None:
        blocking: ir.Rule | None = None
        for kind, span, value in parts.order:
            if kind == "policy":
                continue
            if blocking is not None:
                what = "default" if kind == "default" else "rule"
                self.error(
                    "HP208",
                    f"unreachable {what}: the rule at line {blocking.span.line} "
                    "always decides first",
                    span,
                    help="remove it, or give the earlier rule a `when` or `unless` condition",
                )
                continue
            if kind == "rule" and value.unconditional:
                blocking = value

    def rule(self, rule: ir.Rule) -> None:
        if rule.response is not None:
            self.response(rule.response)
        if rule.condition is not None:
            for cmp in ir.comparisons(rule.condition):
                self.compare(cmp)

    def response(self, response: ir.Response) -> None:
        if not MIN_STATUS <= response.status <= MAX_STATUS:
            self.error(
                "HP203",
                f"status {response.status} is out of range",
                response.status_span or response.span,
                help=f"a deny status is between {MIN_STATUS} and {MAX_STATUS}",
            )
        for header in response.headers:
            span = header.name_span or header.span
            if self.header_name(header.name, span) and header.name in _PROXY_SET_HEADERS:
                self.error(
                    "HP214",
                    f"`{header.name}` is set by the proxy and cannot be set by a rule",
                    span,
                )
            self.header_value(header.value, "a response header value")

    # -- conditions --------------------------------------------------------------

    def compare(self, cmp: ir.Compare) -> None:
        subject = cmp.subject
        if subject.kind is ir.SubjectKind.HEADER:
            assert subject.name is not None
            span = subject.name_span or subject.span
            if subject.name in _PSEUDO_SUBJECTS:
                replacement = _PSEUDO_SUBJECTS[subject.name]
                self.error(
                    "HP210",
                    f"`header {subject.name}` never matches: Envoy passes it as a pseudo-header",
                    span,
                    help=f"use the subject `{replacement}`",
                )
            else:
                self.header_name(subject.name, span)
        if cmp.op in (ir.Op.IN, ir.Op.NOT_IN) and not cmp.values:
            self.error(
                "HP209",
                "empty list",
                cmp.span,
                help="`in []` is never true; list at least one value",
            )
        if cmp.op is ir.Op.MATCHES:
            if cmp.ignore_case:
                self.error(
                    "HP213",
                    "`ignoring case` does not apply to `matches`",
                    cmp.span,
                    help="start the pattern with `(?i)` instead",
                )
            for lit in cmp.values:
                reason = go_regex_error(lit.value)
                if reason is not None:
                    self.error(
                        "HP204",
                        f"invalid regular expression: {reason}",
                        lit.span,
                        help="patterns use Go's `regexp` (RE2) syntax",
                    )
            return
        for lit in cmp.values:
            self.header_value(lit, f"a value of `{subject.label}`")
            self.never_seen(cmp, lit)
            if (
                subject.kind is ir.SubjectKind.HOST
                and not cmp.ignore_case
                and lit.value != lit.value.lower()
            ):
                self.error(
                    "HP210",
                    f"`host` is compared in lower case, so `{lit.value}` never matches",
                    lit.span,
                    help=f'write "{lit.value.lower()}"',
                )

    def never_seen(self, cmp: ir.Compare, lit: ir.StringLit) -> None:
        """A literal the normalised value can never hold makes the comparison dead."""
        value, kind = lit.value, cmp.subject.kind
        whole = cmp.op in (ir.Op.EQ, ir.Op.NE, ir.Op.IN, ir.Op.NOT_IN)
        if kind is ir.SubjectKind.PATH and "?" in value:
            self.error(
                "HP210",
                "`path` never contains `?`: it is compared without its query string",
                lit.span,
                help="compare the path only; the query string is not part of it",
            )
        elif kind is ir.SubjectKind.HOST and re.search(r":[0-9]*$", value) and whole:
            self.error(
                "HP210",
                f"`host` is compared without its port, so `{value}` never matches",
                lit.span,
                help=f'write "{value.rsplit(":", 1)[0]}"',
            )
        elif value != value.strip(" \t") and (
            whole
            or (cmp.op is ir.Op.STARTS_WITH and value[:1] in " \t")
            or (cmp.op is ir.Op.ENDS_WITH and value[-1:] in " \t")
        ):
            self.error(
                "HP210",
                f"values are compared without leading and trailing spaces, "
                f"so {policy_string(value)} never matches",
                lit.span,
                help=f"write {policy_string(value.strip(' ' + chr(9)))}",
            )

    def header_name(self, name: str, span: Span) -> bool:
        if _TOKEN.match(name):
            return True
        bad = next(ch for ch in name if not _TOKEN.match(ch))
        self.error(
            "HP201",
            f"invalid header name `{name}`: {_describe_char(bad)} is not allowed",
            span,
            help="header names are HTTP tokens: letters, digits and !#$%&'*+-.^_`|~",
        )
        return False

    def header_value(self, lit: ir.StringLit, what: str) -> None:
        m = _BAD_VALUE_CHAR.search(lit.value)
        if m:
            self.error(
                "HP202",
                f"{what} cannot contain {_describe_char(m.group())}",
                lit.span,
                help="header values cannot hold CR, LF or other control characters",
            )


def _describe_char(ch: str) -> str:
    names = {"\r": "CR", "\n": "LF", "\x00": "NUL", "\x7f": "DEL", " ": "a space"}
    if ch in names:
        return names[ch]
    if ch.isprintable():
        return f"`{ch}`"
    return f"U+{ord(ch):04X}"


def _suggest_name(name: str) -> str:
    cleaned = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    return cleaned or "policy"


def _name_help(name: str) -> str:
    return (
        "a policy name is lower-case letters, digits and `-` (at most 63), "
        f'e.g. "{_suggest_name(name)}"'
    )


def check(
    parts: PolicyParts, source: Source, default_name: str
) -> tuple[ir.Policy, list[Diagnostic]]:
    """Assemble the policy from its statements and check it."""
    checker = _Checker(source)
    policy = checker.assemble(parts, default_name)
    return policy, checker.diagnostics


def is_token(text: str) -> bool:
    """An RFC 9110 token, as header names and methods are (the CLI checks its options)."""
    return _TOKEN.match(text) is not None
