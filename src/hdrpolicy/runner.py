"""`hdrpolicy test`: run a policy's test cases on the reference evaluator, on the
compiled plugin.wasm in the SDK's host emulator and, with `--proxy envoy`, through
a real Envoy over HTTP/1.1 and HTTP/2, and report each.

What a plug-in sees depends on the protocol (Envoy's codecs join, trim and
rename headers: `codec.deliver`), so every case is evaluated per protocol, and
its expectation must hold over both.  A case passes when the evaluator's
decisions meet the expectation and the emulator and Envoy do exactly what the
evaluator decided.  A difference between them is a compiler bug, and is
reported as one.

Through Envoy, each case is sent from its client address (`client:`) when
that is in 127.0.0.0/8 (Envoy listens on 127.0.0.1; Linux routes the whole
block to the loopback interface).  A case whose client address this machine
cannot send from, and that Envoy would see, is not sent through Envoy, and
the report says so for that case and in its total.
"""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hdrpolicy import explain, rollout
from hdrpolicy.backend.build import BuildError, Progress
from hdrpolicy.backend.compiler import cached_wasm, emit_build, rollout_build
from hdrpolicy.backend.host import HostResult, run_native, run_plugin
from hdrpolicy.backend.toolchains import GO, Emulator, Toolchain
from hdrpolicy.codec import Protocol, SentRequest, deliver
from hdrpolicy.diagnostics import Diagnostic, visible
from hdrpolicy.evaluate import Decision
from hdrpolicy.frontend import ir
from hdrpolicy.frontend.pipeline import Checked
from hdrpolicy.policytests import Case, Expectation, TestFile
from hdrpolicy.proxy import clients
from hdrpolicy.proxy.clients import Response
from hdrpolicy.proxy.echo import TOKEN_HEADER, EchoServer
from hdrpolicy.proxy.envoy import Envoy, Plugin, Upstream, bootstrap

COMPILER_BUG = "the compiled plug-in disagrees with the reference evaluator: this is a compiler bug"
NATIVE_NOTE = (
    "tinygo target: the plug-in's Go ran natively in the tetratelabs SDK's emulator; "
    "its wasm itself was not run"
)
PROTOCOLS = (Protocol.HTTP1, Protocol.HTTP2)
PROTOCOL_NAMES = {Protocol.HTTP1: "HTTP/1.1", Protocol.HTTP2: "HTTP/2"}
# Response headers Envoy adds to a plug-in's local reply; the rest are the plug-in's.
# (HTTP/1.1 framing: an empty local reply may come chunked rather than with a length.)
ENVOY_REPLY_HEADERS = frozenset(
    {"date", "server", "content-length", "connection", "transfer-encoding"}
)


@dataclass
class Run:
    """One case over one protocol: the evaluator's decision and what each runtime did."""

    protocol: Protocol
    decision: Decision
    # What the build does with the request (its mode, its shadow): the reference.
    outcome: rollout.Outcome | None = None
    plugin: HostResult | None = None
    # Envoy's response (None: not run through Envoy), and whether the upstream got the request.
    envoy: Response | None = None
    reached_upstream: bool = False
    # Why the case was not sent through Envoy although Envoy ran (its client address).
    envoy_not_sent: str | None = None
    # Why the evaluator's decision does not meet the expectation, if it does not.
    mismatch: str | None = None
    # How the emulator's / Envoy's response differs from the evaluator's, if it does.
    plugin_disagreement: str | None = None
    envoy_disagreement: str | None = None

    @property
    def disagreement(self) -> str | None:
        found = [
            f"{who}: {why}"
            for who, why in (
                ("emulator", self.plugin_disagreement),
                (f"envoy {self.protocol.value}", self.envoy_disagreement),
            )
            if why
        ]
        return "; ".join(found) or None


