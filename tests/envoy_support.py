"""Helpers for the tests that run a real Envoy: compile policies, start one Envoy for all.

Every test here starts Envoy itself (on 127.0.0.1, ports chosen by Envoy) and
stops it by PID; starts are few because V8 compiles each 2 MB plug-in.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hdrpolicy.backend.compiler import cached_wasm
from hdrpolicy.backend.toolchains import GO
from hdrpolicy.diagnostics import Source
from hdrpolicy.frontend import ir
from hdrpolicy.frontend.pipeline import Checked, check_source
from hdrpolicy.proxy.echo import EchoServer
from hdrpolicy.proxy.envoy import Envoy, Plugin, Upstream, bootstrap


def checked_text(text: str, name: str = "policy") -> Checked:
    checked = check_source(Source(f"{name}.hp", text), name)
    assert checked.ok and checked.policy is not None, (text, checked.diagnostics)
    return checked


def policy_of(checked: Checked) -> ir.Policy:
    assert checked.policy is not None
    return checked.policy


@dataclass
class Proxy:
    envoy: Envoy
    upstream: EchoServer

    def port(self, listener: str) -> int:
        return self.envoy.ports[listener]


@contextmanager
def envoy_with(
    listeners: dict[str, tuple[Path, bool]], edge: frozenset[str] = frozenset()
) -> Iterator[Proxy]:
    """One Envoy: listener name → (plugin.wasm, Envoy's path normalisation on), before an echo.

    The listeners named in `edge` have `use_remote_address` on (as the generated
    envoy.yaml); the others take the client address from `x-forwarded-for` as
    Envoy's defaults do, which is what `codec.deliver` models.
    """
    plugins = [
        Plugin(name, str(wasm), port=0, normalise_paths=normalise, use_remote_address=name in edge)
        for name, (wasm, normalise) in listeners.items()
    ]
    with EchoServer() as upstream:
        config = bootstrap(plugins, Upstream("127.0.0.1", upstream.port))
        with Envoy.start(config) as envoy:
            yield Proxy(envoy, upstream)


def wasm_of(checked: Checked) -> Path:
    return cached_wasm(checked, GO, lambda _: None)
