"""Stage 2, lower: Lark tree → IR, decoding string escapes and normalising names.

One method per grammar rule, named after it; each docstring quotes the rule.
Nothing Lark-typed leaves this module.
"""

from __future__ import annotations

import re
from typing import Any

from lark import Token, Transformer_NonRecursive, Tree, v_args
from lark.tree import Meta

from hdrpolicy.diagnostics import Code, Diagnostic, Source, Span
from hdrpolicy.frontend import ir

_ESCAPE = re.compile(r'\\(u[0-9A-Fa-f]{4}|["\\nt]|.)', re.DOTALL)
_SIMPLE_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}


class PolicyParts:
    """Statements in source order, before they are assembled into a Policy."""

    def __init__(self) -> None:
        self.names: list[tuple[str, Span]] = []
        self.rules: list[ir.Rule] = []
        self.defaults: list[ir.Response] = []
        self.lists: list[ir.NamedList] = []
        # Every statement in source order, for ordering checks.
        self.order: list[tuple[str, Span, Any]] = []


@v_args(meta=True)
class _Lowering(Transformer_NonRecursive[Token, Any]):
    """Tree → IR.  Non-recursive: a condition nested or chained thousands deep lowers
    without exhausting Python's stack (the checker then refuses it, naming the limit)."""

    def __init__(self, source: Source) -> None:
        super().__init__()
        self.source = source
        self.diagnostics: list[Diagnostic] = []

    # -- helpers -------------------------------------------------------------

    def _span(self, meta: Meta) -> Span:
        return self.source.span(meta.start_pos, meta.end_pos)

    def _tok_span(self, tok: Token) -> Span:
        start = tok.start_pos or 0
        end = tok.end_pos if tok.end_pos is not None else start + len(tok)
        return self.source.span(start, end)

    def _string(self, tok: Token) -> ir.StringLit:
        """Decode a STRING token's escapes: \\" \\\\ \\n \\t \\uXXXX."""
        raw = str(tok)[1:-1]
        base = (tok.start_pos or 0) + 1
        out: list[str] = []
        pos = 0
        for m in _ESCAPE.finditer(raw):
            out.append(raw[pos : m.start()])
            pos = m.end()
            esc = m.group(1)
            if esc in _SIMPLE_ESCAPES:
                out.append(_SIMPLE_ESCAPES[esc])
            elif esc.startswith("u") and len(esc) == 5:
                code = int(esc[1:], 16)
                if 0xD800 <= code <= 0xDFFF:
                    self._bad_escape(base + m.start(), base + m.end(), m.group(0), "a surrogate")
                else:
                    out.append(chr(code))
            else:
                self._bad_escape(base + m.start(), base + m.end(), m.group(0), None)
        out.append(raw[pos:])
        return ir.StringLit(value="".join(out), span=self._tok_span(tok))

    def _bad_escape(self, start: int, end: int, text: str, what: str | None) -> None:
        message = (
            f"`{text}` is {what}, which cannot be encoded"
            if what
            else f"unknown escape `{text}` in string"
        )
        self.diagnostics.append(
            Diagnostic(
                Code.HP102,
                Code.HP102.severity,
                message,
                self.source.span(start, end),
                help='the escapes are \\" \\\\ \\n \\t and \\uXXXX',
            )
        )

    # -- statements ------------------------------------------------------------

    def start(self, meta: Meta, children: list[Any]) -> PolicyParts:
        """start: statement*"""
        parts = PolicyParts()
        for kind, span, value in children:
            parts.order.append((kind, span, value))
            if kind == "policy":
                parts.names.append((value.value, value.span))
            elif kind == "rule":
                parts.rules.append(value)
            elif kind == "list":
                parts.lists.append(value)
            else:
                parts.defaults.append(value)
        return parts

    def policy_decl(self, meta: Meta, children: list[Any]) -> tuple[str, Span, ir.StringLit]:
        """policy_decl: POLICY STRING"""
        return ("policy", self._span(meta), self._string(children[1]))

    def list_values(self, meta: Meta, children: list[Any]) -> tuple[str, Span, ir.NamedList]:
        """list_decl: LIST LIST_NAME ASSIGN string_list -> list_values"""
        _, name, _, values = children
        span = self._span(meta)
        named = ir.NamedList(
            name=str(name), name_span=self._tok_span(name), values=values, span=span
        )
        return ("list", span, named)

    def list_file(self, meta: Meta, children: list[Any]) -> tuple[str, Span, ir.NamedList]:
        """list_decl: LIST LIST_NAME FROM STRING -> list_file

        The values are read by the checker, which knows where the policy file is."""
        _, name, _, file = children
        span = self._span(meta)
        path = self._string(file)
        named = ir.NamedList(
            name=str(name),
            name_span=self._tok_span(name),
            file=path.value,
            file_span=path.span,
            span=span,
        )
        return ("list", span, named)

    def deny_rule(self, meta: Meta, children: list[Any]) -> tuple[str, Span, ir.Rule]:
        """deny_rule: DENY INT [STRING] [response_headers] [guard]"""
        _, status, body, headers, guard = children
        span = self._span(meta)
        response = self._response(meta, status, body, headers)
        g, cond = guard if guard is not None else (None, None)
        rule = ir.Rule(action=ir.Action.DENY, response=response, guard=g, condition=cond, span=span)
        return ("rule", span, rule)

    def allow_rule(self, meta: Meta, children: list[Any]) -> tuple[str, Span, ir.Rule]:
        """allow_rule: ALLOW [guard]"""
        _, guard = children
        span = self._span(meta)
        g, cond = guard if guard is not None else (None, None)
        return ("rule", span, ir.Rule(action=ir.Action.ALLOW, guard=g, condition=cond, span=span))

    def default_rule(self, meta: Meta, children: list[Any]) -> tuple[str, Span, ir.Response]:
        """default_rule: DEFAULT DENY INT [STRING] [response_headers]"""
        _, _, status, body, headers = children
        return ("default", self._span(meta), self._response(meta, status, body, headers))

    def _response(
        self, meta: Meta, status: Token, body: Token | None, headers: list[ir.ResponseHeader] | None
    ) -> ir.Response:
        return ir.Response(
            status=int(status),
            body=self._string(body) if body is not None else None,
            headers=headers or [],
            span=self._span(meta),
            status_span=self._tok_span(status),
        )

    def response_headers(self, meta: Meta, children: list[Any]) -> list[ir.ResponseHeader]:
        """response_headers: WITH header_assign (COMMA header_assign)*"""
        return [c for c in children if isinstance(c, ir.ResponseHeader)]

    def header_assign(self, meta: Meta, children: list[Any]) -> ir.ResponseHeader:
        """header_assign: HEADER HEADER_NAME ASSIGN STRING"""
        _, name, _, value = children
        return ir.ResponseHeader(
            name=str(name).lower(),
            name_span=self._tok_span(name),
            value=self._string(value),
            span=self._span(meta),
        )

    def guard(self, meta: Meta, children: list[Any]) -> tuple[ir.Guard, ir.Condition]:
        """guard: (WHEN | UNLESS) or_cond"""
        keyword, cond = children
        return ir.Guard(str(keyword)), cond

    # -- conditions --------------------------------------------------------------

    def or_cond(self, meta: Meta, children: list[Any]) -> ir.Or:
        """or_cond: or_cond OR and_cond"""
        left, _, right = children
        operands = [*(left.operands if isinstance(left, ir.Or) else [left]), right]
        return ir.Or(operands=operands, span=self._span(meta))

    def and_cond(self, meta: Meta, children: list[Any]) -> ir.And:
        """and_cond: and_cond AND not_cond"""
        left, _, right = children
        operands = [*(left.operands if isinstance(left, ir.And) else [left]), right]
        return ir.And(operands=operands, span=self._span(meta))

    def not_cond(self, meta: Meta, children: list[Any]) -> ir.Not:
        """not_cond: NOT not_cond"""
        return ir.Not(operand=children[1], span=self._span(meta))

    def group(self, meta: Meta, children: list[Any]) -> ir.Condition:
        """atom: LPAR or_cond RPAR -> group"""
        inner: ir.Condition = children[1]
        # Parentheses only group; they are not part of the meaning (`and` and
        # `or` are flattened).  Widen the span so diagnostics underline the group.
        return inner.model_copy(update={"span": self._span(meta)})

    def comparison(self, meta: Meta, children: list[Any]) -> ir.Compare:
        """comparison: subject compare_op STRING [ignore_case]
        | subject [NOT] IN string_list [ignore_case] | subject EXISTS"""
        subject: ir.Subject = children[0]
        span = self._span(meta)
        rest = children[1:]
        if isinstance(rest[0], Token) and rest[0].type == "EXISTS":
            return ir.Compare(
                subject=subject, op=ir.Op.EXISTS, span=span, op_span=self._tok_span(rest[0])
            )
        ignore_case = rest[-1] is not None
        if isinstance(rest[0], tuple):
            op, op_span = rest[0]
            return ir.Compare(
                subject=subject,
                op=op,
                values=[self._string(rest[1])],
                ignore_case=ignore_case,
                span=span,
                op_span=op_span,
            )
        if rest[0].type == "NOT":
            op, values = ir.Op.NOT_IN, rest[2]
            op_span = self.source.span(rest[0].start_pos or 0, rest[1].end_pos or 0)
        else:
            op, values = ir.Op.IN, rest[1]
            op_span = self._tok_span(rest[0])
        return ir.Compare(
            subject=subject,
            op=op,
            values=values,
            ignore_case=ignore_case,
            span=span,
            op_span=op_span,
        )

    def named_comparison(self, meta: Meta, children: list[Any]) -> ir.Compare:
        """comparison: subject [NOT] IN LIST_NAME [ignore_case] -> named_comparison

        The values are the list's: the checker fills them in."""
        subject: ir.Subject = children[0]
        *ops, name, ignore_case = children[1:]
        if len(ops) == 2:
            op = ir.Op.NOT_IN
            op_span = self.source.span(ops[0].start_pos or 0, ops[1].end_pos or 0)
        else:
            op, op_span = ir.Op.IN, self._tok_span(ops[0])
        return ir.Compare(
            subject=subject,
            op=op,
            ignore_case=ignore_case is not None,
            span=self._span(meta),
            op_span=op_span,
            list_name=str(name),
            list_span=self._tok_span(name),
        )

    def compare_op(self, meta: Meta, children: list[Token]) -> tuple[ir.Op, Span]:
        """compare_op: EQ | NE | STARTS_WITH | ENDS_WITH | CONTAINS | MATCHES"""
        return ir.Op(str(children[0])), self._tok_span(children[0])

    def ignore_case(self, meta: Meta, children: list[Token]) -> bool:
        """ignore_case: IGNORING CASE"""
        return True

    def string_list(self, meta: Meta, children: list[Any]) -> list[ir.StringLit]:
        """string_list: LSQB [STRING (COMMA STRING)* [COMMA]] RSQB"""
        return [self._string(c) for c in children if isinstance(c, Token) and c.type == "STRING"]

    def header_subject(self, meta: Meta, children: list[Token]) -> ir.Subject:
        """subject: HEADER HEADER_NAME -> header_subject"""
        name = children[1]
        return ir.Subject(
            kind=ir.SubjectKind.HEADER,
            name=str(name).lower(),
            span=self._span(meta),
            name_span=self._tok_span(name),
        )

    def path_subject(self, meta: Meta, children: list[Token]) -> ir.Subject:
        """subject: PATH -> path_subject"""
        return ir.Subject(kind=ir.SubjectKind.PATH, span=self._span(meta))

    def method_subject(self, meta: Meta, children: list[Token]) -> ir.Subject:
        """subject: METHOD -> method_subject"""
        return ir.Subject(kind=ir.SubjectKind.METHOD, span=self._span(meta))

    def host_subject(self, meta: Meta, children: list[Token]) -> ir.Subject:
        """subject: HOST -> host_subject"""
        return ir.Subject(kind=ir.SubjectKind.HOST, span=self._span(meta))

    def query_subject(self, meta: Meta, children: list[Token]) -> ir.Subject:
        """subject: QUERY (PARAM_NAME | STRING) -> query_subject"""
        return self._named_subject(ir.SubjectKind.QUERY, meta, children[1])

    def cookie_subject(self, meta: Meta, children: list[Token]) -> ir.Subject:
        """subject: COOKIE (PARAM_NAME | STRING) -> cookie_subject"""
        return self._named_subject(ir.SubjectKind.COOKIE, meta, children[1])

    def client_subject(self, meta: Meta, children: list[Token]) -> ir.Subject:
        """subject: CLIENT -> client_subject"""
        return ir.Subject(kind=ir.SubjectKind.CLIENT, span=self._span(meta))

    def _named_subject(self, kind: ir.SubjectKind, meta: Meta, name: Token) -> ir.Subject:
        """A query parameter or a cookie: its name as written, case kept (unlike a header's)."""
        text = self._string(name).value if name.type == "STRING" else str(name)
        return ir.Subject(
            kind=kind, name=text, span=self._span(meta), name_span=self._tok_span(name)
        )


def lower(tree: Tree[Any], source: Source) -> tuple[PolicyParts, list[Diagnostic]]:
    """Turn a parse tree into statement parts; the checker assembles and checks them."""
    lowering = _Lowering(source)
    parts: PolicyParts = lowering.transform(tree)
    return parts, lowering.diagnostics
