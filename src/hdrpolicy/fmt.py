"""Format: a checked policy back to source text in the one canonical layout.

The layout is printed from the IR, so formatting cannot change what a policy
means (the IR before and after is equal).  Only comments and blank lines are
not in the IR; they are found by scanning the source and put back next to the
statement they were next to.

Canonical layout:

* `policy` first, then one blank line; one statement per line;
* single spaces between tokens, operators as `==`, `!=`, `in`, `not in`, …;
  lists as `["a", "b"]`; strings re-quoted by `printer.policy_string`;
  header names in lower case;
* parentheses only where precedence needs them;
* a statement longer than `MAX_WIDTH` columns whose condition is an `and` or
  an `or` is broken before each of its top-level `and`/`or`, continuation lines
  indented by four spaces;
* comments stay where they were: an own-line comment above the statement
  after it, a trailing comment after its statement (two spaces before `#`);
  a rule with comments inside it is broken before each top-level `and`/`or`
  (as a long one is), each comment staying after, or on its own line before,
  the part of the condition it was next to;
* `list NAME = ["a", "b"]` on one line; a longer one (or one with comments
  inside) one value a line, indented, each followed by `,`, then `]` alone;
  `list NAME from "FILE"` as written (`fmt` never reads list files);
  a comparison written `in NAME` stays `in NAME`;
* blank lines between statements collapse to at most one;
* lines end with LF, or CRLF in a file whose every line ends with CRLF (a lone
  CR ends a line too, and becomes LF).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol, assert_never

from hdrpolicy import semantics
from hdrpolicy.diagnostics import Code, Diagnostic, Source, Span, has_errors, visible
from hdrpolicy.frontend import ir
from hdrpolicy.frontend.pipeline import check_source
from hdrpolicy.printer import policy_string
from hdrpolicy.semantics import Literals

MAX_WIDTH = 100
INDENT = "    "

# Strings first, so a `#` inside a string is never taken for a comment.
_TOKENS = re.compile(r'"(?:[^"\\\n]|\\[^\n])*"|#[^\n]*')


@dataclass
class Formatted:
    """The result of formatting one file: the new text, or why there is none."""

    source: Source
    text: str | None
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.text is not None and self.text != self.source.original

    def diff(self) -> str | None:
        """A unified diff from the file to its formatted text; None if it is formatted."""
        if self.text is None or not self.changed:
            return None
        return "".join(
            difflib.unified_diff(
                _lines(self.source.original),
                _lines(self.text),
                fromfile=self.source.path,
                tofile=f"{self.source.path} (formatted)",
            )
        )


def format_source(text: str, path: str = "<input>", default_name: str = "policy") -> Formatted:
    """Format policy text; a file with errors is refused (text None, the diagnostics).

    List files are never read: formatting is about this file's layout, so it
    works on a policy whose list file is missing or elsewhere (`check` reports
    an unreadable list file, HP219; the values in it do not change the layout).
    """
    source = Source(path, text)
    checked = check_source(source, default_name, _unread)
    diagnostics = [d for d in checked.diagnostics if d.code is not Code.HP219]
    if checked.policy is None or has_errors(diagnostics):
        return Formatted(source, None, diagnostics)
    text = _layout(checked.policy, source).replace("\n", source.newline)
    return Formatted(source, text, diagnostics)


def _unread(name: str) -> bytes:
    """The list reader `fmt` gives the checker: it reads nothing (see `format_source`)."""
    raise OSError(f"`fmt` does not read list files (`{name}`)")


def _lines(text: str) -> list[str]:
    """Lines as the lexer sees them (after LF, CRLF or a lone CR), shown for a diff.

    Each ends with LF; a CR shows as `\\r`, so a changed line ending is a
    visible change and never moves the terminal's cursor.
    """
    lines = [
        visible(m.group(1)) + ("\\r" if "\r" in m.group(2) else "") + "\n"
        for m in re.finditer(r"([^\r\n]*)(\r\n|\r|\n|$)", text)
        if m.group(0)
    ]
    if text and text[-1] not in "\r\n":
        lines.append("\\ No newline at end of file\n")
    return lines


def format_file(path: Path) -> Formatted:
    """Read and format a policy file (the caller handles OSError)."""
    source, read_diags = Source.read(path)
    if read_diags:
        return Formatted(source, None, read_diags)
    return format_source(source.text, str(path), path.stem)


def format_stdin(raw: bytes) -> Formatted:
    """Format policy text read from standard input (`fmt -`)."""
    source, read_diags = Source.decode("<stdin>", raw)
    if read_diags:
        return Formatted(source, None, read_diags)
    return format_source(source.text, source.path)


def check_formatted(path: Path) -> str | None:
    """The diff `fmt` would apply to `path`, or None when it is formatted.

    A file with errors has no formatted text, so no diff either: callers that
    must fail on those use `format_file` and look at its diagnostics.
    """
    return format_file(path).diff()


def format_policy(policy: ir.Policy, *, named: bool = True) -> str:
    """A policy's canonical text without comments (`named`: write its `policy` line)."""
    out = [f"policy {policy_string(policy.name)}", ""] if named else []
    for named_list in policy.lists:
        out.extend(list_lines(named_list))
    for rule in policy.rules:
        out.extend(rule_lines(rule))
    if policy.default is not None:
        out.extend(default_lines(policy.default))
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n" if out else ""


