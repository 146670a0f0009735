"""Safe rollout in a real Envoy: a dry-run build lets through what the enforcing
build denies and counts it against the rule, a shadow build counts each
difference, the access log prints the deciding rule, and the counters reach
`/stats` and `/stats/prometheus` with their tags.

One Envoy (started and stopped by PID) serves every build, a listener each,
each with its own access log file.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import EXAMPLES
from envoy_support import policy_of
from hdrpolicy import clients, rollout
from hdrpolicy.codec import Protocol, SentRequest, deliver
from hdrpolicy.compiler import cached_wasm
from hdrpolicy.echo import TOKEN_HEADER, EchoServer
from hdrpolicy.envoy import Envoy, Plugin, Upstream, bootstrap
from hdrpolicy.pipeline import Checked, check_file
from hdrpolicy.toolchains import GO

pytestmark = pytest.mark.slow

TUTORIAL = check_file(EXAMPLES / "header-authorization.hp")
YES = check_file(EXAMPLES.parent / "readme" / "header-authorization-yes.hp")
POLICY = "header-authorization"
DECISION_HEADER = "x-hdrpolicy-rule"
BUILDS: dict[str, tuple[rollout.Options, Checked | None]] = {
    "enforce": (rollout.Options(decision_header=DECISION_HEADER), None),
    "dry-run": (rollout.Options(rollout.Mode.DRY_RUN), None),
    "shadow": (rollout.Options(), YES),
}


def sent(*allow: str) -> SentRequest:
    return SentRequest("GET", "/status", "example.com", tuple(("allow", v) for v in allow))


@dataclass
class Rig:
    envoy: Envoy
    upstream: EchoServer
    logs: dict[str, Path]

    def send(self, listener: str, protocol: Protocol, request: SentRequest) -> clients.Response:
        self.upstream.take()
        return clients.send(protocol, self.envoy.ports[listener], request)

    def counters(self) -> Counter[str]:
        text = self.envoy.admin("/stats?filter=^wasmcustom\\.hdrpolicy\\.") or ""
        out: Counter[str] = Counter()
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            out[name.removeprefix(rollout.ENVOY_METRIC_PREFIX)] = int(value)
        return out

    def access_log(self, listener: str, lines: int) -> list[str]:
        """The listener's access log, once it has `lines` lines (Envoy flushes it on a timer)."""
        deadline = time.monotonic() + 20
        while True:
            found = self.logs[listener].read_text().splitlines()
            if len(found) >= lines or time.monotonic() > deadline:
                return found
            time.sleep(0.2)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    workdir = tmp_path_factory.mktemp("rollout")
    logs = {name: workdir / f"{name}.log" for name in BUILDS}
    plugins = []
    for name, (options, shadow) in BUILDS.items():
        wasm = cached_wasm(TUTORIAL, GO, lambda _: None, options, shadow)
        logs[name].touch()
        plugins.append(Plugin(name, str(wasm), port=0, access_log=str(logs[name]), policy=POLICY))
    with EchoServer() as upstream:
        config = bootstrap(plugins, Upstream("127.0.0.1", upstream.port))
        with Envoy.start(config) as envoy:
            yield Rig(envoy, upstream, logs)


