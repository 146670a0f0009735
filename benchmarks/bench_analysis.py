"""Time `analyse` on generated policies of 20, 50, 100 and 200 rules (prints figures; not a test).

`python benchmarks/bench_analysis.py [N ...]` times other sizes.  Each line
also shows the steps the analysis counted (the deterministic budget's unit,
default `budget.DEFAULT_STEPS`), so the time per step can be compared
across machines.
"""

from __future__ import annotations

import sys
import time

from hdrpolicy.analysis.budget import UNITS_PER_STEP, Budget
from hdrpolicy.analysis.findings import analyse
from hdrpolicy.diagnostics import Source
from hdrpolicy.frontend.pipeline import check_source


def generated(n: int) -> str:
    """A plausible big policy: routes, tenants, methods and a few patterns."""
    lines = ['policy "bench"', ""]
    for i in range(n):
        kind = i % 5
        if kind == 0:
            lines.append(f'deny 403 "r{i}" when path starts_with "/svc{i}/" and method != "GET"')
        elif kind == 1:
            lines.append(
                f'deny 401 "t{i}" when header x-tenant == "t{i}" and not header auth exists'
            )
        elif kind == 2:
            lines.append(f'allow when host == "h{i}.example.com" and method in ["GET", "HEAD"]')
        elif kind == 3:
            lines.append(f'deny 429 "s{i}" when header user-agent matches "^bot{i}/[0-9]+"')
        else:
            lines.append(f'deny 403 "x{i}" when header x-env == "e{i}" ignoring case')
    lines.append('default deny 404 "no route"')
    return "\n".join(lines) + "\n"


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [20, 50, 100, 200]
    for n in sizes:
        checked = check_source(Source("bench.hp", generated(n)), "bench")
        assert checked.policy is not None, checked.diagnostics
        budget = Budget(steps=10**9, ceiling_ms=10**9)
        start = time.monotonic()
        findings = analyse(checked.policy, checked.source, budget=budget)
        took = time.monotonic() - start
        steps = budget.spent // UNITS_PER_STEP
        codes: dict[str, int] = {}
        for d in findings:
            codes[d.code] = codes.get(d.code, 0) + 1
        print(
            f"{n} rules: analysed in {took:.2f} s, {steps} steps "
            f"({took * 1000 / max(1, steps):.2f} ms/step), "
            f"findings {dict(sorted(codes.items()))}"
        )


if __name__ == "__main__":
    main()