# -- statements ------------------------------------------------------------------


@dataclass
class _Item:
    """A statement or an own-line comment, with the source lines it covered."""

    first_line: int
    last_line: int
    lines: list[str]
    trailing: list[str] = field(default_factory=list)
    # Comments inside a multi-line rule: after line i, or on their own line above it.
    after: dict[int, list[str]] = field(default_factory=dict)
    above: dict[int, list[str]] = field(default_factory=dict)
    is_policy: bool = False
    key: tuple[int, int, int] = (0, 0, 0)

    def __post_init__(self) -> None:
        if self.key == (0, 0, 0):
            self.key = (self.first_line, 1, self.first_line)


def _layout(policy: ir.Policy, source: Source) -> str:
    statements: list[_Item] = []
    if policy.name_span is not None:
        keyword = source.text.rfind("policy", 0, policy.name_span.start)
        first = source.position(keyword)[0]
        statements.append(
            _Item(
                first,
                policy.name_span.end_line,
                [f"policy {policy_string(policy.name)}"],
                is_policy=True,
            )
        )
    placed: set[int] = set()
    for named_list in policy.lists:
        statements.append(
            _commented_item(named_list.span, source, placed, partial(_list_layout, named_list))
        )
    for rule in policy.rules:
        statements.append(_commented_item(rule.span, source, placed, partial(_rule_layout, rule)))
    if policy.default is not None:
        d = policy.default
        statements.append(_Item(d.span.line, d.span.end_line, default_lines(d)))
    items = _attach_comments(statements, source, placed)
    return _join(items, source)


def _comments(source: Source, start: int, end: int) -> list[tuple[int, str]]:
    """(offset, text) of each comment that starts between two offsets."""
    return [
        (m.start(), m.group().rstrip())
        for m in _TOKENS.finditer(source.text)
        if m.group().startswith("#") and start <= m.start() < end
    ]


class _Layout(Protocol):
    """A statement's lines (broken into its parts even if short when asked), and
    where each line starts in the source."""

    def __call__(self, *, broken: bool) -> tuple[list[str], list[int]]: ...


def _commented_item(span: Span, source: Source, placed: set[int], layout: _Layout) -> _Item:
    """A statement's lines (a rule, a list), with the comments inside it kept next to
    the code they were next to.

    Comments on its last line trail the whole statement (`_attach_comments`);
    the others are inside it, and the statement is broken into its parts.  A
    comment after code stays after the line holding the part it followed; one
    on its own line goes above the line holding the part it preceded, or above
    the statement if that part has no line of its own.
    """
    last_line_start = source.text.rfind("\n", 0, span.end) + 1
    inside = _comments(source, span.start, min(span.end, last_line_start))
    lines, starts = layout(broken=bool(inside))
    item = _Item(span.line, span.end_line, lines)
    for offset, text in inside:
        if _after_statement(source, offset):
            i = max(i for i, start in enumerate(starts) if start <= offset)
            item.after.setdefault(i, []).append(text)
        else:
            i = next((i for i, start in enumerate(starts) if start > offset), 0)
            if i == 0:
                continue  # left to `_attach_comments`: above the rule
            item.above.setdefault(i, []).append(text)
        placed.add(offset)
    return item


