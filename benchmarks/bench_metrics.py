"""Cost per request of the counters and filter state, in a real Envoy (prints figures).

Builds the tutorial's policy three ways: bare (`--no-metrics
--no-filter-state`), with the counters only (`--no-filter-state`), and as
`compile` builds it by default (counters and filter state); starts one Envoy
(`--concurrency 1`, a `direct_response` behind the plug-in) per build, and
drives each in turn with `wrk` (Debian's, on PATH), interleaved over RUNS
repetitions so the machine's load falls on all alike.  The figure is Envoy's
CPU time (user + system, from /proc/PID/stat) per request, median over the
repetitions, for allowed (`allow: true`) and denied requests.  Not a test: it
prints.

`python benchmarks/bench_metrics.py [RUNS] [SECONDS]`
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

from hdrpolicy import rollout
from hdrpolicy.compiler import cached_wasm
from hdrpolicy.envoy import Envoy, Plugin, bootstrap
from hdrpolicy.pipeline import check_file
from hdrpolicy.toolchains import GO

REPO = Path(__file__).resolve().parents[1]
POLICY = REPO / "examples" / "policies" / "header-authorization.hp"
BUILDS = {
    "bare": rollout.Options(metrics=False, filter_state=False),
    "counters": rollout.Options(filter_state=False),
    "counters + filter state": rollout.Options(),
}
REQUESTS = {"allow": "allow: true", "deny": "allow: false"}
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def wrk(port: int, header: str, seconds: int) -> int:
    """Requests completed by one wrk run (1 thread, 4 connections)."""
    out = subprocess.run(
        ["wrk", "-t1", "-c4", f"-d{seconds}s", "-H", header, f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = re.search(r"(\d+) requests in", out)
    if found is None:
        raise SystemExit(f"cannot read wrk's output:\n{out}")
    return int(found.group(1))


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not on PATH (apt-get install wrk)")
    checked = check_file(POLICY)
    wasms = {name: cached_wasm(checked, GO, print, options) for name, options in BUILDS.items()}
    samples: dict[tuple[str, str], list[float]] = {}
    with ExitStack() as stack:
        envoys = {}
        for name, wasm in wasms.items():
            config = bootstrap([Plugin("bench", str(wasm), port=0)], None)
            envoys[name] = stack.enter_context(Envoy.start(config))
        for _ in range(runs):
            for name, envoy in envoys.items():
                for kind, header in REQUESTS.items():
                    wrk(envoy.port, header, 1)  # warm up
                    before = cpu_seconds(envoy.pid)
                    done = wrk(envoy.port, header, seconds)
                    spent = cpu_seconds(envoy.pid) - before
                    samples.setdefault((name, kind), []).append(spent / done * 1e6)
    print(f"Envoy CPU µs per request, median of {runs} runs of {seconds} s (wrk -t1 -c4):")
    print(f"| build | {' | '.join(REQUESTS)} |")
    print("| --- | " + " | ".join("---" for _ in REQUESTS) + " |")
    bare = {kind: statistics.median(samples[("bare", kind)]) for kind in REQUESTS}
    for name in BUILDS:
        cells = []
        for kind in REQUESTS:
            value = statistics.median(samples[(name, kind)])
            extra = "" if name == "bare" else f" ({value - bare[kind]:+.1f})"
            cells.append(f"{value:.1f}{extra}")
        print(f"| {name} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
