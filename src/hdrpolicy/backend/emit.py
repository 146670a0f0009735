"""Stage 4, emit: checked IR → Go sources, through the Jinja2 templates.

All decisions (names, escaping, ordering, the Go expression of each rule) are
made here; the templates only lay the prepared model out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any, assert_never

import jinja2

from hdrpolicy import __version__, semantics
from hdrpolicy.assets import asset
from hdrpolicy.backend.golit import go_comment_text, go_string
from hdrpolicy.backend.toolchains import Emulator, Toolchain
from hdrpolicy.diagnostics import Source
from hdrpolicy.frontend import ir
from hdrpolicy.semantics import Literals, list_delimiter


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(asset("templates", "go")),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


@dataclass
class _Field:
    const: str
    host_name: str
    label: str
    # Go literals: the list delimiter ("" if a value is never a list), and the
    # joiner of repeated values.
    delimiter: str
    joiner: str


class _GoBuilder:
    """Turns a policy's rules into Go expressions and declarations."""

    def __init__(self, policy: ir.Policy, source: Source, source_name: str) -> None:
        self.policy = policy
        self.source = source
        # The file name as comments and the deny log show it: one visible line.
        self.source_name = go_comment_text(source_name)
        self.fields: dict[str, _Field] = {}
        self.helpers: set[str] = set()
        self.regexps: list[dict[str, str]] = []
        self.fold = False
        taken: set[str] = set()
        for subject in policy.subjects:
            const = _unique(_const_name(subject), taken)
            delimiter = list_delimiter(subject.host_name)
            self.fields[subject.key] = _Field(
                const,
                go_string(subject.host_name),
                go_string(subject.label),
                go_string(delimiter or ""),
                go_string(semantics.joiner(delimiter)),
            )

    def location(self, span_line: int) -> str:
        return f"{self.source_name}:{span_line}"

    # -- conditions ------------------------------------------------------------

    def expr(self, cond: ir.Condition) -> tuple[str, int]:
        """Go text of a condition and its precedence (3 operand, 2 `&&`, 1 `||`)."""
        match cond:
            case ir.Compare():
                return self.compare(cond)
            case ir.Not():
                return self.negate(cond.operand), 3
            case ir.And():
                return " && ".join(self.wrap(op, 2) for op in cond.operands), 2
            case ir.Or():
                return " || ".join(self.wrap(op, 1) for op in cond.operands), 1
            case _:
                assert_never(cond)

    def wrap(self, cond: ir.Condition, min_prec: int) -> str:
        text, prec = self.expr(cond)
        return text if prec >= min_prec else f"({text})"

    def negate(self, cond: ir.Condition) -> str:
        if isinstance(cond, ir.Not):
            return self.wrap(cond.operand, 1)
        if isinstance(cond, ir.Compare):
            meaning = semantics.operator(cond.op)
            if meaning.negation_of is not None:
                return self.positive(cond, meaning.positive)[0]
        text, prec = self.expr(cond)
        return "!" + (text if prec >= 3 else f"({text})")

    def compare(self, cmp: ir.Compare) -> tuple[str, int]:
        meaning = semantics.operator(cmp.op)
        text, prec = self.positive(cmp, meaning.positive)
        if meaning.negation_of is None:
            return text, prec
        return "!" + (text if prec >= 3 else f"({text})"), 3

    def positive(self, cmp: ir.Compare, meaning: semantics.OperatorMeaning) -> tuple[str, int]:
        """The Go test of a positive operator: its helper on each literal, `||`-joined."""
        f = self.fields[cmp.subject.key].const
        assert meaning.go_helper is not None, meaning.op
        if meaning.literals is Literals.NONE:
            return self.call(meaning.go_helper, f), 3
        if meaning.pattern:
            var = f"pattern{len(self.regexps) + 1}"
            self.regexps.append(
                {
                    "var": var,
                    "pattern": go_string(cmp.values[0].value),
                    "location": self.location(cmp.values[0].span.line),
                }
            )
            return self.call(meaning.go_helper, f, var), 3
        name = meaning.go_helper
        values = [v.value for v in cmp.values]
        if semantics.folds(cmp):
            assert meaning.go_fold_helper is not None, meaning.op
            name = meaning.go_fold_helper
            self.fold = True
            values = [semantics.fold(v) for v in values]
        calls = [self.call(name, f, go_string(v)) for v in values]
        return " || ".join(calls), (3 if len(calls) == 1 else 1)

    def call(self, helper: str, *args: str) -> str:
        self.helpers.add(helper)
        return f"r.{helper}({', '.join(args)})"

    # -- rules -------------------------------------------------------------------

    def rule_test(self, rule: ir.Rule) -> str | None:
        if rule.condition is None:
            return None
        assert rule.guard is not None
        if semantics.negates(rule.guard):
            return self.negate(rule.condition)
        return self.expr(rule.condition)[0]

    def denial(self, response: ir.Response, var: str, why: list[str], rank: int) -> dict[str, Any]:
        return self._denial(
            var,
            rank,
            self.location(response.span.line),
            response.status,
            response.sent_headers,
            response.body_text,
            why,
        )

    def _denial(
        self,
        var: str,
        rank: int,
        where: str,
        status: int,
        headers: list[tuple[str, str]],
        body: str,
        why: list[str],
    ) -> dict[str, Any]:
        return {
            "var": var,
            "rank": rank,
            "comment": where,
            "log_line": go_string(f"{self.policy.name}: {where}: denied with {status}"),
            "status": status,
            "headers": [(go_string(n), go_string(v)) for n, v in headers],
            "body": go_string(body),
            "why": why,
        }

    def comment_lines(self, span_start: int, span_end: int) -> list[str]:
        first, _ = self.source.position(span_start)
        last, _ = self.source.position(span_end)
        return [go_comment_text(self.source.line_text(n).strip()) for n in range(first, last + 1)]

    def model(self, toolchain: Toolchain) -> dict[str, Any]:
        rules: list[dict[str, Any]] = []
        denials: list[dict[str, Any]] = []
        taken: set[str] = set()
        for rule in self.policy.rules:
            test = self.rule_test(rule)
            if rule.action is ir.Action.ALLOW:
                result = "nil"
            else:
                assert rule.response is not None
                var = _unique(f"denyLine{rule.span.line}", taken)
                why = []
                if rule.condition is not None:
                    for cmp in ir.comparisons(rule.condition):
                        const = self.fields[cmp.subject.key].const
                        if const not in why:
                            why.append(const)
                denials.append(self.denial(rule.response, var, why, len(rules)))
                result = f"&{var}"
            rules.append(
                {
                    "location": self.location(rule.span.line),
                    "comment_lines": self.comment_lines(rule.span.start, rule.span.end),
                    "test": test,
                    "result": result,
                }
            )
        fall_through: str | None = "nil"
        if rules and rules[-1]["test"] is None:
            fall_through = None
        if self.policy.default is not None:
            denials.append(self.denial(self.policy.default, "denyDefault", [], len(rules)))
            rules.append(
                {
                    "location": self.location(self.policy.default.span.line),
                    "comment_lines": self.comment_lines(
                        self.policy.default.span.start, self.policy.default.span.end
                    ),
                    "test": None,
                    "result": "&denyDefault",
                }
            )
            fall_through = None
        fields = list(self.fields.values())
        field_consts = [f.const for f in fields] + ["numFields"]
        field_consts[0] += " field = iota"
        by_kind = {s.kind: self.fields[s.key].const for s in self.policy.subjects}
        pseudo = [self.fields[s.key].const for s in self.policy.subjects if s.is_pseudo]
        reads_headers = any(not s.is_pseudo for s in self.policy.subjects)
        # A target whose Go only ever runs as wasm can walk the host's serialised
        # headers itself; one whose Go also runs natively (`Emulator.NATIVE`, the
        # tetratelabs emulator) cannot: a `//go:wasmimport` function has no body there.
        raw_header_pairs = reads_headers and toolchain.emulator is Emulator.WASM
        std_imports = ["strconv", "strings"]
        if self.regexps:
            std_imports.append("regexp")
        if raw_header_pairs:
            std_imports += ["encoding/binary", "unsafe"]
        else:  # host errors other than "not found" fail closed (errors.Is)
            std_imports.append("errors")
        lengths: dict[int, list[_Field]] = {}
        for subject in self.policy.subjects:
            lengths.setdefault(len(subject.host_name), []).append(self.fields[subject.key])
        return {
            "version": __version__,
            "source_name": self.source_name,
            "policy_name": self.policy.name,
            "policy_name_literal": go_string(self.policy.name),
            "sdk": toolchain.sdk_module,
            "register_in_init": toolchain.register_in_init,
            "std_imports": sorted(std_imports),
            "rules": rules,
            "fall_through": fall_through,
            "denials": denials,
            "fields": fields,
            "field_consts": field_consts,
            "reads_headers": reads_headers,
            "raw_header_pairs": raw_header_pairs,
            "field_lengths": [
                {"length": n, "fields": group} for n, group in sorted(lengths.items())
            ],
            "pseudo_test": " || ".join(f"f == {c}" for c in pseudo) or None,
            **self.normalized_fields(by_kind),
            "helpers": sorted(self.helpers),
            "fold": self.fold,
            "regexps": self.regexps,
            "max_readings": ir.MAX_READINGS,
            "too_many_readings": self._refusal(
                "tooManyReadings", ir.TOO_MANY_READINGS_STATUS, ir.TOO_MANY_READINGS_BODY, []
            ),
            "bad_path": self._refusal(
                "badPath",
                ir.BAD_PATH_STATUS,
                ir.BAD_PATH_BODY,
                [
                    const
                    for kind, const in by_kind.items()
                    if semantics.subject(kind).in_normal_form is not None
                ],
            ),
            "bad_value": self._refusal("badValue", ir.BAD_VALUE_STATUS, ir.BAD_VALUE_BODY, []),
            "host_error": self._refusal("hostError", ir.HOST_ERROR_STATUS, ir.HOST_ERROR_BODY, []),
        }

    @staticmethod
    def normalized_fields(by_kind: dict[ir.SubjectKind, str]) -> dict[str, str | None]:
        """Each kind with a normalisation of its own: the template's key, and its field."""
        return {
            meaning.go_field: by_kind.get(kind)
            for kind in ir.SubjectKind
            if (meaning := semantics.subject(kind)).go_field is not None
        }

    def _refusal(self, var: str, status: int, body: str, why: list[str]) -> dict[str, Any]:
        """A response sent before any rule runs; its log line says why."""
        return self._denial(var, -1, body, status, [ir.DEFAULT_CONTENT_TYPE], body, why)


