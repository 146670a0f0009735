"""Policy test files (`POLICY.tests.yaml`): loading and validation, located to the YAML line.

A test file lists requests and what the policy must do with each.  Mistakes in
it are diagnostics like a policy's, pointing at the offending YAML node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hdrpolicy.codec import SentRequest, is_address, peer_address
from hdrpolicy.diagnostics import Code, Diagnostic, Source, Span

STR_TAG = "tag:yaml.org,2002:str"
INT_TAG = "tag:yaml.org,2002:int"
DEFAULT_METHOD, DEFAULT_PATH, DEFAULT_HOST = "GET", "/", "localhost"
# Where a case's request comes from when it gives no `client`: the address
# `hdrpolicy test --proxy envoy` sends from, so every run judges the same address.
DEFAULT_CLIENT = "127.0.0.1"


@dataclass(frozen=True)
class Expectation:
    """`allow`, or a deny with a status and optionally a body and headers that must be present."""

    allow: bool
    status: int | None = None
    body: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        if self.allow:
            return "allow"
        parts = [f"deny {self.status}"]
        if self.body is not None:
            parts.append(repr(self.body))
        parts.extend(f"{k}: {v}" for k, v in self.headers)
        return " ".join(parts)


@dataclass(frozen=True)
class Case:
    name: str
    line: int
    method: str
    path: str
    host: str
    headers: tuple[tuple[str, str], ...]
    expect: Expectation
    # The client's IP address (`client in` reads it); DEFAULT_CLIENT when not given.
    client: str = DEFAULT_CLIENT

    def request(self) -> SentRequest:
        """The request as the client sends it (what the plug-in sees depends on the protocol),
        from the case's client address (Envoy's `source.address`, with a port)."""
        return SentRequest(
            self.method, self.path, self.host, self.headers, client=peer_address(self.client)
        )


@dataclass
class TestFile:
    source: Source
    cases: list[Case] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)


def tests_path_for(policy: Path) -> Path:
    """`edge.hp` → `edge.tests.yaml`, beside the policy."""
    return policy.with_name(policy.stem + ".tests.yaml")


class _Loader:
    def __init__(self, source: Source) -> None:
        self.source = source
        self.diagnostics: list[Diagnostic] = []

    def span(self, node: yaml.Node) -> Span:
        return self.source.span(node.start_mark.index, node.end_mark.index)

    def error(self, node: yaml.Node, message: str, help: str | None = None) -> None:
        self.diagnostics.append(
            Diagnostic(Code.HP301, Code.HP301.severity, message, self.span(node), help=help)
        )

    def mapping(
        self,
        node: yaml.Node,
        what: str,
        allowed: set[str],
        required: frozenset[str] = frozenset(),
    ) -> dict[str, yaml.Node] | None:
        if not isinstance(node, yaml.MappingNode):
            self.error(node, f"{what} must be a mapping")
            return None
        out: dict[str, yaml.Node] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            if name not in allowed:
                self.error(
                    key,
                    f"unknown key `{name}` in {what}",
                    help="expected one of " + ", ".join(f"`{k}`" for k in sorted(allowed)),
                )
                continue
            assert name is not None
            if name in out:
                self.error(key, f"duplicate key `{name}` in {what}")
            out[name] = value
        for name in sorted(required - out.keys()):
            self.error(node, f"{what} has no `{name}`")
        return out

    def string(self, node: yaml.Node, what: str) -> str | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == STR_TAG:
            return str(node.value)
        if isinstance(node, yaml.ScalarNode):
            self.error(
                node,
                f"{what} must be a string, not `{node.value}`",
                help=f'quote it: "{node.value}"',
            )
        else:
            self.error(node, f"{what} must be a string")
        return None

    def address(self, node: yaml.Node) -> str | None:
        """`client`: one IP address, v4 or v6 (no range, no port, no zone)."""
        text = self.string(node, "`client`")
        if text is None:
            return None
        if not is_address(text):
            self.error(
                node,
                f"`client` must be an IP address, not `{text}`",
                help='e.g. `client: 10.1.2.3` or `client: "2001:db8::1"` (one address: '
                "no range, no port, no zone)",
            )
            return None
        return text

    def headers(self, node: yaml.Node, what: str) -> tuple[tuple[str, str], ...]:
        """A mapping, or a list of [name, value] pairs (for repeated headers)."""
        pairs: list[tuple[str, str]] = []
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name, text = self.string(key, "a header name"), self.string(value, "a header value")
                if name is not None and text is not None:
                    pairs.append((name, text))
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                if not isinstance(item, yaml.SequenceNode) or len(item.value) != 2:
                    self.error(item, "a header must be a [name, value] pair")
                    continue
                name = self.string(item.value[0], "a header name")
                text = self.string(item.value[1], "a header value")
                if name is not None and text is not None:
                    pairs.append((name, text))
        else:
            self.error(node, f"{what} must be a mapping or a list of [name, value] pairs")
        return tuple(pairs)

    def expectation(self, node: yaml.Node) -> Expectation | None:
        if isinstance(node, yaml.ScalarNode) and node.value == "allow":
            return Expectation(allow=True)
        fields = self.mapping(
            node, "`expect`", {"status", "body", "headers"}, frozenset({"status"})
        )
        if fields is None:
            if isinstance(node, yaml.ScalarNode):
                self.diagnostics[-1] = Diagnostic(
                    Code.HP301,
                    Code.HP301.severity,
                    f"`expect` is `allow` or a deny mapping, not `{node.value}`",
                    self.span(node),
                    help="e.g. `expect: allow` or `expect: {status: 403}`",
                )
            return None
        status_node = fields.get("status")
        status: int | None = None
        if status_node is not None:
            if isinstance(status_node, yaml.ScalarNode) and status_node.tag == INT_TAG:
                status = int(status_node.value)
            else:
                self.error(status_node, "`status` must be a whole number")
        body = self.string(fields["body"], "`body`") if "body" in fields else None
        headers = self.headers(fields["headers"], "`headers`") if "headers" in fields else ()
        if status is None:
            return None
        return Expectation(False, status, body, headers)

    def case(self, node: yaml.Node, index: int) -> Case | None:
        fields = self.mapping(
            node, "a case", {"name", "request", "expect"}, frozenset({"name", "expect"})
        )
        if fields is None or "name" not in fields or "expect" not in fields:
            return None
        name = self.string(fields["name"], "`name`")
        request = {"method": DEFAULT_METHOD, "path": DEFAULT_PATH, "host": DEFAULT_HOST}
        headers: tuple[tuple[str, str], ...] = ()
        client: str | None = DEFAULT_CLIENT
        if "request" in fields:
            req = self.mapping(
                fields["request"], "`request`", {"method", "path", "host", "headers", "client"}
            )
            for key, value in (req or {}).items():
                if key == "headers":
                    headers = self.headers(value, "`headers`")
                elif key == "client":
                    client = self.address(value)
                else:
                    text = self.string(value, f"`{key}`")
                    if text is not None:
                        request[key] = text
        expect = self.expectation(fields["expect"])
        if name is None or expect is None or client is None:
            return None
        return Case(
            name=name,
            line=node.start_mark.line + 1,
            method=request["method"],
            path=request["path"],
            host=request["host"],
            headers=headers,
            expect=expect,
            client=client,
        )


def load(path: Path) -> TestFile:
    """Read and validate a test file (OSError is the caller's to report)."""
    source, diags = Source.read(path)
    result = TestFile(source, diagnostics=list(diags))
    if diags:
        return result
    loader = _Loader(source)
    try:
        root = yaml.compose(source.text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if exc.context_mark is not None and (mark is None or mark.index >= len(source.text)):
            # "unexpected end of stream": point at where the construct began instead.
            mark = exc.context_mark
        offset = mark.index if mark is not None else 0
        result.diagnostics.append(
            Diagnostic(
                Code.HP301,
                Code.HP301.severity,
                f"invalid YAML: {exc.problem or exc}"
                + (f" ({exc.context})" if exc.context else ""),
                source.span(offset, offset + 1),
            )
        )
        return result
    if root is None:
        loader.diagnostics.append(
            Diagnostic(Code.HP301, Code.HP301.severity, "the test file is empty", source.span(0, 0))
        )
    else:
        top = loader.mapping(root, "the test file", {"cases"}, frozenset({"cases"}))
        cases_node = (top or {}).get("cases")
        if cases_node is not None and not isinstance(cases_node, yaml.SequenceNode):
            loader.error(cases_node, "`cases` must be a list")
        elif cases_node is not None:
            names: set[str] = set()
            for i, node in enumerate(cases_node.value):
                case = loader.case(node, i)
                if case is None:
                    continue
                if case.name in names:
                    loader.error(node, f"duplicate case name `{case.name}`")
                names.add(case.name)
                result.cases.append(case)
    result.diagnostics.extend(loader.diagnostics)
    return result