@dataclass
class CaseResult:
    case: Case
    runs: list[Run]

    @property
    def passed(self) -> bool:
        return all(r.mismatch is None and r.disagreement is None for r in self.runs)

    @property
    def shown(self) -> Run:
        """The run a report shows in detail: the first that failed, else HTTP/1.1's."""
        return next((r for r in self.runs if r.mismatch or r.disagreement), self.runs[0])

    @property
    def decision(self) -> Decision:
        return self.shown.decision

    @property
    def mismatch(self) -> str | None:
        return self.shown.mismatch

    @property
    def disagreement(self) -> str | None:
        return "; ".join(r.disagreement for r in self.runs if r.disagreement) or None

    @property
    def not_sent(self) -> str | None:
        """Why some of its runs did not go through Envoy, if they did not."""
        return next((r.envoy_not_sent for r in self.runs if r.envoy_not_sent), None)


@dataclass
class PolicyReport:
    checked: Checked
    tests: TestFile | None
    results: list[CaseResult] = field(default_factory=list)
    # Problems that stopped the run (bad policy, bad test file, no tests file).
    diagnostics: list[Diagnostic] = field(default_factory=list)
    error: str | None = None
    # How the plug-in was run, when it was not the compiled wasm.
    note: str | None = None
    # What ran each case, e.g. ["evaluator", "emulator", "envoy-h1", "envoy-h2"].
    runtimes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(not r.passed for r in self.results)

    @property
    def not_sent(self) -> int:
        """Cases Envoy ran for but could not be sent (their client address)."""
        return sum(r.not_sent is not None for r in self.results)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.diagnostics and self.failed == 0


def meets(decision: Decision, expect: Expectation) -> str | None:
    """None if the decision is what the case expects, else what differs."""
    if expect.allow:
        return None if decision.allowed else "expected allow"
    if decision.allowed:
        return f"expected deny {expect.status}"
    problems = []
    if decision.status != expect.status:
        problems.append(f"expected status {expect.status}")
    if expect.body is not None and decision.body != expect.body.encode():
        problems.append(f"expected body {expect.body!r}")
    have = {(k.lower(), v) for k, v in decision.headers}
    for name, value in expect.headers:
        if (name.lower().encode(), value.encode()) not in have:
            got = [v for k, v in decision.headers if k.lower() == name.lower().encode()]
            actual = ", ".join(f"{name}: {v.decode('utf-8', 'replace')!r}" for v in got)
            problems.append(
                f"expected header {name}: {value!r} but the response has {actual or f'no {name}'}"
            )
    return "; ".join(problems) or None


def build_agreement(outcome: rollout.Outcome, plugin: HostResult) -> str | None:
    """None if the plug-in did what the build does: the response, counters and filter state."""
    found = agreement(rollout.sent(outcome), plugin)
    if found is None and plugin.counters != dict(outcome.counters):
        found = f"the evaluator counts {dict(outcome.counters)}, the plug-in {plugin.counters}"
    if found is None and plugin.state != outcome.filter_state:
        found = f"the evaluator sets {outcome.filter_state}, the plug-in set {plugin.state}"
    return found


def agreement(decision: Decision, plugin: HostResult) -> str | None:
    """None if the plug-in did exactly what the evaluator decided."""
    if plugin.trap:
        return f"the plug-in trapped: {plugin.trap}"
    if decision.allowed:
        if plugin.action == "continue" and plugin.status is None:
            return None
        return f"the evaluator allows, the plug-in sent {plugin.status} ({plugin.action})"
    if plugin.status is None or plugin.action != "pause":
        return f"the evaluator denies {decision.status}, the plug-in let the request through"
    got = (plugin.status, plugin.body, tuple(plugin.headers))
    want = (decision.status, decision.body, decision.headers)
    if got != want:
        return f"the evaluator sends {want!r}, the plug-in sent {got!r}"
    return None


