"""Stage 4, emit: checked IR → Go sources, through the Jinja2 templates.

All decisions (names, escaping, ordering, the Go expression of each rule) are
made here; the templates only lay the prepared model out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any, assert_never

import jinja2

from hdrpolicy import __version__, rollout, semantics
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
    # A request header or a cookie (its value is redacted from info lines unless asked).
    is_header: bool
    # The name a query parameter or a cookie is read by (a Go literal; None: not named).
    name: str | None = None


class _GoBuilder:
    """Turns a build's policies into Go expressions and declarations.

    The policies of one build (the live one, and the shadow one) share the
    request's fields, read from the host once; each has its own rules,
    decisions and refusals, named with its prefix.
    """

    def __init__(self, build: rollout.Build) -> None:
        self.build = build
        self.fields: dict[str, _Field] = {}
        self.helpers: set[str] = set()
        self.regexps: list[dict[str, str]] = []
        self.networks: list[dict[str, Any]] = []
        self.fold = False
        # Equal policy responses get equal numbers (the shadow compares them).
        self.responses: dict[tuple[Any, ...], int] = {}
        self.side = build.live
        taken: set[str] = set()
        for subject in _subjects(build):
            const = _unique(_const_name(subject), taken)
            delimiter = list_delimiter(subject)
            self.fields[subject.key] = _Field(
                const,
                go_string(subject.host_name),
                go_string(subject.label),
                go_string(delimiter or ""),
                go_string(semantics.joiner(subject) or ""),
                subject.kind in (ir.SubjectKind.HEADER, ir.SubjectKind.COOKIE),
                go_string(subject.name or "") if _named(subject) else None,
            )
        # The field each host header is read into, once: a subject's own (`path`,
        # `header cookie`), else the first query parameter or cookie read out of it.
        self.carriers: dict[str, str] = {}
        for subject in sorted(_subjects(build), key=_named):
            if subject.kind is not ir.SubjectKind.CLIENT:
                self.carriers.setdefault(subject.host_name, self.fields[subject.key].const)

    def location(self, span_line: int) -> str:
        return self.side.location(span_line)

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
            meaning = semantics.comparison(cond)
            if meaning.negation_of is not None:
                return self.positive(cond, meaning.positive)[0]
        text, prec = self.expr(cond)
        return "!" + (text if prec >= 3 else f"({text})")

    def compare(self, cmp: ir.Compare) -> tuple[str, int]:
        meaning = semantics.comparison(cmp)
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
        if meaning.networks:
            var = f"networks{len(self.networks) + 1}"
            self.networks.append(
                {
                    "var": var,
                    "prefixes": [_go_prefix(v.value) for v in cmp.values],
                    "location": self.location(cmp.span.line),
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

    def decision(
        self,
        var: str,
        rank: int,
        by: str,
        deny: tuple[int, list[tuple[str, str]], str] | None,
        why: list[str],
        log_line: str | None = None,
    ) -> dict[str, Any]:
        """A decision's Go declaration: what decided, its filter state, counter and response."""
        build, side = self.build, self.side
        live = side is build.live
        mode = build.mode if live else rollout.Mode.ENFORCE
        role = build.role if live else "shadow"
        status = None if deny is None else deny[0]
        pairs = [("rank", str(rank)), ("by", go_string(by))]
        if deny is not None:
            status, headers, body = deny
            key = (status, tuple(headers), body)
            response = self.responses.setdefault(key, len(self.responses) + 1)
            if live and build.decision_header is not None:
                headers = [*headers, (build.decision_header, by)]
            listed = ", ".join(f"{{{go_string(n)}, {go_string(v)}}}" for n, v in headers)
            where = log_line or by
            pairs += [
                ("deny", "true"),
                ("logLine", go_string(f"{side.policy.name}: {where}: denied with {status}")),
                ("status", str(status)),
                ("headers", f"[][2]string{{{listed}}}"),
                ("body", f"[]byte({go_string(body)})"),
                ("why", f"[]field{{{', '.join(why)}}}"),
                ("response", str(response)),
            ]
        if build.filter_state:
            value = rollout.state_value(mode, deny is None, status, by)
            pairs.append(("state", f"[]byte({go_string(value)})"))
        if build.metrics:
            metric = rollout.decision_metric(side.policy.name, role, deny is None, by)
            pairs.append(("metricName", go_string(metric)))
        return {"var": var, "lines": _keyed(pairs)}

    def comment_lines(self, source: Source, span_start: int, span_end: int) -> list[str]:
        first, _ = source.position(span_start)
        last, _ = source.position(span_end)
        return [go_comment_text(source.line_text(n).strip()) for n in range(first, last + 1)]

    def policy_model(self, side: rollout.Side, source: Source, prefix: str) -> dict[str, Any]:
        """One policy: its evaluate function's rules, its decisions and its refusals."""
        self.side = side
        policy = side.policy

        def name(base: str) -> str:
            return prefix + base[:1].upper() + base[1:] if prefix else base

        rules: list[dict[str, Any]] = []
        decisions: list[dict[str, Any]] = []
        taken: set[str] = set()
        for rule in policy.rules:
            test = self.rule_test(rule)
            by = self.location(rule.span.line)
            if rule.action is ir.Action.ALLOW:
                var = name(_unique(f"allowLine{rule.span.line}", taken))
                decisions.append(self.decision(var, len(rules), by, None, []))
            else:
                assert rule.response is not None
                var = name(_unique(f"denyLine{rule.span.line}", taken))
                why: list[str] = []
                if rule.condition is not None:
                    for cmp in ir.comparisons(rule.condition):
                        const = self.fields[cmp.subject.key].const
                        if const not in why:
                            why.append(const)
                decisions.append(self.decision(var, len(rules), by, _response(rule.response), why))
            rules.append(
                {
                    "location": by,
                    "comment_lines": self.comment_lines(source, rule.span.start, rule.span.end),
                    "test": test,
                    "result": f"&{var}",
                }
            )
        fall_through: str | None = "&" + name("noRule")
        decisions.append(self.decision(name("noRule"), len(rules), rollout.NO_RULE, None, []))
        if rules and rules[-1]["test"] is None:
            fall_through = None
            decisions.pop()
        if policy.default is not None:
            default = name("denyDefault")
            decisions.append(
                self.decision(
                    default,
                    len(rules),
                    rollout.DEFAULT,
                    _response(policy.default),
                    [],
                    self.location(policy.default.span.line),
                )
            )
            rules.append(
                {
                    "location": self.location(policy.default.span.line),
                    "comment_lines": self.comment_lines(
                        source, policy.default.span.start, policy.default.span.end
                    ),
                    "test": None,
                    "result": f"&{default}",
                }
            )
            fall_through = None
        reads_path = any(s.kind is ir.SubjectKind.PATH for s in policy.subjects)
        path = [self.fields[s.key].const for s in policy.subjects if s.kind is ir.SubjectKind.PATH]
        refusals = {
            "too_many_readings": self.refusal(
                name("tooManyReadings"), ir.TOO_MANY_READINGS_STATUS, ir.TOO_MANY_READINGS_BODY, []
            ),
            "bad_path": self.refusal(name("badPath"), ir.BAD_PATH_STATUS, ir.BAD_PATH_BODY, path),
            "bad_value": self.refusal(name("badValue"), ir.BAD_VALUE_STATUS, ir.BAD_VALUE_BODY, []),
            "host_error": self.refusal(
                name("hostError"), ir.HOST_ERROR_STATUS, ir.HOST_ERROR_BODY, []
            ),
            # The log line shows the request target (the value `why` would show is decoded).
            "bad_query": self.refusal(name("badQuery"), ir.BAD_QUERY_STATUS, ir.BAD_QUERY_BODY, [])
            if any(s.kind is ir.SubjectKind.QUERY for s in policy.subjects)
            else None,
        }
        return {
            "var": prefix or "live",
            "name": go_string(policy.name),
            "source_name": go_comment_text(side.source_name),
            "evaluate": name("evaluate") if prefix else "evaluate",
            "fields": [self.fields[s.key].const for s in policy.subjects],
            "reads_path": reads_path,
            "rules": rules,
            "fall_through": fall_through,
            "decisions": decisions,
            **refusals,
        }

    def refusal(self, var: str, status: int, body: str, why: list[str]) -> dict[str, Any]:
        """A response sent before any rule runs; its log line says why."""
        by = rollout.REFUSALS[(status, body)]
        deny = (status, [ir.DEFAULT_CONTENT_TYPE], body)
        return self.decision(var, -1, by, deny, why, body)

    def model(self, toolchain: Toolchain, sources: list[Source]) -> dict[str, Any]:
        build = self.build
        sides = [build.live] + ([build.shadow] if build.shadow else [])
        policies = [
            self.policy_model(side, source, "" if i == 0 else "shadow")
            for i, (side, source) in enumerate(zip(sides, sources, strict=True))
        ]
        fields = list(self.fields.values())
        field_consts = [f.const for f in fields] + ["numFields"]
        field_consts[0] += " field = iota"
        subjects = _subjects(build)
        by_kind = {s.kind: self.fields[s.key].const for s in subjects}
        carried = [s for s in subjects if self.fields[s.key].const in self.carriers.values()]
        named = {s.key for s in subjects if _named(s)}
        reads_headers = any(not s.is_pseudo for s in subjects)
        # A target whose Go only ever runs as wasm can walk the host's serialised
        # headers itself; one whose Go also runs natively (`Emulator.NATIVE`, the
        # tetratelabs emulator) cannot: a `//go:wasmimport` function has no body there.
        raw_header_pairs = reads_headers and toolchain.emulator is Emulator.WASM
        std_imports = ["strconv", "strings"]
        if self.regexps:
            std_imports.append("regexp")
        if raw_header_pairs:
            std_imports += ["encoding/binary", "unsafe"]
        # Host errors other than "not found" fail closed (errors.Is).
        if not raw_header_pairs or ir.SubjectKind.CLIENT in by_kind:
            std_imports.append("errors")
        if ir.SubjectKind.CLIENT in by_kind:
            std_imports.append("net/netip")
        logs_info = build.mode is rollout.Mode.DRY_RUN or build.shadow is not None
        if logs_info:
            std_imports.append("time")
        lengths: dict[int, list[_Field]] = {}
        for subject in carried:
            lengths.setdefault(len(subject.host_name), []).append(self.fields[subject.key])
        live_name = build.live.policy.name
        return {
            "version": __version__,
            "source_name": go_comment_text(build.live.source_name),
            "shadow_source_name": go_comment_text(build.shadow.source_name)
            if build.shadow
            else None,
            "policy_name": live_name,
            "policy_name_literal": go_string(live_name),
            "sdk": toolchain.sdk_module,
            "register_in_init": toolchain.register_in_init,
            "std_imports": sorted(std_imports),
            "policies": policies,
            "live": policies[0],
            "shadow": policies[1] if len(policies) > 1 else None,
            "dry_run": build.mode is rollout.Mode.DRY_RUN,
            "metrics": build.metrics,
            "filter_state": build.filter_state,
            "logs_info": logs_info,
            "log_lines_per_second": rollout.LOG_LINES_PER_SECOND,
            "state_key": go_string(rollout.state_key(live_name)),
            "shadow_state_key": go_string(rollout.shadow_state_key(live_name)),
            "comparisons": [
                {
                    "const": "compare" + "".join(w.capitalize() for w in c.value.split("-")),
                    "word": go_string(c.value + " "),
                    "metric": go_string(rollout.shadow_metric(live_name, c)),
                }
                for c in rollout.Comparison
            ],
            "fields": fields,
            "redacted": [
                "true" if f.is_header and not build.log_values else "false" for f in fields
            ],
            "field_consts": field_consts,
            "reads_headers": reads_headers,
            "raw_header_pairs": raw_header_pairs,
            "field_lengths": [
                {"length": n, "fields": group} for n, group in sorted(lengths.items())
            ],
            # Read from a header passed once: only its first value counts.
            "pseudo_test": _any_of(self.fields[s.key] for s in carried if s.is_pseudo),
            # Never refused for surrounding whitespace (`evaluate.refusal`).
            "unpadded_test": _any_of(
                self.fields[s.key] for s in subjects if s.is_pseudo or s.key in named
            ),
            # Read out of another field's values (`extract`), not expanded.
            "named_test": _any_of(self.fields[s.key] for s in subjects if s.key in named),
            "pseudo_names": [
                f.host_name if f.const in self.carriers.values() else '""' for f in fields
            ],
            "derived_fields": len(carried) < len(subjects),
            "query_source": self.carriers.get(":path") if _reads(subjects, QUERY) else None,
            "query_fields": [self.fields[s.key] for s in subjects if s.kind is QUERY],
            "cookie_source": self.carriers.get("cookie") if _reads(subjects, COOKIE) else None,
            "cookie_fields": [self.fields[s.key] for s in subjects if s.kind is COOKIE],
            "reads_query": _reads(subjects, QUERY),
            "networks": self.networks,
            **_normalized_fields(by_kind),
            "helpers": sorted(self.helpers),
            "fold": self.fold,
            "regexps": self.regexps,
            "max_readings": ir.MAX_READINGS,
        }


