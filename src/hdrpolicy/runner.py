"""`hdrpolicy test`: run a policy's test cases on the reference evaluator and on the
compiled plugin.wasm in the SDK's host emulator, and report both.

A case passes when the evaluator's decision meets the expectation and the
plug-in sends exactly the evaluator's response.  A difference between the two
is a compiler bug, and is reported as one.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hdrpolicy import explain
from hdrpolicy.build import Progress
from hdrpolicy.compiler import cached_wasm
from hdrpolicy.diagnostics import Diagnostic
from hdrpolicy.emit import emit
from hdrpolicy.evaluate import Decision, evaluate
from hdrpolicy.host import HostResult, run_native, run_plugin
from hdrpolicy.pipeline import Checked
from hdrpolicy.policytests import Case, Expectation, TestFile
from hdrpolicy.toolchains import GO, Toolchain, ToolchainName

COMPILER_BUG = "the compiled plug-in disagrees with the reference evaluator: this is a compiler bug"
NATIVE_NOTE = (
    "tinygo target: the plug-in's Go ran natively in the tetratelabs SDK's emulator; "
    "its wasm itself was not run"
)


@dataclass
class CaseResult:
    case: Case
    decision: Decision
    plugin: HostResult | None
    # Why the evaluator's decision does not meet the expectation, if it does not.
    mismatch: str | None = None
    # How the plug-in's response differs from the evaluator's, if it does.
    disagreement: str | None = None

    @property
    def passed(self) -> bool:
        return self.mismatch is None and self.disagreement is None


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

    @property
    def failed(self) -> int:
        return sum(not r.passed for r in self.results)

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


def run(
    checked: Checked,
    tests: TestFile,
    progress: Progress = lambda _: None,
    toolchain: Toolchain = GO,
) -> PolicyReport:
    """Run every case on the evaluator and on the compiled plug-in (one VM for all).

    The `go` target runs the compiled plugin.wasm in the SDK's wasm emulator;
    the `tinygo` target's Go runs natively (its wasm needs TinyGo).
    """
    report = PolicyReport(checked, tests)
    if not checked.ok or checked.policy is None:
        report.diagnostics = list(checked.diagnostics)
        return report
    if tests.diagnostics:
        report.diagnostics = list(tests.diagnostics)
        return report
    policy = checked.policy
    requests = [case.host_headers() for case in tests.cases]
    decisions = [evaluate(policy, request) for request in requests]
    if toolchain.name is ToolchainName.TINYGO:
        module = emit(policy, checked.source, Path(checked.source.path).name, toolchain)
        plugin = run_native(module, requests, progress)
        report.note = NATIVE_NOTE
    else:
        plugin = run_plugin(cached_wasm(checked, toolchain, progress), requests, progress)
    for case, decision, result in zip(tests.cases, decisions, plugin, strict=True):
        report.results.append(
            CaseResult(
                case, decision, result, meets(decision, case.expect), agreement(decision, result)
            )
        )
    return report


# -- rendering ----------------------------------------------------------------


def render_text(reports: list[PolicyReport]) -> str:
    lines: list[str] = []
    for report in reports:
        source = report.checked.source
        if report.note:
            lines.append(f"note: {source.path}: {report.note}")
        for r in report.results:
            where = f"{report.tests.source.path}:{r.case.line}" if report.tests else ""
            if r.passed:
                lines.append(f"PASS  {source.path}: {r.case.name}")
                continue
            lines.append(f"FAIL  {source.path}: {r.case.name}  ({where})")
            lines.append(f"  expected: {r.case.expect.describe()}")
            lines.append(f"  actual:   {explain.outcome(r.decision)}")
            if r.mismatch:
                lines.append(f"  why:      {r.mismatch}")
            if r.disagreement:
                lines.append(f"  {COMPILER_BUG}: {r.disagreement}")
            lines.append("  trace:")
            lines.extend("  " + x for x in explain.render_text(source, r.decision).splitlines())
    passed = sum(len(r.results) - r.failed for r in reports)
    failed = sum(r.failed for r in reports)
    lines.append(f"{passed} passed, {failed} failed")
    return "\n".join(lines)


def to_json(reports: list[PolicyReport]) -> dict[str, Any]:
    return {
        "policies": [
            {
                "policy": report.checked.source.path,
                "tests": report.tests.source.path if report.tests else None,
                "error": report.error,
                "note": report.note,
                "cases": [
                    {
                        "name": r.case.name,
                        "line": r.case.line,
                        "passed": r.passed,
                        "expected": r.case.expect.describe(),
                        "actual": explain.outcome(r.decision),
                        "mismatch": r.mismatch,
                        "compiler_bug": r.disagreement,
                        "explain": explain.to_json(report.checked.source, r.decision),
                    }
                    for r in report.results
                ],
            }
            for report in reports
        ],
        "passed": sum(len(r.results) - r.failed for r in reports),
        "failed": sum(r.failed for r in reports),
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
        if report.error or report.diagnostics:
            err = ET.SubElement(suite, "error", message=report.error or "invalid input")
            err.text = "\n".join(d.message for d in report.diagnostics)
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