def describe_response(response: Response, reached_upstream: bool) -> str:
    if response.error is not None:
        return response.error
    if reached_upstream:
        return f"allow ({response.status} from the upstream)"
    headers = "".join(f", {k}: {v}" for k, v in plugin_headers(response))
    return f"deny {response.status} {response.body!r}{headers}"


def plugin_headers(response: Response) -> list[tuple[str, str]]:
    """The headers of a local reply that are the plug-in's, not Envoy's own."""
    return sorted((k, v) for k, v in response.headers if k not in ENVOY_REPLY_HEADERS)


def envoy_agreement(
    decision: Decision, response: Response, reached_upstream: bool, token: str, method: str = "GET"
) -> str | None:
    """None if Envoy did exactly what the evaluator decided.

    Allowed means the request reached the upstream and its answer came back
    (it carries the upstream's token); denied means the upstream never saw it
    and the client got exactly the status, body (none for HEAD) and headers decided.
    """
    got = describe_response(response, reached_upstream)
    from_upstream = reached_upstream and response.header(TOKEN_HEADER) == token
    if decision.allowed:
        return None if from_upstream else f"the evaluator allows, Envoy sent {got}"
    if response.error is not None or reached_upstream:
        return f"the evaluator denies {decision.status}, Envoy sent {got}"
    want = sorted((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in decision.headers)
    body = b"" if method == "HEAD" else decision.body
    if (response.status, response.body, plugin_headers(response)) != (
        decision.status,
        body,
        want,
    ):
        return f"the evaluator sends {explain.outcome(decision)} {want}, Envoy sent {got}"
    return None


def envoy_source(
    protocol: Protocol, request: SentRequest, reads_client: bool = True
) -> tuple[str | None, str | None]:
    """(the loopback address to send `request` from, None) — None: the kernel's
    choice, 127.0.0.1 — or (None, why it cannot go through Envoy from here).

    The client address matters only to a policy that reads it, and only when
    Envoy would report it: not when the request's `x-forwarded-for` decides
    `source.address` (`codec.source_address`).
    """
    client = request.client
    if (
        not reads_client
        or client is None
        or deliver(protocol, request) == deliver(protocol, replace(request, client="127.0.0.1"))
    ):
        return None, None
    source = clients.loopback_source(client)
    if source is None:
        return None, (
            f"not sent through Envoy: its client address `{client}` is not in 127.0.0.0/8,"
            " the only addresses this machine can send from to Envoy on 127.0.0.1"
        )
    return source, None


# -- running --------------------------------------------------------------------


@dataclass
class _Job:
    report: PolicyReport
    wasm: Path | None = None
    build: rollout.Build | None = None
    shadow: Checked | None = None


class EnvoyProxy:
    """One Envoy for a whole run: a listener per policy, all in front of one echo upstream.

    Paths are left as Envoy's connection manager leaves them by default (no
    normalisation), so the plug-in sees what `codec.deliver` models and must
    hold the line on its own.  So is the client address (no
    `use_remote_address`): `x-forwarded-for` sets it, as `codec.source_address` says.
    """

    def __init__(self, envoy: Envoy, upstream: EchoServer) -> None:
        self.envoy = envoy
        self.upstream = upstream

    @classmethod
    @contextlib.contextmanager
    def started(cls, wasms: dict[str, Path], progress: Progress) -> Iterator[EnvoyProxy]:
        plugins = [
            Plugin(name, str(w), port=0, normalise_paths=False, use_remote_address=False)
            for name, w in wasms.items()
        ]
        with EchoServer() as upstream:
            progress(f"starting Envoy with {len(plugins)} plug-in(s)")
            config = bootstrap(plugins, Upstream("127.0.0.1", upstream.port))
            with Envoy.start(config) as envoy:
                yield cls(envoy, upstream)

    def send(
        self, listener: str, protocol: Protocol, request: SentRequest, source: str | None = None
    ) -> tuple[Response, bool]:
        """Envoy's response, and whether the upstream received the request."""
        self.upstream.take()
        response = clients.send(protocol, self.envoy.ports[listener], request, source)
        return response, bool(self.upstream.take())


def run_all(
    jobs: list[tuple[Checked, TestFile]],
    progress: Progress = lambda _: None,
    toolchain: Toolchain = GO,
    proxy: bool = False,
    options: rollout.Options | None = None,
    shadow: Checked | None = None,
) -> list[PolicyReport]:
    """Run every policy's cases; with `proxy`, also through one real Envoy for all policies.

    `options` and `shadow` make the build (`compile --dry-run`, `--shadow`):
    the cases' expectations are the policy's decisions, and every runtime must
    do what the build does with them.  Raises EnvoyError if Envoy is missing
    or does not start.
    """
    prepared = [
        _prepare(checked, tests, progress, toolchain, proxy, options or rollout.Options(), shadow)
        for checked, tests in jobs
    ]
    runnable = [job for job in prepared if job.report.error is None and not job.report.diagnostics]
    if not proxy or not runnable:
        for job in runnable:
            _run(job, progress, toolchain, None, "")
        return [job.report for job in prepared]

    listeners = {f"p{i}": job for i, job in enumerate(runnable)}
    wasms = {name: job.wasm for name, job in listeners.items() if job.wasm is not None}
    with EnvoyProxy.started(wasms, progress) as envoy:
        for name, job in listeners.items():
            _run(job, progress, toolchain, envoy, name)
    return [job.report for job in prepared]


def _prepare(
    checked: Checked,
    tests: TestFile,
    progress: Progress,
    toolchain: Toolchain,
    proxy: bool,
    options: rollout.Options,
    shadow: Checked | None,
) -> _Job:
    job = _Job(PolicyReport(checked, tests))
    if not checked.ok or checked.policy is None:
        job.report.diagnostics = list(checked.diagnostics)
    elif shadow is not None and (not shadow.ok or shadow.policy is None):
        job.report.diagnostics = list(shadow.diagnostics)
    elif tests.diagnostics:
        job.report.diagnostics = list(tests.diagnostics)
    else:
        job.build = rollout_build(checked, shadow, options)
        job.shadow = shadow
    if job.build is not None and (toolchain.emulator is Emulator.WASM or proxy):
        try:
            job.wasm = cached_wasm(checked, toolchain, progress, options, shadow)
        except BuildError as exc:
            job.report.error = f"{exc.message}\n{exc.output}" if exc.output else exc.message
    return job


def _run(
    job: _Job, progress: Progress, toolchain: Toolchain, envoy: EnvoyProxy | None, listener: str
) -> None:
    """Every case over every protocol, on the evaluator, the emulator (one VM) and Envoy."""
    try:
        _run_cases(job, progress, toolchain, envoy, listener)
    except BuildError as exc:
        job.report.error = f"{exc.message}\n{exc.output}" if exc.output else exc.message


def _run_cases(
    job: _Job, progress: Progress, toolchain: Toolchain, envoy: EnvoyProxy | None, listener: str
) -> None:
    report = job.report
    checked, tests = report.checked, report.tests
    assert checked.policy is not None and tests is not None
    delivered = [deliver(p, case.request()) for case in tests.cases for p in PROTOCOLS]
    build = job.build
    assert build is not None
    if toolchain.emulator is Emulator.NATIVE:
        module = emit_build(build, checked, job.shadow, toolchain)
        plugin = run_native(module, delivered, progress)
        report.note = NATIVE_NOTE
    else:
        assert job.wasm is not None
        plugin = run_plugin(
            job.wasm, delivered, progress, counters=build.counters, state=build.state_keys
        )
    report.runtimes = ["evaluator", "emulator"]
    if envoy is not None:
        report.runtimes += [f"envoy-{p.value}" for p in PROTOCOLS]
    results = iter(zip(delivered, plugin, strict=True))
    reads_client = any(
        subject.kind is ir.SubjectKind.CLIENT
        for side in (checked, job.shadow)
        if side is not None and side.policy is not None
        for subject in side.policy.subjects
    )
    for case in tests.cases:
        runs = []
        for protocol in PROTOCOLS:
            headers, result = next(results)
            outcome = rollout.run(build, headers)
            decision = outcome.live
            run = Run(protocol, decision, outcome, result, mismatch=meets(decision, case.expect))
            if toolchain.emulator is Emulator.NATIVE:
                run.plugin_disagreement = agreement(rollout.sent(outcome), result)
            else:
                run.plugin_disagreement = build_agreement(outcome, result)
            if envoy is not None:
                _through_envoy(run, envoy, listener, case.request(), outcome, reads_client)
            runs.append(run)
        report.results.append(CaseResult(case, runs))


def _through_envoy(
    run: Run,
    envoy: EnvoyProxy,
    listener: str,
    request: SentRequest,
    outcome: rollout.Outcome,
    reads_client: bool,
) -> None:
    """Send the case through Envoy from its client address, or say why it cannot be."""
    source, run.envoy_not_sent = envoy_source(run.protocol, request, reads_client)
    if run.envoy_not_sent is not None:
        return
    run.envoy, run.reached_upstream = envoy.send(listener, run.protocol, request, source)
    run.envoy_disagreement = envoy_agreement(
        rollout.sent(outcome),
        run.envoy,
        run.reached_upstream,
        envoy.upstream.token,
        request.method,
    )


def run(
    checked: Checked,
    tests: TestFile,
    progress: Progress = lambda _: None,
    toolchain: Toolchain = GO,
    proxy: bool = False,
) -> PolicyReport:
    """One policy's cases (see `run_all`)."""
    return run_all([(checked, tests)], progress, toolchain, proxy)[0]


# -- rendering ----------------------------------------------------------------


def _outcomes(r: CaseResult) -> list[tuple[str, str]]:
    """(runtime, what it did over each protocol) for every runtime that ran the case."""

    def per_protocol(show: Callable[[Run], str]) -> str:
        return "; ".join(f"{x.protocol.value}: {show(x)}" for x in r.runs)

    rows = [("evaluator", per_protocol(lambda x: explain.outcome(x.decision)))]
    if all(x.plugin is not None for x in r.runs):
        rows.append(("emulator", per_protocol(lambda x: x.plugin_disagreement or "agrees")))
    rows.extend(
        (f"envoy-{x.protocol.value}", describe_response(x.envoy, x.reached_upstream))
        for x in r.runs
        if x.envoy is not None
    )
    rows.extend((f"envoy-{x.protocol.value}", x.envoy_not_sent) for x in r.runs if x.envoy_not_sent)
    return rows


def _rollout_note(r: CaseResult) -> str:
    """A dry-run or shadowed case's other decision: what is let through, what the shadow does."""
    outcome = r.shown.outcome
    if outcome is None:
        return ""
    notes = []
    if outcome.allowed and not outcome.live.allowed:
        notes.append("dry-run: let through")
    if outcome.shadow is not None and outcome.comparison is not None:
        shown = explain.outcome(outcome.shadow)
        notes.append(f"shadow {outcome.comparison.value}: {shown} by {outcome.shadow_by}")
    return f"  ({'; '.join(notes)})" if notes else ""


def render_text(reports: list[PolicyReport]) -> str:
    lines: list[str] = []
    for report in reports:
        source = report.checked.source
        if report.note:
            lines.append(f"note: {source.path}: {report.note}")
        ran = f"  [{', '.join(report.runtimes)}]" if len(report.runtimes) > 2 else ""
        for r in report.results:
            where = f"{report.tests.source.path}:{r.case.line}" if report.tests else ""
            if r.passed:
                lines.append(f"PASS  {source.path}: {r.case.name}{ran}{_rollout_note(r)}")
                if r.not_sent:
                    lines.append(f"  {r.not_sent}")
                continue
            lines.append(f"FAIL  {source.path}: {r.case.name}  ({where})")
            lines.append(f"  expected: {r.case.expect.describe()}")
            lines.append(
                f"  actual:   {explain.outcome(r.decision)}  (over {r.shown.protocol.value})"
            )
            if r.mismatch:
                lines.append(f"  why:      {r.mismatch}")
            for who, what in _outcomes(r):
                lines.append(f"  {who + ':':<12} {what}")
            if r.disagreement:
                lines.append(f"  {COMPILER_BUG}: {r.disagreement}")
            lines.append("  trace:")
            lines.extend("  " + x for x in explain.render_text(source, r.decision).splitlines())
    passed = sum(len(r.results) - r.failed for r in reports)
    failed = sum(r.failed for r in reports)
    not_sent = sum(r.not_sent for r in reports)
    unsent = f" ({not_sent} not sent through Envoy: see above)" if not_sent else ""
    lines.append(f"{passed} passed, {failed} failed{unsent}")
    # Names, bodies and values come from the policy, its tests and the plug-in.
    return "\n".join(visible(line) for line in lines)


def to_json(reports: list[PolicyReport]) -> dict[str, Any]:
    return {
        "policies": [
            {
                "policy": report.checked.source.path,
                "tests": report.tests.source.path if report.tests else None,
                "error": report.error,
                "note": report.note,
                "runtimes": report.runtimes,
                "cases": [
                    {
                        "name": r.case.name,
                        "line": r.case.line,
                        "passed": r.passed,
                        "expected": r.case.expect.describe(),
                        "actual": explain.outcome(r.decision),
                        "mismatch": r.mismatch,
                        "compiler_bug": r.disagreement,
                        "runs": [_run_json(x) for x in r.runs],
                        "explain": explain.to_json(report.checked.source, r.decision),
                    }
                    for r in report.results
                ],
            }
            for report in reports
        ],
        "passed": sum(len(r.results) - r.failed for r in reports),
        "failed": sum(r.failed for r in reports),
        "not_sent_through_envoy": sum(r.not_sent for r in reports),
    }


def _run_json(x: Run) -> dict[str, Any]:
    outcome = x.outcome
    return {
        "let_through": None if outcome is None else outcome.allowed,
        "shadow": None
        if outcome is None or outcome.shadow is None
        else {
            "decision": explain.outcome(outcome.shadow),
            "decided_by": outcome.shadow_by,
            "comparison": outcome.comparison.value if outcome.comparison else None,
        },
        "protocol": x.protocol.value,
        "evaluator": explain.outcome(x.decision),
        "mismatch": x.mismatch,
        "emulator": None if x.plugin is None else (x.plugin_disagreement or "agrees"),
        "envoy": None if x.envoy is None else describe_response(x.envoy, x.reached_upstream),
        "envoy_disagreement": x.envoy_disagreement,
        "envoy_not_sent": x.envoy_not_sent,
    }


def to_junit(reports: list[PolicyReport]) -> str:
    suites = ET.Element("testsuites")
    for report in reports:
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=report.checked.source.path,
            tests=str(len(report.results)),
            failures=str(report.failed),
            errors="1" if report.error or report.diagnostics else "0",
        )
        for r in report.results:
            case = ET.SubElement(
                suite, "testcase", classname=report.checked.source.path, name=r.case.name
            )
            if not r.passed:
                failure = ET.SubElement(
                    case, "failure", message=(r.disagreement and COMPILER_BUG) or r.mismatch or ""
                )
                failure.text = explain.render_text(report.checked.source, r.decision)
            if r.not_sent:
                ET.SubElement(case, "system-out").text = r.not_sent
        if report.error or report.diagnostics:
            err = ET.SubElement(suite, "error", message=report.error or "invalid input")
            err.text = "\n".join(d.message for d in report.diagnostics)
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
