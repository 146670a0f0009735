"""The checked intermediate representation: what a policy means, independent of syntax.

Every node carries the span it came from; spans are left out of equality so two
policies that mean the same thing, laid out differently, compare equal.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal, assert_never

from pydantic import BaseModel, ConfigDict, Field

# The name the client address travels under in a delivered request (see `codec`).
from hdrpolicy.codec import CLIENT_ADDRESS as CLIENT_ADDRESS
from hdrpolicy.diagnostics import Span

# What the language means beyond its syntax, shared by the emitter, the
# reference evaluator and the analysis.
DEFAULT_CONTENT_TYPE = ("content-type", "text/plain")
# A request whose repeated headers give more readings than this is refused.
MAX_READINGS = 64
TOO_MANY_READINGS_STATUS = 431
TOO_MANY_READINGS_BODY = "too many repeated request headers"
# A request whose path (read by the policy) is not in normal form is refused.
BAD_PATH_STATUS = 400
BAD_PATH_BODY = "path not in normal form"
# A value (read by the policy) with leading or trailing spaces or tabs is refused.
BAD_VALUE_STATUS = 400
BAD_VALUE_BODY = "header value with surrounding whitespace"
# A request whose query string (read by the policy) has a `%` not followed by two
# hex digits is refused: services decode it in different ways.
BAD_QUERY_STATUS = 400
BAD_QUERY_BODY = "query string not well-formed"
# When the host cannot hand the plug-in the request headers, the request is refused.
HOST_ERROR_STATUS = 500
HOST_ERROR_BODY = "the policy could not read the request"


class Node(BaseModel):
    """Base of every IR node: immutable, with a span that equality ignores."""

    model_config = ConfigDict(frozen=True)

    span: Span

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return NotImplemented
        assert isinstance(other, Node)
        return all(
            getattr(self, name) == getattr(other, name)
            for name in type(self).model_fields
            if not name.endswith("span")
        )

    def __hash__(self) -> int:
        return hash(
            (
                type(self).__name__,
                *tuple(
                    _hashable(getattr(self, n))
                    for n in type(self).model_fields
                    if not n.endswith("span")
                ),
            )
        )


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


class SubjectKind(StrEnum):
    HEADER = "header"
    PATH = "path"
    METHOD = "method"
    HOST = "host"
    QUERY = "query"
    COOKIE = "cookie"
    CLIENT = "client"


class Subject(Node):
    """What a comparison looks at.  Header names are already lower case."""

    kind: SubjectKind
    name: str | None = None
    name_span: Span | None = None

    @property
    def key(self) -> str:
        """A stable identity: `header:x-role`, `query:page`, `path`, …"""
        return self.kind.value if self.name is None else f"{self.kind.value}:{self.name}"

    @property
    def host_name(self) -> str:
        """The name the proxy host gives this subject's header (`semantics`)."""
        from hdrpolicy.semantics import subject

        return subject(self.kind).host_name or (self.name or "")

    @property
    def is_pseudo(self) -> bool:
        """Read from one value the host passes once (`:method`, `:path`, `:authority`,
        the client address): only its first value counts, and it is never padded."""
        from hdrpolicy.semantics import subject

        return subject(self.kind).pseudo

    @property
    def label(self) -> str:
        """How the policy language spells it."""
        from hdrpolicy.printer import name_text
        from hdrpolicy.semantics import subject

        spelling = subject(self.kind).spelling
        return spelling if self.name is None else f"{spelling} {name_text(self.name)}"


class Op(StrEnum):
    EQ = "=="
    NE = "!="
    IN = "in"
    NOT_IN = "not in"
    STARTS_WITH = "starts_with"
    ENDS_WITH = "ends_with"
    CONTAINS = "contains"
    MATCHES = "matches"
    EXISTS = "exists"


class StringLit(Node):
    value: str


