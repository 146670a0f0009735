"""Hypothesis strategies for valid IR policies, in the shape the parser produces.

The parser flattens only the left operand of `and`/`or`, so a generated
`And` never has an `And` first (nor an `Or` an `Or`); every generated policy
checks without errors, so it can be printed, parsed and compared.
"""

from __future__ import annotations

from hypothesis import strategies as st

from hdrpolicy import semantics
from hdrpolicy.diagnostics import Span
from hdrpolicy.frontend import ir
from hdrpolicy.frontend.checker import NO_BODY_STATUSES

SPAN = Span(line=1, column=1, end_line=1, end_column=1, start=0, end=0)

HEADER_NAMES = ["a", "x-role", "x-tenant", "allow", "user-agent", "x-debug"]
# Printable text plus the characters that need escapes or care in a layout.
_ALPHABET = st.sampled_from([*'abAB019 /.-_"\\#()[],=é€', "\u00a0", "\U0001f600"])
# Values never start or end with a space: the checker rejects those (they cannot match).
values = st.text(_ALPHABET, max_size=6).map(lambda v: v.strip(" "))
bodies = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=8)
PATTERNS = ["^/api/", "bot", "^a+b?$", "(?i)curl", "[0-9]{2,3}", "x|y", "."]
QUERY_NAMES = ["a", "user", "a b"]
COOKIE_NAMES = ["a", "session"]
NETWORKS = ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.3", "0.0.0.0/0", "2001:db8::/32", "::1"]


def lit(value: str) -> ir.StringLit:
    return ir.StringLit(value=value, span=SPAN)


@st.composite
def compares(draw: st.DrawFn) -> ir.Compare:
    kind = draw(st.sampled_from(list(ir.SubjectKind)))
    names = {ir.SubjectKind.HEADER: HEADER_NAMES, ir.SubjectKind.QUERY: QUERY_NAMES}
    name: str | None = draw(st.sampled_from(names.get(kind, COOKIE_NAMES)))
    if semantics.subject(kind).pseudo and semantics.subject(kind).extract is None:
        name = None
    subject = ir.Subject(kind=kind, name=name, span=SPAN)
    allowed = semantics.subject(kind).operators
    op = draw(st.sampled_from([op for op in ir.Op if allowed is None or op in allowed]))
    meaning = semantics.operator(op, kind)
    ignore_case = False
    vals: list[ir.StringLit] = []
    if meaning.networks:
        vals = [lit(v) for v in draw(st.lists(st.sampled_from(NETWORKS), min_size=1, max_size=3))]
    elif meaning.pattern:
        vals = [lit(draw(st.sampled_from(PATTERNS)))]
    elif meaning.literals is not semantics.Literals.NONE:
        ignore_case = meaning.ignore_case and draw(st.booleans())
        n = draw(st.integers(1, 3)) if meaning.literals is semantics.Literals.LIST else 1
        raw = [draw(values) for _ in range(n)]
        if kind is ir.SubjectKind.HOST and not ignore_case:
            raw = [v.lower() for v in raw]
        vals = [lit(v) for v in raw]
    return ir.Compare(subject=subject, op=op, values=vals, ignore_case=ignore_case, span=SPAN)


def _extend(children: st.SearchStrategy[ir.Condition]) -> st.SearchStrategy[ir.Condition]:
    def nary(cls: type[ir.And] | type[ir.Or]) -> st.SearchStrategy[ir.Condition]:
        first = children.filter(lambda c: not isinstance(c, cls))
        return st.builds(
            lambda a, rest: cls(operands=[a, *rest], span=SPAN),
            first,
            st.lists(children, min_size=1, max_size=3),
        )

    return st.one_of(
        st.builds(lambda c: ir.Not(operand=c, span=SPAN), children),
        nary(ir.And),
        nary(ir.Or),
    )


conditions: st.SearchStrategy[ir.Condition] = st.recursive(compares(), _extend, max_leaves=6)


@st.composite
def responses(draw: st.DrawFn) -> ir.Response:
    body = draw(st.none() | bodies)
    headers = [
        ir.ResponseHeader(name=n, value=lit(draw(values)), span=SPAN)
        for n in draw(st.lists(st.sampled_from(["retry-after", "x-reason"]), max_size=2))
    ]
    status = draw(st.integers(200, 599))
    if status in NO_BODY_STATUSES:  # a body there is an error (HP215)
        body = None
    return ir.Response(
        status=status,
        body=lit(body) if body is not None else None,
        headers=headers,
        span=SPAN,
    )


@st.composite
def rules(draw: st.DrawFn, conditional: bool = True) -> ir.Rule:
    action = draw(st.sampled_from(list(ir.Action)))
    response = draw(responses()) if action is ir.Action.DENY else None
    if not conditional:
        return ir.Rule(action=action, response=response, span=SPAN)
    return ir.Rule(
        action=action,
        response=response,
        guard=draw(st.sampled_from(list(ir.Guard))),
        condition=draw(conditions),
        span=SPAN,
    )


@st.composite
def policies(draw: st.DrawFn, max_rules: int = 5) -> ir.Policy:
    body = draw(st.lists(rules(), max_size=max_rules))
    default = draw(st.none() | responses())
    if default is None and draw(st.booleans()):
        body.append(draw(rules(conditional=False)))
    name = draw(st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True))
    return ir.Policy(name=name, rules=body, default=default, span=SPAN)