def counted(rig: Rig, before: Counter[str], want: Counter[str]) -> Counter[str]:
    """The counters' increase since `before`, once it reaches `want` (or after 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        delta = rig.counters() - before
        if delta == want or time.monotonic() > deadline:
            return delta
        time.sleep(0.1)


def model(listener: str, protocol: Protocol, request: SentRequest) -> rollout.Outcome:
    options, shadow = BUILDS[listener]
    live = rollout.Side(policy_of(TUTORIAL), "header-authorization.hp")
    next_ = rollout.Side(policy_of(shadow), "header-authorization-yes.hp") if shadow else None
    return rollout.run(options.build(live, next_), deliver(protocol, request))


def test_dry_run_lets_through_what_enforce_denies_and_counts_it_against_the_rule(rig: Rig) -> None:
    denied = sent("false")
    for protocol in Protocol:
        enforced = rig.send("enforce", protocol, denied)
        assert (enforced.status, enforced.body) == (403, b"Forbidden by ASM Wasm Plugin")
        assert enforced.header(DECISION_HEADER) == "header-authorization.hp:4"
        assert not rig.upstream.take()
        before = rig.counters()
        dry = rig.send("dry-run", protocol, denied)
        assert dry.status == 200 and dry.header(TOKEN_HEADER) == rig.upstream.token
        assert len(rig.upstream.take()) == 1
        assert dry.header(DECISION_HEADER) is None
        would = f"hdrpolicy.decisions.{POLICY}.dry_run.deny.line_4"
        assert counted(rig, before, Counter({would: 1})) == Counter({would: 1})
        assert model("dry-run", protocol, denied).counters == Counter({would: 1})


def test_the_access_log_shows_the_deciding_rule(rig: Rig) -> None:
    cases = [
        ("enforce", Protocol.HTTP1, ("true",), '200 hdrpolicy="allow - no-rule" shadow="-"'),
        (
            "enforce",
            Protocol.HTTP2,
            (),
            '403 hdrpolicy="deny 403 header-authorization.hp:4" shadow="-"',
        ),
        (
            "dry-run",
            Protocol.HTTP1,
            ("nope",),
            '200 hdrpolicy="would-deny 403 header-authorization.hp:4" shadow="-"',
        ),
        (
            "shadow",
            Protocol.HTTP1,
            ("yes",),
            '403 hdrpolicy="deny 403 header-authorization.hp:4" '
            'shadow="newly-allow allow - no-rule"',
        ),
    ]
    for i, (listener, protocol, allow, want) in enumerate(cases):
        path = f"/access-log-{i}"
        rig.send(
            listener,
            protocol,
            SentRequest("GET", path, "example.com", tuple(("allow", v) for v in allow)),
        )
        deadline = time.monotonic() + 20
        while not (found := [x for x in rig.access_log(listener, 0) if f" {path} " in x]):
            assert time.monotonic() < deadline, f"no access log line for {path}"
            time.sleep(0.2)
        assert found[0].split('" ', 1)[1] == want


def test_shadow_counts_exactly_the_allow_yes_requests_as_newly_allowed(rig: Rig) -> None:
    requests = [sent("yes"), sent("true"), sent(), sent("false"), sent("yes"), sent("true", "yes")]
    requests += [sent("yes", "yes"), sent("YES"), sent("yes")]
    newly = rollout.shadow_metric(POLICY, rollout.Comparison.NEWLY_ALLOW)
    for protocol in Protocol:
        before = rig.counters()
        want: Counter[str] = Counter()
        for request in requests:
            response = rig.send("shadow", protocol, request)
            outcome = model("shadow", protocol, request)
            want.update(outcome.counters)
            # The live policy is enforced: only `allow: true` passes.
            assert (response.status == 200) == (request.headers == (("allow", "true"),))
        got = counted(rig, before, want)
        assert got == want
        # Exactly the requests with one `allow: yes` (twice is also read as `yes, yes`,
        # which both versions deny).
        assert got[newly] == sum(r.headers == (("allow", "yes"),) for r in requests) == 3
        assert got[rollout.shadow_metric(POLICY, rollout.Comparison.AGREE)] == 6


def test_prometheus_shows_the_counters_with_their_tags(rig: Rig) -> None:
    rig.send("enforce", Protocol.HTTP1, sent("false"))
    text = rig.envoy.admin("/stats/prometheus") or ""
    labels = (
        'hdrpolicy_decisions{hdrpolicy_policy="header-authorization",hdrpolicy_mode="enforce",'
        'hdrpolicy_decision="deny",hdrpolicy_rule="line_4"} '
    )
    line = next((x for x in text.splitlines() if x.startswith(labels)), None)
    assert line is not None, [x for x in text.splitlines() if "hdrpolicy" in x]
    assert int(line.rsplit(" ", 1)[1]) >= 1
    assert re.search(
        r'^hdrpolicy_shadow\{hdrpolicy_policy="header-authorization",'
        r'hdrpolicy_comparison="newly_allow"\} \d+$',
        text,
        re.M,
    ), [x for x in text.splitlines() if "shadow" in x]