def _normalized_fields(by_kind: dict[ir.SubjectKind, str]) -> dict[str, str | None]:
    """Each kind with a normalisation of its own: the template's key, and its field."""
    return {
        meaning.go_field: by_kind.get(kind)
        for kind in ir.SubjectKind
        if (meaning := semantics.subject(kind)).go_field is not None
    }


QUERY, COOKIE = ir.SubjectKind.QUERY, ir.SubjectKind.COOKIE


def _named(subject: ir.Subject) -> bool:
    """A query parameter or a cookie: read out of a host value by its name."""
    return semantics.subject(subject.kind).extract is not None


def _reads(subjects: list[ir.Subject], kind: ir.SubjectKind) -> bool:
    return any(s.kind is kind for s in subjects)


def _any_of(fields: Iterable[_Field]) -> str | None:
    """A Go test of whether `f` is one of these fields (None: there are none)."""
    return " || ".join(f"f == {field.const}" for field in fields) or None


def _go_prefix(literal: str) -> str:
    """A CIDR literal (checked) as a Go `netip.Prefix` value: its range, host bits dropped."""
    network = semantics.network(literal)
    packed = network.network_address.packed
    if network.version == 4:
        address = f"netip.AddrFrom4([4]byte{{{', '.join(str(b) for b in packed)}}})"
    else:
        address = f"netip.AddrFrom16([16]byte{{{', '.join(f'0x{b:02x}' for b in packed)}}})"
    return f"netip.PrefixFrom({address}, {network.prefixlen})"


