"""The command line: options → one library call → one renderer.  No logic lives here."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from hdrpolicy import __version__
from hdrpolicy.build import BuildError
from hdrpolicy.compiler import compile_policy
from hdrpolicy.diagnostics import Diagnostic, Severity, Source, render_json, render_text
from hdrpolicy.pipeline import Checked, check_file
from hdrpolicy.toolchains import TOOLCHAINS, ToolchainName

app = typer.Typer(
    name="hdrpolicy",
    help="Compile header policies into Envoy proxy-wasm plug-ins.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Exit statuses.
OK, FAILED, SKIPPED_BUILD = 0, 1, 3


class OutputFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


def _err(message: str) -> None:
    typer.echo(message, err=True)


def _progress(message: str) -> None:
    """Progress for long steps, on a terminal only: CI logs and pipes stay quiet."""
    if sys.stderr.isatty():
        typer.echo(f"… {message}", err=True)


def _print_diagnostics(results: list[Checked], fmt: OutputFormat) -> None:
    items: list[tuple[Source, Diagnostic]] = [(c.source, d) for c in results for d in c.diagnostics]
    if fmt is OutputFormat.JSON:
        typer.echo(render_json(items))
        return
    for source, d in items:
        _err(render_text(source, d) + "\n")
    errors = sum(d.severity is Severity.ERROR for _, d in items)
    warnings = len(items) - errors
    if items:
        _err(f"{errors} error(s), {warnings} warning(s)")


def _read_checked(path: Path) -> Checked | None:
    try:
        return check_file(path)
    except OSError as exc:
        _err(f"error: cannot read `{path}`: {exc.strerror or exc}")
        return None


@app.command()
def check(
    policies: Annotated[list[Path], typer.Argument(help="Policy files (.hp).")],
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="Diagnostics as text or JSON.")
    ] = OutputFormat.TEXT,
) -> None:
    """Check policies and print diagnostics; exit 1 if any has an error."""
    results = []
    unreadable = False
    for path in policies:
        checked = _read_checked(path)
        if checked is None:
            unreadable = True
        else:
            results.append(checked)
    _print_diagnostics(results, output_format)
    if unreadable or not all(c.ok for c in results):
        raise typer.Exit(FAILED)
    if output_format is OutputFormat.TEXT:
        _err(f"ok: {len(results)} polic{'y' if len(results) == 1 else 'ies'} checked")


@app.command(name="compile")
def compile_command(
    policy: Annotated[Path, typer.Argument(help="The policy file (.hp).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output directory.")] = Path("dist"),
    toolchain: Annotated[
        ToolchainName, typer.Option(help="`go` (proxy-wasm/proxy-wasm-go-sdk) or `tinygo`.")
    ] = ToolchainName.GO,
    no_build: Annotated[
        bool, typer.Option("--no-build", help="Write the Go sources only.")
    ] = False,
) -> None:
    """Compile a policy into DIR: main.go, go.mod, go.sum, Dockerfile and plugin.wasm."""
    try:
        result = compile_policy(
            policy, out, TOOLCHAINS[toolchain], build_wasm=not no_build, progress=_progress
        )
    except OSError as exc:
        _err(f"error: {exc.strerror or exc}: `{exc.filename or policy}`")
        raise typer.Exit(FAILED) from None
    except BuildError as exc:
        _err(f"error: {exc.message}; `{out}` was left unchanged")
        if exc.output:
            _err(exc.output)
        raise typer.Exit(FAILED) from None
    _print_diagnostics([result.checked], OutputFormat.TEXT)
    if not result.checked.ok:
        raise typer.Exit(FAILED)
    for name in result.removed:
        _err(f"removed stale `{out / name}`")
    if result.skipped_build is not None:
        _err(f"warning: {result.skipped_build.message}")
        _err(f"  = help: {result.skipped_build.output}")
        _err(f"wrote {', '.join(result.written)} to `{out}`")
        raise typer.Exit(SKIPPED_BUILD)
    _err(f"wrote {', '.join(result.written)} to `{out}`")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hdrpolicy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """hdrpolicy: header policies → Envoy proxy-wasm plug-ins."""


def main() -> None:
    app()