class Compare(Node):
    kind: Literal["compare"] = "compare"
    subject: Subject
    op: Op
    # One literal for scalar operators, the list for `in` / `not in`, none for `exists`.
    values: list[StringLit] = Field(default_factory=list)
    ignore_case: bool = False
    op_span: Span | None = None
    # `in admins`: the named list the values come from (None: written in place).
    list_name: str | None = None
    list_span: Span | None = None


class NamedList(Node):
    """`list NAME = [..]`, or `list NAME from "FILE"` (its values read at check time)."""

    name: str
    name_span: Span | None = None
    values: list[StringLit] = Field(default_factory=list)
    # The file as the policy writes it (None: the values are written in place).
    file: str | None = None
    file_span: Span | None = None


class Not(Node):
    kind: Literal["not"] = "not"
    operand: Condition


class And(Node):
    kind: Literal["and"] = "and"
    operands: list[Condition]


class Or(Node):
    kind: Literal["or"] = "or"
    operands: list[Condition]


Condition = Annotated[Compare | Not | And | Or, Field(discriminator="kind")]


class Guard(StrEnum):
    WHEN = "when"
    UNLESS = "unless"


class ResponseHeader(Node):
    name: str
    name_span: Span | None = None
    value: StringLit


class Response(Node):
    status: int
    status_span: Span | None = None
    body: StringLit | None = None
    headers: list[ResponseHeader] = Field(default_factory=list)

    @property
    def body_text(self) -> str:
        return self.body.value if self.body else ""

    @property
    def sent_headers(self) -> list[tuple[str, str]]:
        """The headers the response carries: the rule's, and text/plain unless it sets one.

        A response without a body has no content type: Envoy drops `content-type`
        from a local reply with an empty body (`prepareLocalReply`).
        """
        headers = [(h.name, h.value.value) for h in self.headers]
        if self.body_text and not any(name == "content-type" for name, _ in headers):
            headers.insert(0, DEFAULT_CONTENT_TYPE)
        return headers


class Action(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


class Rule(Node):
    action: Action
    response: Response | None = None
    guard: Guard | None = None
    condition: Condition | None = None

    @property
    def unconditional(self) -> bool:
        return self.condition is None


class Policy(Node):
    name: str
    name_span: Span | None = None
    rules: list[Rule] = Field(default_factory=list)
    default: Response | None = None
    lists: list[NamedList] = Field(default_factory=list)

    @property
    def subjects(self) -> list[Subject]:
        """Distinct subjects, in order of first use.

        Not cached: `model_copy` (used to drop a rule) would carry a stale cache.
        """
        seen: dict[str, Subject] = {}
        for rule in self.rules:
            if rule.condition is not None:
                for cmp in comparisons(rule.condition):
                    seen.setdefault(cmp.subject.key, cmp.subject)
        return list(seen.values())


def comparisons(cond: Condition) -> list[Compare]:
    """Every comparison in a condition, left to right (iteratively: conditions nest deep)."""
    out: list[Compare] = []
    stack: list[Condition] = [cond]
    while stack:
        node = stack.pop()
        match node:
            case Compare():
                out.append(node)
            case Not():
                stack.append(node.operand)
            case And() | Or():
                stack.extend(reversed(node.operands))
            case _:
                assert_never(node)
    return out


def nested_beyond(cond: Condition, limit: int) -> Condition | None:
    """The first `not`/`and`/`or` nested deeper than `limit` in a condition, if any."""
    stack: list[tuple[Condition, int]] = [(cond, 0)]
    while stack:
        node, level = stack.pop()
        match node:
            case Compare():
                continue
            case Not():
                children = [node.operand]
            case And() | Or():
                children = node.operands
            case _:
                assert_never(node)
        if level == limit:
            return node
        stack.extend((child, level + 1) for child in reversed(children))
    return None


Not.model_rebuild()
And.model_rebuild()
Or.model_rebuild()
Rule.model_rebuild()
