"""CPU time of `hdrpolicy fmt --check` and `check` on the tutorial's policy (prints figures).

The pre-commit hooks run these on every commit, so their start-up is what a
user waits for.  The yardstick is `python -c "import lark, pydantic"`: the two
libraries every run needs.  Each command runs RUNS times (default 7) as a
child process; the figure is the median of its user + system CPU time, which
is steadier than wall time on a busy machine.  Not a test: it prints.

`python benchmarks/bench_startup.py [RUNS]`
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
POLICY = "examples/policies/header-authorization.hp"
CLI = [sys.executable, "-m", "hdrpolicy"]

COMMANDS: dict[str, list[str]] = {
    'python -c "import lark, pydantic"': [sys.executable, "-c", "import lark, pydantic"],
    f"hdrpolicy fmt --check {POLICY}": [*CLI, "fmt", "--check", POLICY],
    f"hdrpolicy check --budget-ms 0 {POLICY}": [*CLI, "check", "--budget-ms", "0", POLICY],
    f"hdrpolicy check {POLICY}": [*CLI, "check", POLICY],
}


def cpu_seconds(argv: list[str]) -> float:
    """User + system CPU time of one run of ARGV (which must succeed)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr.decode()}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    medians: dict[str, float] = {}
    for label, argv in COMMANDS.items():
        cpu_seconds(argv)  # warm the file cache and __pycache__
        medians[label] = statistics.median(cpu_seconds(argv) for _ in range(runs))
    base = medians[next(iter(COMMANDS))]
    print(f"median CPU time of {runs} runs (user + system):")
    for label, seconds in medians.items():
        print(f"  {seconds * 1000:6.0f} ms  {seconds / base:4.1f}x  {label}")


if __name__ == "__main__":
    main()