def _keyed(pairs: list[tuple[str, str]]) -> list[str]:
    """`key: value,` lines of a Go composite literal, values aligned as gofmt aligns them."""
    width = max(len(k) for k, _ in pairs) + 2
    return [f"{(k + ':').ljust(width)}{v}," for k, v in pairs]


def _subjects(build: rollout.Build) -> list[ir.Subject]:
    """Every subject the build's policies read, each once: the live policy's first."""
    seen: dict[str, ir.Subject] = {}
    for side in [build.live] + ([build.shadow] if build.shadow else []):
        for subject in side.policy.subjects:
            seen.setdefault(subject.key, subject)
    return list(seen.values())


def _response(response: ir.Response) -> tuple[int, list[tuple[str, str]], str]:
    return response.status, list(response.sent_headers), response.body_text


def _const_name(subject: ir.Subject) -> str:
    """`headerXRole`, `queryPage`, `cookieSession`; `fieldPath`, `fieldClient`."""
    if subject.name is None:
        return "field" + subject.kind.value.capitalize()
    parts = re.split(r"[^0-9A-Za-z]+", subject.name)
    return subject.kind.value + "".join(p[:1].upper() + p[1:] for p in parts if p)


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    taken.add(candidate)
    return candidate


def emit(
    policy: ir.Policy,
    source: Source,
    source_name: str,
    toolchain: Toolchain,
    build: rollout.Build | None = None,
    shadow_source: Source | None = None,
) -> dict[str, bytes]:
    """The Go module for a policy: file name → bytes, deterministic for the same input.

    `build` sets the mode, the shadow policy (whose text is `shadow_source`)
    and what the plug-in records; by default it enforces `policy` with
    metrics and filter state.
    """
    if build is None:
        build = rollout.Build(rollout.Side(policy, source_name))
    assert build.live.policy is policy
    assert (build.shadow is None) == (shadow_source is None)
    builder = _GoBuilder(build)
    model = builder.model(toolchain, [source] + ([shadow_source] if shadow_source else []))
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
