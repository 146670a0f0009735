"""Size and per-request time of the compiled tutorial policy against the tutorial's
hand-written plug-in (ported to the same SDK and built with the same flags).

Prints figures; asserts nothing (machines are noisy).  Run:
    python benchmarks/bench_plugin.py [--requests N]
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import tempfile
from pathlib import Path

from hdrpolicy.backend.build import build
from hdrpolicy.backend.compiler import compile_policy
from hdrpolicy.backend.host import _payload, driver
from hdrpolicy.backend.toolchains import GO

REPO = Path(__file__).resolve().parents[1]

# The tutorial's main.go, ported to the current SDK (see the file's comment).
HAND_WRITTEN = Path(__file__).parent / "handwritten" / "main.go"


def _run(wasm: Path, requests: list[list[tuple[bytes, bytes]]]) -> float:
    proc = subprocess.run(
        [str(driver()), str(wasm)], input=_payload(requests), capture_output=True, check=True
    )
    return float(json.loads(proc.stdout)["run_ns"]) / len(requests) / 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    base = [
        (b":method", b"GET"),
        (b":path", b"/status/418"),
        (b":authority", b"gw"),
        (b"user-agent", b"curl/8.4.0"),
        (b"accept", b"*/*"),
        (b"x-request-id", b"abc"),
    ]
    allowed = [[*base, (b"allow", b"true")]] * args.requests
    denied = [base] * args.requests
    with tempfile.TemporaryDirectory() as tmp:
        hand = Path(tmp) / "hand"
        hand.mkdir()
        (hand / "main.go").write_text(HAND_WRITTEN.read_text())
        sdk, version = GO.requires[0]
        (hand / "go.mod").write_text(
            f"module hand\n\ngo {GO.go_directive}\n\nrequire {sdk} {version}\n"
        )
        (hand / "go.sum").write_text(GO.go_sum)
        build(hand, GO, lambda _: None)
        ours = compile_policy(
            REPO / "examples/policies/header-authorization.hp", Path(tmp) / "ours", GO
        )
        assert ours.checked.ok
        rows = {
            "hand-written": hand / "plugin.wasm",
            "hdrpolicy": Path(tmp) / "ours" / "plugin.wasm",
        }
        print(f"{'plug-in':<14}{'bytes':>10}{'gzip':>10}{'allow µs/req':>15}{'deny µs/req':>14}")
        for name, wasm in rows.items():
            data = wasm.read_bytes()
            print(
                f"{name:<14}{len(data):>10}{len(gzip.compress(data, 9)):>10}"
                f"{_run(wasm, allowed):>15.2f}{_run(wasm, denied):>14.2f}"
            )
    print(f"({args.requests} requests each, one VM, SDK emulator in wazero; lower is better)")


if __name__ == "__main__":
    main()
