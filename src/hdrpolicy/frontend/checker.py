"""Stage 3, check: assemble the IR and find every mistake before any Go is written.

All findings are collected, not raised; the policy is usable only if none of
them is an error.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from pathlib import PurePosixPath, PureWindowsPath
from typing import assert_never

from hdrpolicy import semantics
from hdrpolicy.diagnostics import Code, Diagnostic, Source, Span, did_you_mean
from hdrpolicy.frontend import ir
from hdrpolicy.frontend.goregexp import go_regex_error
from hdrpolicy.frontend.limits import (
    MAX_COMPARISONS,
    MAX_CONDITION_DEPTH,
    MAX_LIST_VALUES,
    MAX_PATTERN_CHARS,
    MAX_RULES,
    describe,
)
from hdrpolicy.frontend.lower import PolicyParts
from hdrpolicy.printer import policy_string

MIN_STATUS, MAX_STATUS = 200, 599
# RFC 9110 token characters: what an HTTP field name may consist of.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Metadata names (Kubernetes DNS-1123 label) and OCI repository components both accept this.
_POLICY_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# Bytes that cannot appear in a field value: controls other than HTAB, and DEL.
_BAD_VALUE_CHAR = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
PROXY_SET_HEADERS = {"content-length", "transfer-encoding"}
# Statuses whose responses carry no content (RFC 9110 §15.3.5, §15.3.6, §15.4.5).
# Envoy's local reply sends a body on them anyway, with a content-length
# (invalid; HTTP/2 clients see a protocol error), so a rule may not give one.
NO_BODY_STATUSES = frozenset({204, 205, 304})
_PSEUDO_SUBJECTS = semantics.pseudo_subjects()


# Reads a list file named as the policy writes it (relative to the policy file);
# raises OSError when it cannot.
ListReader = Callable[[str], bytes]


def list_file_values(source: Source) -> list[ir.StringLit]:
    """A list file's values: one a line, without surrounding spaces and tabs; blank
    lines and lines starting with `#` are skipped."""
    values = []
    offset = 0
    for line in source.text.split("\n"):
        stripped = line.strip(" \t")
        if stripped and not stripped.startswith("#"):
            start = offset + line.index(stripped)
            values.append(
                ir.StringLit(value=stripped, span=source.span(start, start + len(stripped)))
            )
        offset += len(line) + 1
    return values


class _Checker:
    def __init__(self, source: Source, read_list: ListReader) -> None:
        self.source = source
        self.read_list = read_list
        self.diagnostics: list[Diagnostic] = []
        # Named lists by name, and the file each list read from a file is in.
        self.lists: dict[str, ir.NamedList] = {}
        self.list_sources: dict[str, Source] = {}
        self.used: set[str] = set()

    def error(
        self,
        code: Code,
        message: str,
        span: Span,
        help: str | None = None,
        source: Source | None = None,
    ) -> None:
        self.diagnostics.append(
            Diagnostic(code, code.severity, message, span, help=help, source=source)
        )

    # -- statements ------------------------------------------------------------

    def assemble(self, parts: PolicyParts, default_name: str) -> ir.Policy:
        name, name_span = self._policy_name(parts, default_name)
        for i, (kind, span, _) in enumerate(parts.order):
            if kind == "policy" and i > 0:
                first_kind = parts.order[0][0]
                if first_kind != "policy":
                    self.error(
                        Code.HP212,
                        "`policy` must be the first statement of the file",
                        span,
                        help="move this line to the top of the file",
                    )
            if kind == "default" and i != len(parts.order) - 1:
                self.error(
                    Code.HP207,
                    "`default` must be the last statement of the file",
                    span,
                    help="rules after `default` would never run; move `default` to the end",
                )
        for extra in parts.defaults[1:]:
            self.error(
                Code.HP206, "duplicate `default`", extra.span, help="keep a single `default`"
            )
        self._unreachable(parts)
        named = [self.named_list(n) for n in parts.lists]
        rules = [self.resolve(rule) for rule in parts.rules]
        for n in named:
            if n.name not in self.used and self.lists.get(n.name) is n:
                self.error(
                    Code.HP217,
                    f"the list `{n.name}` is never used",
                    n.name_span or n.span,
                    help=f"use it as `in {n.name}`, or remove it",
                )
        parts.rules = rules
        if len(parts.rules) > MAX_RULES:
            self.error(
                Code.HP105,
                f"more than hdrpolicy's limit of {describe(MAX_RULES)} rules in one policy",
                parts.rules[MAX_RULES].span,
                help="split the policy into several plug-ins",
            )
        for rule in parts.rules:
            self.rule(rule)
        for response in parts.defaults:
            self.response(response)
        return ir.Policy(
            name=name,
            name_span=name_span,
            rules=parts.rules,
            default=parts.defaults[0] if parts.defaults else None,
            lists=named,
            span=self.source.span(0, len(self.source.text)),
        )

    # -- named lists -------------------------------------------------------------

    def named_list(self, named: ir.NamedList) -> ir.NamedList:
        """Check a `list` statement and read its file; the list with its values."""
        span = named.name_span or named.span
        if named.name in self.lists:
            first = self.lists[named.name]
            self.error(
                Code.HP218,
                f"the list `{named.name}` is already declared at line {first.span.line}",
                span,
                help="rename one of the lists, or merge them",
            )
            return named
        source = None
        if named.file is not None:
            source = self._list_source(named)
            if source is None:
                self.lists[named.name] = named
                return named
            named = named.model_copy(update={"values": list_file_values(source)})
            self.list_sources[named.name] = source
        if len(named.values) > MAX_LIST_VALUES:
            self.error(
                Code.HP105,
                f"the list `{named.name}` has more than hdrpolicy's limit of "
                f"{describe(MAX_LIST_VALUES)} values",
                named.values[MAX_LIST_VALUES].span,
                help="split it into several lists",
                source=source,
            )
            named = named.model_copy(update={"values": named.values[:MAX_LIST_VALUES]})
        self.lists[named.name] = named
        if not named.values and named.file is not None:
            self.error(
                Code.HP209,
                f"the list file `{named.file}` has no values: every line is blank or a comment",
                named.file_span or named.span,
                help="`in` an empty list is never true; write one value a line",
            )
        elif not named.values:
            self.error(
                Code.HP209,
                f"the list `{named.name}` is empty",
                named.span,
                help="`in` an empty list is never true; list at least one value",
            )
        seen: dict[str, ir.StringLit] = {}
        for lit in named.values:
            if lit.value in seen:
                self.error(
                    Code.HP223,
                    f"{policy_string(lit.value)} is already in the list `{named.name}` "
                    f"(line {seen[lit.value].span.line})",
                    lit.span,
                    help="remove the repeated value",
                    source=source,
                )
            seen.setdefault(lit.value, lit)
        return named

    def _list_source(self, named: ir.NamedList) -> Source | None:
        assert named.file is not None
        span = named.file_span or named.span
        if PurePosixPath(named.file).is_absolute() or PureWindowsPath(named.file).is_absolute():
            self.error(
                Code.HP219,
                f"the list file `{named.file}` is an absolute path",
                span,
                help="give its path relative to the policy file, so the policy reads the "
                "same list on every machine",
            )
            return None
        # Shown beside the policy file, as the user would open it.
        shown = str(PurePosixPath(self.source.path).parent / named.file)
        try:
            raw = self.read_list(named.file)
        except OSError as exc:
            self.error(
                Code.HP219,
                f"cannot read the list file `{named.file}`: {exc.strerror or exc}",
                span,
                help=f"the path is relative to the policy file: `{shown}`",
            )
            return None
        source, problems = Source.decode(shown, raw)
        if problems:
            where = problems[0].span
            self.error(
                Code.HP219,
                f"the list file `{named.file}` is not valid UTF-8 at line {where.line}, "
                f"column {where.column}",
                span,
                help="save the list file as UTF-8",
            )
            return None
        return source

    def resolve(self, rule: ir.Rule) -> ir.Rule:
        """The rule with each `in NAME` given the list's values."""
        if rule.condition is None:
            return rule
        if not any(c.list_name is not None for c in ir.comparisons(rule.condition)):
            return rule
        return rule.model_copy(update={"condition": self._resolve(rule.condition)})

    def _resolve(self, cond: ir.Condition) -> ir.Condition:
        match cond:
            case ir.Compare():
                if cond.list_name is None:
                    return cond
                named = self.lists.get(cond.list_name)
                if named is None and self._declared_in_text(cond.list_name):
                    return cond  # its `list` statement has a syntax error, reported already
                if named is None:
                    guess = did_you_mean(cond.list_name, self.lists)
                    self.error(
                        Code.HP216,
                        f"no list is named `{cond.list_name}`",
                        cond.list_span or cond.span,
                        help=f"did you mean `{guess}`?"
                        if guess
                        else f'declare it: `list {cond.list_name} = ["…"]`',
                    )
                    return cond
                self.used.add(named.name)
                return cond.model_copy(update={"values": list(named.values)})
            case ir.Not():
                return cond.model_copy(update={"operand": self._resolve(cond.operand)})
            case ir.And() | ir.Or():
                return cond.model_copy(
                    update={"operands": [self._resolve(op) for op in cond.operands]}
                )
            case _:
                assert_never(cond)

    def _declared_in_text(self, name: str) -> bool:
        """Whether a line starts `list NAME` (a statement the parser could not read)."""
        declared = rf"^[ \t]*list[ \t]+{re.escape(name)}(?![A-Za-z0-9_-])"
        return re.search(declared, self.source.text, re.MULTILINE) is not None

    def _policy_name(self, parts: PolicyParts, default_name: str) -> tuple[str, Span | None]:
        for _, span in parts.names[1:]:
            self.error(Code.HP205, "duplicate `policy`", span, help="a file names one plug-in")
        if parts.names:
            name, span = parts.names[0]
            if not _POLICY_NAME.match(name):
                self.error(
                    Code.HP211,
                    f"invalid policy name `{name}`",
                    span,
                    help=_name_help(name),
                )
            return name, span
        if not _POLICY_NAME.match(default_name):
            self.error(
                Code.HP211,
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
                    Code.HP208,
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
            self.condition_size(rule.condition)
            for cmp in ir.comparisons(rule.condition):
                self.compare(cmp)

    def condition_size(self, cond: ir.Condition) -> None:
        """Refuse a condition beyond the limits every later stage is built for."""
        too_deep = ir.nested_beyond(cond, MAX_CONDITION_DEPTH)
        if too_deep is not None:
            self.error(
                Code.HP105,
                f"`not`, `and` and `or` nest deeper than hdrpolicy's limit of "
                f"{MAX_CONDITION_DEPTH} levels",
                too_deep.span,
                help="simplify the condition (`not not x` is `x`), or split the rule",
            )
        compares = ir.comparisons(cond)
        if len(compares) > MAX_COMPARISONS:
            self.error(
                Code.HP105,
                f"more than hdrpolicy's limit of {describe(MAX_COMPARISONS)} comparisons "
                "in one condition",
                compares[MAX_COMPARISONS].span,
                help="use `in [...]` for many values of one subject, or split the rule",
            )

    def response(self, response: ir.Response) -> None:
        if not MIN_STATUS <= response.status <= MAX_STATUS:
            self.error(
                Code.HP203,
                f"status {response.status} is out of range",
                response.status_span or response.span,
                help=f"a deny status is between {MIN_STATUS} and {MAX_STATUS}",
            )
        if response.body_text and response.status in NO_BODY_STATUSES:
            assert response.body is not None
            self.error(
                Code.HP215,
                f"a {response.status} response cannot carry a body",
                response.body.span,
                help=f"remove the body; Envoy would send it with the {response.status}, "
                "which clients reject",
            )
        for header in response.headers:
            span = header.name_span or header.span
            if self.header_name(header.name, span) and header.name in PROXY_SET_HEADERS:
                self.error(
                    Code.HP214,
                    f"`{header.name}` is set by the proxy and cannot be set by a rule",
                    span,
                )
            elif header.name == "content-type" and not response.body_text:
                self.error(
                    Code.HP215,
                    "`content-type` on a response without a body is never sent",
                    span,
                    help="Envoy drops `content-type` from a local reply with an empty body; "
                    "give the response a body or remove the header",
                )
            self.header_value(header.value, "a response header value")

    # -- conditions --------------------------------------------------------------

    def compare(self, cmp: ir.Compare) -> None:
        subject = cmp.subject
        subject_meaning = semantics.subject(subject.kind)
        if subject.kind is ir.SubjectKind.QUERY:
            assert subject.name is not None
            if not subject.name:
                self.error(
                    Code.HP201,
                    "a query parameter's name cannot be empty",
                    subject.name_span or subject.span,
                    help='name the parameter: `query page`, or `query "a name"` for a name '
                    "with spaces or other characters",
                )
        elif subject.kind is ir.SubjectKind.COOKIE:
            assert subject.name is not None
            self.name(subject.name, subject.name_span or subject.span, "cookie name")
        elif not subject.is_pseudo:
            assert subject.name is not None
            span = subject.name_span or subject.span
            if subject.name in _PSEUDO_SUBJECTS:
                replacement = _PSEUDO_SUBJECTS[subject.name]
                why = (
                    "the client address is not a header"
                    if subject.name == ir.CLIENT_ADDRESS
                    else "Envoy passes it as a pseudo-header"
                )
                self.error(
                    Code.HP210,
                    f"`header {subject.name}` never matches: {why}",
                    span,
                    help=f"use the subject `{replacement}`",
                )
            else:
                self.header_name(subject.name, span)
        meaning = semantics.comparison(cmp)
        allowed = subject_meaning.operators
        if allowed is not None and cmp.op not in allowed:
            ops = " and ".join(f"`{op.value}`" for op in sorted(allowed, key=list(ir.Op).index))
            self.error(
                Code.HP220,
                f"`{subject_meaning.spelling}` cannot be compared with `{meaning.text}`",
                cmp.op_span or cmp.span,
                help=f"`{subject_meaning.spelling}` takes {ops}"
                + (
                    ' with address ranges: `client in ["10.0.0.0/8"]`'
                    if meaning.networks or subject.kind is ir.SubjectKind.CLIENT
                    else ""
                ),
            )
            return
        source = self.list_sources.get(cmp.list_name or "")
        if meaning.literals is semantics.Literals.LIST and not cmp.values and not cmp.list_name:
            self.error(
                Code.HP209,
                "empty list",
                cmp.span,
                help="`in []` is never true; list at least one value",
            )
        if cmp.ignore_case and not meaning.ignore_case and meaning.networks:
            self.error(
                Code.HP213,
                f"`ignoring case` does not apply to `{subject.label}`: it compares addresses",
                cmp.span,
                help="remove `ignoring case`",
            )
        elif cmp.ignore_case and not meaning.ignore_case:
            self.error(
                Code.HP213,
                f"`ignoring case` does not apply to `{meaning.text}`",
                cmp.span,
                help="start the pattern with `(?i)` instead" if meaning.pattern else None,
            )
        if meaning.networks:
            for lit in cmp.values:
                self.address_range(lit, source)
            return
        if meaning.pattern:
            for lit in cmp.values:
                if len(lit.value) > MAX_PATTERN_CHARS:
                    self.error(
                        Code.HP105,
                        f"the pattern is longer than hdrpolicy's limit of "
                        f"{describe(MAX_PATTERN_CHARS)} characters",
                        lit.span,
                        help="match a shorter pattern, or split it over several rules",
                    )
                    continue
                reason = go_regex_error(lit.value)
                if reason is not None:
                    self.error(
                        Code.HP204,
                        f"invalid regular expression: {reason}",
                        lit.span,
                        help="patterns use Go's `regexp` (RE2) syntax",
                    )
            return
        never = subject_meaning.never
        for lit in cmp.values:
            if subject.kind is not ir.SubjectKind.QUERY:
                # A query parameter's value is decoded: it may hold any character.
                self.header_value(lit, f"a value of `{subject.label}`", source)
            # A literal the normalised value can never hold makes the comparison dead.
            for message, help in never(lit.value, meaning, cmp.ignore_case):
                self.error(Code.HP210, message, lit.span, help=help, source=source)

    def address_range(self, lit: ir.StringLit, source: Source | None) -> None:
        """A CIDR (or one address): refused when it is not one, warned of with host bits."""
        try:
            network = semantics.network(lit.value)
        except ValueError as exc:
            self.error(
                Code.HP221,
                f"{policy_string(lit.value)} is not an address range: "
                f"{_range_problem(lit.value) or exc}",
                lit.span,
                help="write a CIDR such as 10.0.0.0/8 or 2001:db8::/32, or one address",
                source=source,
            )
            return
        if network.network_address != ipaddress.ip_address(lit.value.partition("/")[0]):
            self.error(
                Code.HP222,
                f"{policy_string(lit.value)} has host bits set: it means {network}",
                lit.span,
                help=f'write "{network}"',
                source=source,
            )

    def name(self, name: str, span: Span, what: str) -> bool:
        if _TOKEN.match(name):
            return True
        bad = next((ch for ch in name if not _TOKEN.match(ch)), None)
        self.error(
            Code.HP201,
            f"invalid {what} `{name}`: {_describe_char(bad)} is not allowed"
            if bad is not None
            else f"the {what} cannot be empty",
            span,
            help=f"{what}s are HTTP tokens: letters, digits and !#$%&'*+-.^_`|~",
        )
        return False

    def header_name(self, name: str, span: Span) -> bool:
        return self.name(name, span, "header name")

    def header_value(self, lit: ir.StringLit, what: str, source: Source | None = None) -> None:
        m = _BAD_VALUE_CHAR.search(lit.value)
        if m:
            self.error(
                Code.HP202,
                f"{what} cannot contain {_describe_char(m.group())}",
                lit.span,
                help="header values cannot hold CR, LF or other control characters",
                source=source,
            )


def _range_problem(text: str) -> str | None:
    """Why a literal is not a CIDR or an address, in the user's terms (None: ask Python)."""
    address, slash, prefix = text.partition("/")
    if text != text.strip():
        return "it has surrounding spaces"
    if "%" in address:
        return "an address with a zone (`%…`) names an interface, not a range"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        if re.fullmatch(r"[0-9.]+", address) and re.search(r"(^|\.)0[0-9]", address):
            return f"`{address}` has a leading zero, which some tools read as octal"
        return f"`{address}` is not an IP address"
    if not slash:
        return None
    if not prefix.isdigit():
        return f"the prefix length `{prefix}` is not a number"
    if int(prefix) > parsed.max_prefixlen:
        return f"an IPv{parsed.version} prefix length is at most {parsed.max_prefixlen}"
    return None


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
    parts: PolicyParts, source: Source, default_name: str, read_list: ListReader
) -> tuple[ir.Policy, list[Diagnostic]]:
    """Assemble the policy from its statements and check it; `read_list` reads the
    list files it names (`pipeline.files_beside`; `fmt` gives one that reads none)."""
    checker = _Checker(source, read_list)
    policy = checker.assemble(parts, default_name)
    # A list's value is checked where the list is used: report each problem once.
    unique: dict[tuple[object, ...], Diagnostic] = {}
    for d in checker.diagnostics:
        where = d.source.path if d.source is not None else None
        unique.setdefault((d.code, d.message, d.span, where), d)
    return policy, list(unique.values())


def is_token(text: str) -> bool:
    """An RFC 9110 token, as header names and methods are (the CLI checks its options)."""
    return _TOKEN.match(text) is not None
