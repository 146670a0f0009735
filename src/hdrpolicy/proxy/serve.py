"""`hdrpolicy run`: one command to try a policy in a real Envoy, like `opa run --server`.

Compiles the policy (reusing an up-to-date build), starts Envoy with the
plug-in in front of the upstream, says where to send requests and how to see
why one was denied, and keeps Envoy running until Ctrl-C (or SIGTERM), when
it stops Envoy by PID.  If Envoy dies, it says so and why.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import ip_address
from types import FrameType

from hdrpolicy.backend.build import Progress
from hdrpolicy.backend.compiler import cached_wasm
from hdrpolicy.backend.toolchains import GO
from hdrpolicy.frontend.pipeline import Checked
from hdrpolicy.proxy.envoy import DEFAULT_ADDRESS, Envoy, EnvoyError, Plugin, Upstream, bootstrap

# Envoy's own log: errors only, so the terminal shows what matters; the
# plug-in's deny log (debug) appears once turned on through the admin endpoint.
LOG_LEVEL = "error"


@dataclass(frozen=True)
class ServeOptions:
    port: int
    address: str = DEFAULT_ADDRESS
    upstream: Upstream | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.port < 2**16:
            raise EnvoyError(f"port `{self.port}` is not between 0 and 65535")
        try:
            ip_address(self.address)
        except ValueError:
            raise EnvoyError(f"`{self.address}` is not an IP address to listen on") from None


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the server like Ctrl-C does: Envoy is stopped, not orphaned."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve(
    checked: Checked,
    options: ServeOptions,
    say: Callable[[str], None],
    progress: Progress = lambda _: None,
    envoy_log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> None:
    """Serve until interrupted; raises EnvoyError if Envoy will not start or dies.

    Build failures raise BuildError.
    """
    assert checked.policy is not None
    name = checked.policy.name
    with _sigterm_as_interrupt():
        wasm = cached_wasm(checked, GO, progress)
        plugin = Plugin(name, str(wasm), address=options.address, port=options.port)
        config = bootstrap([plugin], options.upstream)
        progress("starting Envoy (V8 compiles the plug-in: this takes a few seconds)")
        try:
            envoy = Envoy.start(config, log_level=LOG_LEVEL, on_log=envoy_log)
        except KeyboardInterrupt:
            return
        try:
            _announce(envoy, name, options, say)
            status = envoy.proc.wait()
        except KeyboardInterrupt:
            envoy.stop()
            say(f"stopped Envoy (pid {envoy.pid})")
            return
        envoy.stop()
        raise EnvoyError(f"Envoy (pid {envoy.pid}) exited with status {status} (its log is above)")


def _announce(envoy: Envoy, name: str, options: ServeOptions, say: Callable[[str], None]) -> None:
    host = options.address
    url = f"http://{f'[{host}]' if ':' in host else host}:{envoy.port}/"
    behind = options.upstream.url if options.upstream else "a 200 reply that says allowed"
    say(f"Envoy (pid {envoy.pid}) serves the policy {name} on {url} in front of {behind}")
    say(f"  try:      curl -i {url}")
    say(
        f"  deny log: curl -X POST 'http://{DEFAULT_ADDRESS}:{envoy.admin_port}/logging?wasm=debug'"
    )
    say("  Ctrl-C stops Envoy")
