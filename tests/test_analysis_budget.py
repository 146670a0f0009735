"""The analysis's budget: counted work, so its answer depends on the policy alone.

Timing is the benchmark's job; these tests only bound wall time with generous
slack where the budget promises a bound (the wall-clock ceiling), and check
that output does not change with machine load.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from conftest import EXAMPLES, REPO, hdrpolicy
from hdrpolicy.analysis.budget import Budget
from hdrpolicy.analysis.diff import diff_policies
from hdrpolicy.analysis.findings import analyse
from hdrpolicy.diagnostics import Source
from hdrpolicy.frontend import ir
from hdrpolicy.frontend.pipeline import check_source

# How far past its ceiling an analysis may end (one solver call, process noise).
SLACK_S = 3.0


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bench", REPO / "benchmarks" / "bench_analysis.py"
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def _hogs() -> list[subprocess.Popen[bytes]]:
    """Busy loops on every core (and one more), so the analysis competes for the CPU."""
    return [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range((os.cpu_count() or 2) + 1)
    ]


# Saturates both cores for half a minute on purpose: slow.
@pytest.mark.slow
def test_same_findings_on_every_run_even_with_the_cpu_saturated(tmp_path: Path) -> None:
    generated = tmp_path / "generated-200.hp"
    generated.write_text(_bench().generated(200))
    files = [*map(str, sorted(EXAMPLES.glob("*.hp"))), str(generated)]
    runs = []
    for n in range(5):
        hogs = _hogs() if n in (1, 3) else []
        try:
            proc = hdrpolicy("check", "--strict", *files)
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
        runs.append((proc.returncode, proc.stdout, proc.stderr))
    assert all(run == runs[0] for run in runs)
    code, _, stderr = runs[0]
    # The default budget analyses all of it: notes only, no HP405, so --strict passes.
    assert code == 0, stderr
    assert "HP405" not in stderr and stderr.count("note[HP404]") == 42


def _checked(text: str) -> tuple[ir.Policy, Source]:
    checked = check_source(Source("big.hp", text), "big")
    assert checked.ok and checked.policy is not None
    return checked.policy, checked.source


def _list(n: int) -> str:
    values = ", ".join(f'"v{i}"' for i in range(n))
    return f'deny 403 "x" when header a not in [{values}]\n'


def test_a_500_value_list_is_analysed_within_the_default_budget() -> None:
    policy, source = _checked(_list(500))
    assert analyse(policy, source) == []


def test_a_ceiling_is_honoured_while_building_the_analysis() -> None:
    """2,000 and 1,000 rules with a 1 s ceiling: the analysis ends about then, saying so."""
    bench = _bench()
    for rules in (1000, 2000):
        policy, source = _checked(bench.generated(rules))
        start = time.monotonic()
        found = analyse(policy, source, ceiling_ms=1000)
        took = time.monotonic() - start
        assert took < 1 + SLACK_S, (rules, took)
        assert found[-1].code == "HP405" and "wall-clock ceiling of 1 s" in found[-1].message


def test_check_with_budget_ms_ends_within_it(tmp_path: Path) -> None:
    policy = tmp_path / "big.hp"
    policy.write_text(_bench().generated(1000))
    start = time.monotonic()
    baseline = hdrpolicy("check", "--budget", "0", str(policy))
    front = time.monotonic() - start
    start = time.monotonic()
    proc = hdrpolicy("check", "--budget-ms", "1000", str(policy))
    took = time.monotonic() - start
    assert baseline.returncode == 0 and proc.returncode == 0, proc.stderr
    assert "HP405" in proc.stderr and "--budget-ms" in proc.stderr
    assert took < front + 1 + SLACK_S


def test_diff_of_long_lists_is_complete_and_quick(tmp_path: Path) -> None:
    old, new = tmp_path / "old.hp", tmp_path / "new.hp"
    old.write_text(_list(500))
    new.write_text(_list(501))
    proc = hdrpolicy("diff", str(old), str(new))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.startswith("1 change(s)")
    assert 'a: "v500"' in proc.stdout and "incomplete" not in proc.stdout


def test_an_incomplete_diff_exits_2_and_says_why(tmp_path: Path) -> None:
    old, new = tmp_path / "old.hp", tmp_path / "new.hp"
    old.write_text(_list(3))
    new.write_text(_list(4))
    proc = hdrpolicy("diff", "--budget", "1", str(old), str(new))
    assert proc.returncode == 2
    assert "diff incomplete: its budget of 1 steps is spent" in proc.stdout
    assert "0 change" not in proc.stdout


def test_the_budget_counts_work_not_time() -> None:
    """The step at which a budget runs out is the same in every run."""
    bench = _bench()
    policy, source = _checked(bench.generated(60))
    first = analyse(policy, source, steps=500)
    assert first[-1].code == "HP405" and "budget of 500 steps" in first[-1].message
    spent = []
    for n in range(3):
        # Whatever z3 did before in this process does not change the count.
        other, other_source = _checked(bench.generated(10 + n))
        analyse(other, other_source)
        budget = Budget(steps=10**6)
        analyse(policy, source, budget=budget)
        spent.append(budget.spent)
        assert analyse(policy, source, steps=500) == first
    assert spent[0] == spent[1] == spent[2]
    old, new = _checked(_list(30))[0], _checked(_list(31))[0]
    assert diff_policies(old, new, steps=10).incomplete is not None


def test_a_diff_of_list_values_stops_at_the_same_value_every_time() -> None:
    """The values of a changed list are examined within the diff's budget: past it the
    diff says so, after the same values on every run."""

    def policy(values: list[str]) -> ir.Policy:
        items = ", ".join(f'"{v}"' for v in values)
        text = f"list t = [{items}]\nallow when header x in t\ndefault deny 401\n"
        return _checked(text)[0]

    old = policy([f"v{i}" for i in range(20)])
    new = policy([f"v{i}" for i in range(5, 20)] + [f"w{i}" for i in range(5)])
    full = diff_policies(old, new)
    assert full.complete and len(full.values) == 10
    stopped = []
    for steps in range(20, 400, 10):
        first, again = diff_policies(old, new, steps=steps), diff_policies(old, new, steps=steps)
        assert first.values == again.values and first.incomplete == again.incomplete
        if first.changes == full.changes and 0 < len(first.values) < len(full.values):
            assert first.incomplete is not None and "budget" in first.incomplete
            assert first.values == full.values[: len(first.values)]
            stopped.append(steps)
    assert stopped, "no budget stops among the values"


def test_the_analysis_benchmark_still_runs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The benchmark the README's figures come from runs (on a small size) and
    counts steps in the budget's unit."""
    monkeypatch.setattr(sys, "argv", ["bench_analysis.py", "5"])
    _bench().main()
    line = capsys.readouterr().out
    found = re.match(r"5 rules: analysed in [0-9.]+ s, ([0-9]+) steps", line)
    assert found is not None, line
    assert 0 < int(found.group(1)) < 1000