def _attach_comments(statements: list[_Item], source: Source, placed: set[int]) -> list[_Item]:
    """Merge comments into the statement list: trailing ones onto their statement."""
    by_end_line = {s.last_line: s for s in statements}
    items = list(statements)
    for m in _TOKENS.finditer(source.text):
        text = m.group()
        if not text.startswith("#") or m.start() in placed:
            continue
        line = source.position(m.start())[0]
        owner = by_end_line.get(line)
        if owner is not None and _after_statement(source, m.start()):
            owner.trailing.append(text.rstrip())
            continue
        comment = _Item(line, line, [text.rstrip()], key=(line, 0, line))
        inside = next((s for s in statements if s.first_line <= line <= s.last_line), None)
        if inside is not None:
            # Inside a multi-line statement: it moves just above the statement.
            comment.key = (inside.first_line, 0, line)
        items.append(comment)
    return sorted(items, key=lambda i: i.key)


def _after_statement(source: Source, offset: int) -> bool:
    """True if a comment follows code on its own line (so it trails that code)."""
    start = source.text.rfind("\n", 0, offset) + 1
    return source.text[start:offset].strip() != ""


def _join(items: list[_Item], source: Source) -> str:
    out: list[str] = []
    previous: _Item | None = None
    for item in items:
        if previous is not None and (previous.is_policy or _blank_between(previous, item, source)):
            out.append("")
        lines = list(item.lines)
        for i, texts in item.after.items():
            lines[i] += "  " + " ".join(texts)
        if item.trailing:
            lines[-1] = lines[-1] + "  " + " ".join(item.trailing)
        for i, line in enumerate(lines):
            out.extend(INDENT + text for text in item.above.get(i, []))
            out.append(line)
        previous = item
    return "\n".join(out) + "\n" if out else ""


def _blank_between(a: _Item, b: _Item, source: Source) -> bool:
    """Did the source have a blank line between two consecutive items?"""
    end, start = a.last_line, b.first_line
    if start <= end:
        return False
    return any(source.line_text(n).strip() == "" for n in range(end + 1, start))


# -- printing --------------------------------------------------------------------


def response_text(response: ir.Response) -> str:
    head, assigns = _response_parts(response)
    return f"{head} {assigns}" if assigns else head


def _response_parts(response: ir.Response) -> tuple[str, str | None]:
    """`STATUS "BODY"` and, if the rule sets headers, `with header … = …, …`."""
    parts = [str(response.status)]
    if response.body is not None:
        parts.append(policy_string(response.body.value))
    assigns = None
    if response.headers:
        assigns = "with " + ", ".join(
            f"header {h.name} = {policy_string(h.value.value)}" for h in response.headers
        )
    return " ".join(parts), assigns


def list_lines(named: ir.NamedList) -> list[str]:
    """A `list` statement: on one line, or, if too long, one value a line."""
    return _list_layout(named, broken=False)[0]


def _list_layout(named: ir.NamedList, *, broken: bool) -> tuple[list[str], list[int]]:
    """`list_lines`, broken even if short when `broken`; and where each line starts in
    the source (the statement, each value, the closing `]`)."""
    head = f"list {named.name}"
    if named.file is not None:
        return [f"{head} from {policy_string(named.file)}"], [named.span.start]
    values = [policy_string(v.value) for v in named.values]
    one_line = f"{head} = [{', '.join(values)}]"
    if len(one_line) <= MAX_WIDTH and not broken:
        return [one_line], [named.span.start]
    lines = [f"{head} = [", *(f"{INDENT}{v}," for v in values), "]"]
    starts = [named.span.start, *(v.span.start for v in named.values), named.span.end - 1]
    return lines, starts


def default_lines(response: ir.Response) -> list[str]:
    return [f"default deny {response_text(response)}"]