def _const_name(subject: ir.Subject) -> str:
    if subject.is_pseudo:
        return "field" + subject.kind.value.capitalize()
    parts = re.split(r"[^0-9A-Za-z]+", subject.name or "")
    return "header" + "".join(p[:1].upper() + p[1:] for p in parts if p)


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    taken.add(candidate)
    return candidate


def emit(
    policy: ir.Policy, source: Source, source_name: str, toolchain: Toolchain
) -> dict[str, bytes]:
    """The Go module for a policy: file name → bytes, deterministic for the same input."""
    builder = _GoBuilder(policy, source, source_name)
    model = builder.model(toolchain)
    env = _environment()
    files: dict[str, str] = {
        "main.go": env.get_template("main.go.jinja").render(model),
        "go.mod": env.get_template("go.mod.jinja").render(
            module=policy.name,
            go_directive=toolchain.go_directive,
            requires=toolchain.requires,
            indirect=toolchain.indirect,
        ),
        "go.sum": toolchain.go_sum,
        "Dockerfile": env.get_template("Dockerfile.jinja").render(),
    }
    if toolchain.blank_imports:
        files["nottinygc.go"] = env.get_template("nottinygc.go.jinja").render(
            imports=toolchain.blank_imports
        )
    return {name: text.encode("utf-8") for name, text in files.items()}