def rule_lines(rule: ir.Rule) -> list[str]:
    """A rule as one line; if too long, broken in a fixed way.

    First before each top-level `and`/`or` of the condition; if the response's
    `with header` list alone makes the first line too long, it and the
    condition move to their own indented lines too.
    """
    return _rule_layout(rule, broken=False)[0]


def _rule_layout(rule: ir.Rule, *, broken: bool) -> tuple[list[str], list[int]]:
    """`rule_lines`, broken even if short when `broken`; and where each line starts in
    the source (the offset of the first part of the rule it holds)."""
    header_start = (
        rule.response.headers[0].span.start
        if rule.response and rule.response.headers
        else rule.span.start
    )
    head = "allow" if rule.action is ir.Action.ALLOW else "deny"
    assigns = None
    if rule.response is not None:
        status_body, assigns = _response_parts(rule.response)
        head = f"{head} {status_body}"
    guard = rule.guard.value if rule.condition is not None and rule.guard is not None else None
    one_line = " ".join(p for p in (head, assigns) if p)
    start = rule.span.start
    if rule.condition is None or guard is None:
        if assigns is None or len(one_line) <= MAX_WIDTH:
            return [one_line], [start]
        return [head, f"{INDENT}{assigns}"], [start, header_start]
    cond = rule.condition
    line = f"{one_line} {guard} {condition_text(cond)}"
    if len(line) <= MAX_WIDTH and not (broken and isinstance(cond, ir.And | ir.Or)):
        return [line], [start]
    operands: list[ir.Condition] = [cond]
    word, texts = "", [condition_text(cond)]
    if isinstance(cond, ir.And | ir.Or):
        operands = list(cond.operands)
        word = "and" if isinstance(cond, ir.And) else "or"
        texts = [_operand_text(op, cond) for op in operands]
    rest = [f"{INDENT}{word} {t}" for t in texts[1:]]
    rest_starts = [op.span.start for op in operands[1:]]
    if assigns is not None and len(f"{one_line} {guard} {texts[0]}") > MAX_WIDTH:
        first = [head, f"{INDENT}{assigns}", f"{INDENT}{guard} {texts[0]}"]
        first_starts = [start, header_start, operands[0].span.start]
    else:
        first, first_starts = [f"{one_line} {guard} {texts[0]}"], [start]
    return [*first, *rest], [*first_starts, *rest_starts]


def condition_text(cond: ir.Condition) -> str:
    """A condition with the fewest parentheses that parse back to the same IR."""
    match cond:
        case ir.Compare():
            return compare_text(cond)
        case ir.Not():
            inner = cond.operand
            text = condition_text(inner)
            return f"not ({text})" if isinstance(inner, ir.And | ir.Or) else f"not {text}"
        case ir.And():
            return " and ".join(_operand_text(op, cond) for op in cond.operands)
        case ir.Or():
            return " or ".join(_operand_text(op, cond) for op in cond.operands)
        case _:
            assert_never(cond)


def _operand_text(op: ir.Condition, parent: ir.And | ir.Or) -> str:
    """Parenthesise an operand that would otherwise bind differently.

    `or` inside `and` needs them; so does an `and`/`or` nested in the same kind
    (the parser only flattens the left operand, so `a and (b and c)` is a
    different tree from `a and b and c`).
    """
    text = condition_text(op)
    if isinstance(op, ir.Or) or (isinstance(op, ir.And) and isinstance(parent, ir.And)):
        return f"({text})"
    return text


def compare_text(cmp: ir.Compare) -> str:
    """A comparison; one written `in NAME` stays so (the values are the list's)."""
    meaning = semantics.comparison(cmp)
    head = f"{cmp.subject.label} {meaning.text}"
    match meaning.literals:
        case Literals.NONE:
            return head
        case Literals.ONE:
            value = policy_string(cmp.values[0].value)
        case Literals.LIST if cmp.list_name is not None:
            value = cmp.list_name
        case Literals.LIST:
            value = "[" + ", ".join(policy_string(v.value) for v in cmp.values) + "]"
        case _:
            assert_never(meaning.literals)
    suffix = " ignoring case" if cmp.ignore_case else ""
    return f"{head} {value}{suffix}"
