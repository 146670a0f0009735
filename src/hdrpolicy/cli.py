"""The command line: options → one library call → one renderer.  No logic lives here."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

# Only what `fmt` and `check` need is imported here: the pre-commit hooks run
# them on every commit.  Everything else (z3, oras, requests, jsonschema, the
# Go build, Docker) is imported inside the command that uses it.
from hdrpolicy import __version__
from hdrpolicy.analysis import suppress
from hdrpolicy.analysis.budget import DEFAULT_CEILING_MS, DEFAULT_STEPS
from hdrpolicy.backend.toolchains import TOOLCHAINS, ToolchainName
from hdrpolicy.diagnostics import (
    Diagnostic,
    Severity,
    Source,
    has_errors,
    render_json,
    render_text,
    sort_key,
)
from hdrpolicy.errors import HdrpolicyError
from hdrpolicy.files import write_atomically
from hdrpolicy.fmt import format_file, format_stdin
from hdrpolicy.frontend.checker import PROXY_SET_HEADERS, is_token
from hdrpolicy.frontend.pipeline import Checked, check_file
from hdrpolicy.proxy import envoy
from hdrpolicy.shipping.manifests import ManifestError, Phase
from hdrpolicy.shipping.redact import redact

# Exit statuses.
OK, FAILED, INVALID, SKIPPED_BUILD = 0, 1, 2, 3


def _err(message: str) -> None:
    """Every message to stderr goes through here: no credential is ever printed."""
    typer.echo(redact(message), err=True)


def report_error(exc: HdrpolicyError) -> None:
    """The one rendering of an operational error: `error: MESSAGE`, then its detail."""
    _err(f"error: {exc.message}")
    if exc.output:
        _err(exc.output)


class _Commands(TyperGroup):
    """Runs every command: an operational error it raises is reported once, here (exit 1)."""

    def invoke(self, ctx: Any) -> Any:  # Typer's vendored Click context
        try:
            return super().invoke(ctx)
        except HdrpolicyError as exc:
            report_error(exc)
            raise typer.Exit(FAILED) from None


if TYPE_CHECKING:
    from hdrpolicy import rollout

app = typer.Typer(
    cls=_Commands,
    name="hdrpolicy",
    help="Compile header policies into Envoy proxy-wasm plug-ins.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)

# The rule analysis's wall-clock safety net in `check`/`diff`, and (smaller) in `compile`;
# its real limit is the deterministic step budget (`budget.DEFAULT_STEPS`).
ANALYSIS_CEILING_MS = DEFAULT_CEILING_MS
COMPILE_ANALYSIS_CEILING_MS = 30_000
BudgetSteps = Annotated[
    int,
    typer.Option(
        "--budget",
        min=0,
        help="Work the rule analysis may do per policy, in counted steps (the same result on "
        "any machine); 0 turns it off.",
    ),
]
CeilingMs = Annotated[
    int,
    typer.Option(
        "--budget-ms",
        min=0,
        help="Wall-clock safety net for the analysis, in ms (reported as HP405 if reached); "
        "0 turns the analysis off.",
    ),
]


# Registry options, shared by `compile --push` and `push`.
Username = Annotated[str | None, typer.Option(help="Registry user name.")]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the registry password from stdin.")
]
PlainHttp = Annotated[
    bool, typer.Option("--plain-http", help="Talk HTTP, not HTTPS, to the registry.")
]
Insecure = Annotated[
    bool, typer.Option("--insecure", help="Do not verify the registry's TLS certificate.")
]
Force = Annotated[bool, typer.Option("--force", help="Move a tag that names a different image.")]


class OutputFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class Mode(StrEnum):
    """What a build does with a deny (`compile --dry-run` builds `dry-run`)."""

    ENFORCE = "enforce"
    DRY_RUN = "dry-run"


def _written(path: Path, text: str) -> bool:
    """Write a file the user named; a failure is one line naming the file (False)."""
    try:
        write_atomically(path, text)
    except OSError as exc:
        _err(f"error: cannot write `{path}`: {exc.strerror or exc}")
        return False
    return True


def _writable(path: Path) -> None:
    """Refuse, before any work, a report path that could not be written afterwards."""
    directory = path.parent
    problem = None
    if path.is_dir():
        problem = errno.EISDIR
    elif not directory.exists():
        problem = errno.ENOENT
    elif not directory.is_dir():
        problem = errno.ENOTDIR
    elif not os.access(directory, os.W_OK | os.X_OK) or (
        path.exists() and not os.access(path, os.W_OK)
    ):
        problem = errno.EACCES
    if problem is not None:
        _err(f"error: cannot write `{path}`: {os.strerror(problem)}")
        raise typer.Exit(FAILED)


def _progress(message: str) -> None:
    """One line per long step, on a terminal and in CI logs alike (a silent minute looks hung)."""
    typer.echo(f"… {message}", err=True)


def _print_diagnostics(results: list[Checked], fmt: OutputFormat) -> None:
    everything = [(c.source, d) for c in results for d in c.diagnostics]
    # Suppressed findings show in SARIF only (marked as such), never here.
    items: list[tuple[Source, Diagnostic]] = [(s, d) for s, d in everything if not d.suppression]
    suppressed = len(everything) - len(items)
    if fmt is OutputFormat.JSON:
        typer.echo(render_json(items))
        return
    for source, d in items:
        _err(render_text(source, d) + "\n")
    counts = {sev: sum(d.severity is sev for _, d in items) for sev in Severity}
    if items:
        summary = f"{counts[Severity.ERROR]} error(s), {counts[Severity.WARNING]} warning(s)"
        if counts[Severity.NOTE]:
            summary += f", {counts[Severity.NOTE]} note(s)"
        if suppressed:
            summary += f", {suppressed} suppressed"
        _err(summary)
    elif suppressed:
        _err(f"{suppressed} suppressed")


STDIN = Path("-")


def _policy_files(paths: list[Path]) -> list[Path]:
    """The files named, a directory standing for every `.hp` file below it (sorted)."""
    files: list[Path] = []
    for path in paths:
        if path != STDIN and path.is_dir():
            found = sorted(p for p in path.rglob("*.hp") if p.is_file())
            if not found:
                raise HdrpolicyError(f"no policy files (.hp) below `{path}`")
            files.extend(found)
        else:
            files.append(path)
    return files


def _read_checked(path: Path) -> Checked | None:
    try:
        return check_file(path)
    except OSError as exc:
        _err(f"error: cannot read `{path}`: {exc.strerror or exc}")
        return None


class CheckFormat(StrEnum):
    TEXT = "text"
    JSON = "json"
    SARIF = "sarif"


def _analysed(checked: Checked, steps: int, ceiling_ms: int, strict: bool) -> Checked:
    """Add the analysis warnings (errors with --strict) to a policy that checked clean.

    Suppression comments are read (and checked) even with the analysis off.
    """
    if not checked.ok or checked.policy is None:
        return checked
    suppressions, findings = suppress.collect(checked.source, checked.policy)
    if steps > 0 and ceiling_ms > 0:
        from hdrpolicy.analysis.findings import analyse, is_stop  # z3: only when the analysis runs

        found = analyse(checked.policy, checked.source, steps, ceiling_ms)
        complete = not any(is_stop(d) for d in found)
        findings += suppress.apply(suppressions, found, complete)
    if strict:
        findings = [
            dataclasses.replace(d, severity=Severity.ERROR)
            if d.severity is Severity.WARNING and not d.suppression
            else d
            for d in findings
        ]
    checked.diagnostics = sorted([*checked.diagnostics, *findings], key=sort_key)
    return checked


@app.command()
def check(
    policies: Annotated[
        list[Path], typer.Argument(help="Policy files (.hp), or directories to search for them.")
    ],
    output_format: Annotated[
        CheckFormat, typer.Option("--format", help="Diagnostics as text, JSON or SARIF 2.1.0.")
    ] = CheckFormat.TEXT,
    strict: Annotated[
        bool, typer.Option("--strict", help="Analysis findings are errors, not warnings.")
    ] = False,
    budget: BudgetSteps = DEFAULT_STEPS,
    budget_ms: CeilingMs = ANALYSIS_CEILING_MS,
) -> None:
    """Check policies: errors, then exact rule analysis; exit 1 if anything is an error."""
    results = []
    unreadable = False
    for path in _policy_files(policies):
        checked = _read_checked(path)
        if checked is None:
            unreadable = True
        else:
            results.append(_analysed(checked, budget, budget_ms, strict))
    items = [(c.source, d) for c in results for d in c.diagnostics]
    if output_format is CheckFormat.SARIF:
        from hdrpolicy.sarif import render_sarif

        typer.echo(render_sarif(items))
    else:
        _print_diagnostics(results, OutputFormat(output_format.value))
    failed = unreadable or any(has_errors(c.diagnostics) or c.policy is None for c in results)
    if failed:
        raise typer.Exit(FAILED)
    if output_format is CheckFormat.TEXT:
        _err(f"ok: {len(results)} polic{'y' if len(results) == 1 else 'ies'} checked")


@app.command(name="fmt")
def fmt_command(
    files: Annotated[
        list[Path],
        typer.Argument(help="Policy files (.hp), directories, or `-`: standard input to output."),
    ],
    check_only: Annotated[
        bool, typer.Option("--check", help="Change nothing; print the diff and exit 1.")
    ] = False,
) -> None:
    """Rewrite policies in the canonical layout (comments kept, meaning unchanged)."""
    failed = False
    for path in _policy_files(files):
        if path == STDIN:
            failed |= not _format_stdin(check_only)
            continue
        try:
            formatted = format_file(path)
        except OSError as exc:
            _err(f"error: cannot read `{path}`: {exc.strerror or exc}")
            failed = True
            continue
        if formatted.text is None:
            for d in formatted.diagnostics:
                _err(render_text(formatted.source, d) + "\n")
            _err(f"error: `{path}` has errors and was not formatted")
            failed = True
            continue
        if not formatted.changed:
            continue
        if check_only:
            typer.echo(formatted.diff(), nl=False)
            failed = True
        elif _written(path, formatted.text):
            _err(f"reformatted `{path}`")
        else:
            failed = True
    if failed:
        raise typer.Exit(FAILED)


def _format_stdin(check_only: bool) -> bool:
    """`fmt -`: the formatted text on standard output (`--check`: the diff, if any)."""
    formatted = format_stdin(sys.stdin.buffer.read())
    if formatted.text is None:
        for d in formatted.diagnostics:
            _err(render_text(formatted.source, d) + "\n")
        _err("error: standard input has errors and was not formatted")
        return False
    if not check_only:
        typer.echo(formatted.text, nl=False)
        return True
    if formatted.changed:
        typer.echo(formatted.diff(), nl=False)
        return False
    return True


class DiffFormat(StrEnum):
    TEXT = "text"
    JSON = "json"
    MARKDOWN = "markdown"


@app.command(name="diff")
def diff_command(
    old: Annotated[str, typer.Argument(help="A policy file, or REV:PATH from git.")],
    new: Annotated[str, typer.Argument(help="A policy file, or REV:PATH from git.")],
    output_format: Annotated[
        DiffFormat, typer.Option("--format", help="text, json or markdown (for a PR comment).")
    ] = DiffFormat.TEXT,
    budget: Annotated[
        int,
        typer.Option(
            "--budget",
            help="Work the comparison may do, in counted steps (the same result on any "
            "machine); past it the diff is incomplete (exit 2).",
        ),
    ] = DEFAULT_STEPS,
    budget_ms: Annotated[
        int,
        typer.Option(
            "--budget-ms", help="Wall-clock safety net, in ms; past it the diff is incomplete."
        ),
    ] = ANALYSIS_CEILING_MS,
) -> None:
    """What changes in behaviour from OLD to NEW, each with a witness request.

    Exit 0 when equivalent, 1 when behaviour changes, 2 when a policy is
    invalid or the comparison could not be finished (it says why).
    """
    from hdrpolicy.analysis import diff

    loaded = []
    for spec in (old, new):
        try:
            checked = diff.load_policy(spec)
        except OSError as exc:
            _err(f"error: cannot read `{spec}`: {exc.strerror or exc}")
            raise typer.Exit(INVALID) from None
        if not checked.ok or checked.policy is None:
            _print_diagnostics([checked], OutputFormat.TEXT)
            raise typer.Exit(INVALID)
        loaded.append(checked.policy)
    if budget <= 0 or budget_ms <= 0:
        _err("error: `diff` needs a positive --budget and --budget-ms")
        raise typer.Exit(INVALID)
    result = diff.diff_policies(loaded[0], loaded[1], steps=budget, ceiling_ms=budget_ms)
    render = {
        DiffFormat.TEXT: diff.render_text,
        DiffFormat.JSON: diff.render_json,
        DiffFormat.MARKDOWN: diff.render_markdown,
    }[output_format]
    typer.echo(render(result, old, new), nl=False)
    if not result.complete:
        raise typer.Exit(INVALID)
    if not result.equivalent:
        raise typer.Exit(FAILED)


@app.command(name="compile")
def compile_command(
    ctx: typer.Context,
    policy: Annotated[Path, typer.Argument(help="The policy file (.hp).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output directory.")] = Path("dist"),
    toolchain: Annotated[
        ToolchainName, typer.Option(help="`go` (proxy-wasm/proxy-wasm-go-sdk) or `tinygo`.")
    ] = ToolchainName.GO,
    no_build: Annotated[
        bool, typer.Option("--no-build", help="Write the Go sources only.")
    ] = False,
    namespace: Annotated[
        str | None, typer.Option(help="Manifest namespace (default istio-system / default).")
    ] = None,
    selector: Annotated[
        list[str] | None,
        typer.Option(help="WasmPlugin selector label KEY=VALUE (repeatable)."),
    ] = None,
    target_ref: Annotated[
        str | None, typer.Option(help="Attach to KIND/NAME (e.g. Gateway/eg) instead.")
    ] = None,
    phase: Annotated[Phase, typer.Option(help="WasmPlugin phase.")] = Phase.AUTHN,
    priority: Annotated[int | None, typer.Option(help="WasmPlugin priority.")] = None,
    pull_secret: Annotated[
        str | None, typer.Option(help="imagePullSecret for a private registry.")
    ] = None,
    fail_open: Annotated[
        bool, typer.Option("--fail-open", help="failStrategy FAIL_OPEN (default FAIL_CLOSE).")
    ] = False,
    push: Annotated[
        str | None, typer.Option("--push", help="Then push the image to REF (see `push`).")
    ] = None,
    username: Username = None,
    password_stdin: PasswordStdin = False,
    plain_http: PlainHttp = False,
    insecure: Insecure = False,
    force: Force = False,
    docker: Annotated[
        bool,
        typer.Option("--docker", help="With --push: build and push with a Docker engine."),
    ] = False,
    analysis_budget: Annotated[
        int, typer.Option(min=0, help="Steps for the rule analysis's warnings; 0 turns it off.")
    ] = DEFAULT_STEPS,
    analysis_budget_ms: Annotated[
        int,
        typer.Option(min=0, help="Wall-clock safety net for the analysis, in ms; 0 turns it off."),
    ] = COMPILE_ANALYSIS_CEILING_MS,
    envoy_address: Annotated[
        str, typer.Option(help="envoy.yaml: the listener's IP address.")
    ] = envoy.DEFAULT_ADDRESS,
    envoy_port: Annotated[int, typer.Option(help="envoy.yaml: the listener's port.")] = (
        envoy.DEFAULT_PORT
    ),
    envoy_admin_port: Annotated[
        int, typer.Option(help="envoy.yaml: the admin endpoint's port, on 127.0.0.1.")
    ] = 9901,
    upstream: Annotated[
        str | None,
        typer.Option(help="envoy.yaml: the service, http://HOST[:PORT] (default: a 200 reply)."),
    ] = None,
    envoy_wasm_path: Annotated[
        str | None,
        typer.Option(help="envoy.yaml: load the plug-in from this path instead of inline."),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Never deny: count and log what the policy would deny."),
    ] = False,
    shadow: Annotated[
        Path | None,
        typer.Option(help="Also evaluate this policy on every request, counting differences."),
    ] = None,
    no_metrics: Annotated[
        bool, typer.Option("--no-metrics", help="Define and count no Envoy stats.")
    ] = False,
    no_filter_state: Annotated[
        bool,
        typer.Option("--no-filter-state", help="Put no decision into Envoy's filter state."),
    ] = False,
    decision_header: Annotated[
        str | None,
        typer.Option(help="Name the deciding rule in this response header on denies."),
    ] = None,
    log_values: Annotated[
        bool,
        typer.Option("--log-values", help="Show header values in dry-run and shadow log lines."),
    ] = False,
) -> None:
    """Compile a policy into DIR: Go sources, plugin.wasm, Dockerfile, OCI image, manifests."""
    from hdrpolicy.backend.build import BuildError
    from hdrpolicy.backend.compiler import SwitchFailed, compile_policy
    from hdrpolicy.shipping.manifests import DeployOptions, TargetRef
    from hdrpolicy.shipping.push import parse_reference

    if docker and push is None:
        raise HdrpolicyError("--docker goes with --push REF")
    _refuse_ignored_options(ctx, no_build=no_build, push=push is not None)
    rollout_options = _rollout_options(
        dry_run, shadow, not no_metrics, not no_filter_state, decision_header, log_values
    )
    try:
        deploy = DeployOptions(
            namespace=namespace,
            selector=_pairs(selector, "--selector") if selector else None,
            target_ref=TargetRef.parse(target_ref) if target_ref else None,
            phase=phase,
            priority=priority,
            pull_secret=pull_secret,
            fail_open=fail_open,
            wasm_path=envoy_wasm_path,
            envoy_address=envoy_address,
            envoy_port=envoy_port,
            envoy_admin_port=envoy_admin_port,
            upstream=envoy.Upstream.parse(upstream) if upstream else None,
        )
        if push is not None:
            parse_reference(push)  # a bad reference fails before the build, not after
        password = _password(password_stdin)
        result = compile_policy(
            policy,
            out,
            TOOLCHAINS[toolchain],
            build_wasm=not no_build,
            deploy=deploy,
            progress=_progress,
            options=rollout_options,
            shadow_path=shadow,
        )
    except OSError as exc:
        raise HdrpolicyError(f"{exc.strerror or exc}: `{exc.filename or policy}`") from exc
    except BuildError as exc:
        if isinstance(exc, SwitchFailed):
            raise
        raise BuildError(f"{exc.message}; `{out}` was left unchanged", exc.output) from exc
    for note in result.recovered:
        _err(f"note: {note}")
    if result.checked.ok:
        _analysed(result.checked, analysis_budget, analysis_budget_ms, strict=False)
    both = [result.checked] + ([result.shadow] if result.shadow is not None else [])
    _print_diagnostics(both, OutputFormat.TEXT)
    if not all(c.ok for c in both):
        raise typer.Exit(FAILED)
    for name in result.removed:
        _err(f"removed stale `{out / name}`")
    if result.skipped_build is not None:
        _err(f"warning: {result.skipped_build.message}")
        _err(f"  = help: {result.skipped_build.output}")
        _err(f"wrote {', '.join(result.written)} to `{out}`")
        raise typer.Exit(SKIPPED_BUILD)
    _err(f"wrote {', '.join(result.written)} to `{out}`")
    if push is not None:
        if result.image_digest is None:
            raise HdrpolicyError("--push needs plugin.wasm: drop --no-build")
        if docker:
            _docker_push(out, push)
        else:
            _push(out, push, username, password, plain_http, insecure, force)


def _rollout_options(
    dry_run: bool,
    shadow: Path | None,
    metrics: bool,
    filter_state: bool,
    decision_header: str | None,
    log_values: bool,
) -> rollout.Options:
    """The rollout options, refusing combinations that would do nothing or mislead."""
    from hdrpolicy import rollout

    problem = None
    if dry_run and shadow is not None:
        problem = (
            "--dry-run and --shadow: a shadow build enforces POLICY; to watch a policy "
            "without enforcing anything, compile it with --dry-run alone"
        )
    elif dry_run and decision_header is not None:
        problem = "--decision-header goes on denies, and a --dry-run plug-in never denies"
    elif log_values and not dry_run and shadow is None:
        problem = "--log-values goes with --dry-run or --shadow (their log lines)"
    elif decision_header is not None and (
        not is_token(decision_header) or decision_header.lower() in PROXY_SET_HEADERS
    ):
        problem = f"--decision-header `{decision_header}` is not a header name the plug-in can set"
    if problem:
        _err(f"error: {problem}")
        raise typer.Exit(FAILED)
    return rollout.Options(
        rollout.Mode.DRY_RUN if dry_run else rollout.Mode.ENFORCE,
        metrics,
        filter_state,
        decision_header.lower() if decision_header else None,
        log_values,
    )


# What each option needs: `--no-build` writes no image and no manifests, and
# the registry options only mean something to `--push`.
_NEEDS_BUILD = (
    "push",
    "docker",
    "namespace",
    "selector",
    "target_ref",
    "phase",
    "priority",
    "pull_secret",
    "fail_open",
)
_NEEDS_PUSH = ("username", "password_stdin", "plain_http", "insecure", "force")


def _refuse_ignored_options(ctx: typer.Context, *, no_build: bool, push: bool) -> None:
    """An option that would be silently ignored is an error: the user meant something."""

    def given(name: str) -> str | None:
        source = ctx.get_parameter_source(name)
        if source is None or source.name == "DEFAULT":
            return None
        param = next(p for p in ctx.command.params if p.name == name)
        return max(param.opts, key=len)

    if no_build:
        ignored = [opt for name in _NEEDS_BUILD if (opt := given(name))]
        if ignored:
            raise HdrpolicyError(
                f"--no-build writes no image and no manifests, so {', '.join(ignored)} "
                "would do nothing; drop them, or drop --no-build"
            )
    if not push:
        ignored = [opt for name in _NEEDS_PUSH if (opt := given(name))]
        if ignored:
            verb = "goes" if len(ignored) == 1 else "go"
            raise HdrpolicyError(f"{', '.join(ignored)} {verb} with --push REF")


def _docker_push(out: Path, ref: str) -> None:
    """Build the generated Dockerfile with a Docker engine, push it, pin the manifests."""
    from hdrpolicy.shipping.manifests import pin_manifests
    from hdrpolicy.shipping.oci import docker_build_and_push

    _progress(f"building and pushing {ref} with Docker")
    digest = docker_build_and_push(out, ref)
    pinned = pin_manifests(out, ref, digest)
    _err(f"pushed {ref} with Docker; pinned {', '.join(pinned)}")
    typer.echo(digest)


def _pairs(items: list[str], option: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ManifestError(f"`{option} {item}` is not KEY=VALUE")
        out[key] = value
    return out


def _password(from_stdin: bool) -> str | None:
    if not from_stdin:
        return None
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise ManifestError("--password-stdin: nothing was read from standard input")
    return password


def _push(
    out: Path,
    ref: str,
    username: str | None,
    password: str | None,
    plain_http: bool,
    insecure: bool,
    force: bool,
) -> None:
    """Push DIR/oci to REF, verify it, and pin the manifests to the digest."""
    from hdrpolicy.backend.compiler import OCI
    from hdrpolicy.shipping.manifests import pin_manifests
    from hdrpolicy.shipping.push import parse_reference, push_layout, tag_given

    # The reference is checked first: a refused one may hold credentials.
    target = parse_reference(ref)
    if not tag_given(ref):
        _err(f"note: `{ref}` names no tag: pushing it as `{ref}:latest`")
    _progress(f"pushing to {target}")
    pushed = push_layout(
        out / OCI,
        ref,
        username=username,
        password=password,
        plain_http=plain_http,
        tls_verify=not insecure,
        force=force,
    )
    pinned = pin_manifests(out, pushed.reference, pushed.digest)
    for note in pushed.notes:
        _err(f"note: {note}")
    _err(f"pushed {pushed.reference}; pinned {', '.join(pinned)}")
    typer.echo(pushed.digest)


@app.command(name="push")
def push_command(
    directory: Annotated[Path, typer.Argument(help="A directory written by `compile`.")],
    ref: Annotated[str, typer.Argument(help="REGISTRY/REPOSITORY:TAG")],
    username: Username = None,
    password_stdin: PasswordStdin = False,
    plain_http: PlainHttp = False,
    insecure: Insecure = False,
    force: Force = False,
) -> None:
    """Push DIR/oci to REF, print its digest, and pin DIR's manifests to it."""
    from hdrpolicy.backend.compiler import OCI

    if not (directory / OCI).is_dir():
        raise HdrpolicyError(_why_no_image(directory))
    _push(directory, ref, username, _password(password_stdin), plain_http, insecure, force)


def _why_no_image(directory: Path) -> str:
    """Why DIR has no `oci/`, in the words of what the user did."""
    if not (directory / "main.go").is_file():
        return (
            f"`{directory}` holds no compiled policy: run `hdrpolicy compile POLICY -o {directory}`"
        )
    if (directory / "nottinygc.go").is_file():
        return (
            f"`{directory}` holds the tinygo target's Go sources but no plugin.wasm: it was "
            "compiled with --no-build, or without `tinygo` on PATH; compile again with TinyGo "
            "0.33+ installed, or with `--toolchain go` (Envoy 1.33+ / Istio 1.25+)"
        )
    return (
        f"`{directory}` holds Go sources but no plugin.wasm (compiled with --no-build); "
        "compile again without it"
    )


@app.command()
def explain(
    policy: Annotated[Path, typer.Argument(help="The policy file (.hp).")],
    header: Annotated[
        list[str] | None,
        typer.Option(
            "--header", "-H", help="A request header, `NAME=VALUE` or `NAME: VALUE`; repeatable."
        ),
    ] = None,
    # A test case's defaults (`policytests.DEFAULT_*`, which imports yaml: not loaded here).
    method: Annotated[str, typer.Option(help="The request method.")] = "GET",
    path: Annotated[str, typer.Option(help="The request path (with any query).")] = "/",
    host: Annotated[str, typer.Option(help="The request authority.")] = "localhost",
    client: Annotated[
        str, typer.Option(help="The client's IP address, as Envoy gives it (`client` reads it).")
    ] = "127.0.0.1",
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="text or json.")
    ] = OutputFormat.TEXT,
    mode: Annotated[
        Mode, typer.Option(help="enforce, or dry-run (as `compile --dry-run` builds it).")
    ] = Mode.ENFORCE,
    shadow: Annotated[
        Path | None, typer.Option(help="Also decide by this policy, as `compile --shadow`.")
    ] = None,
) -> None:
    """Show what the policy decides for one request, and why (rule by rule)."""
    from hdrpolicy import explain as explain_decision
    from hdrpolicy import rollout
    from hdrpolicy.backend.compiler import rollout_build
    from hdrpolicy.codec import CLIENT_ADDRESS, is_address, peer_address

    checked, shadow_checked = _read_pair(policy, shadow)
    options = _rollout_options(mode is Mode.DRY_RUN, shadow, True, True, None, False)
    if not is_token(method):
        raise HdrpolicyError(f"`--method {method}` is not an HTTP method (a token such as GET)")
    if not is_address(client):
        raise HdrpolicyError(
            f"`--client {client}` is not an IP address (e.g. 10.1.2.3 or 2001:db8::1: "
            "one address, no range, port or zone)"
        )
    # In the order Envoy hands them over (`codec.deliver`): the client address after
    # the pseudo-headers, with a port as Envoy's `source.address` has one.
    pairs: list[tuple[bytes, bytes]] = [
        (b":method", method.encode("utf-8", "surrogateescape")),
        (b":path", path.encode("utf-8", "surrogateescape")),
        (b":authority", host.encode("utf-8", "surrogateescape")),
        (CLIENT_ADDRESS.encode(), peer_address(client).encode()),
    ]
    for item in header or []:
        name, value = _header_option(item)
        # A byte the terminal passed that is not UTF-8 is sent as that byte.
        pairs.append(
            (name.encode("utf-8", "surrogateescape"), value.encode("utf-8", "surrogateescape"))
        )
    build = rollout_build(checked, shadow_checked, options)
    outcome = rollout.run(build, pairs)
    sources = (checked.source, shadow_checked.source if shadow_checked else None)
    if output_format is OutputFormat.JSON:
        typer.echo(json.dumps(explain_decision.outcome_json(sources, outcome), indent=2))
    else:
        typer.echo(explain_decision.render_outcome(sources, outcome))


def _read_pair(policy: Path, shadow: Path | None) -> tuple[Checked, Checked | None]:
    """The policy and its shadow, read and checked; diagnostics and exit 1 if not clean."""
    found = [_read_checked(p) for p in [policy] + ([shadow] if shadow else [])]
    checked = [c for c in found if c is not None]
    if len(checked) != len(found):
        raise typer.Exit(FAILED)
    if not all(c.ok and c.policy is not None for c in checked):
        _print_diagnostics(checked, OutputFormat.TEXT)
        raise typer.Exit(FAILED)
    return checked[0], checked[1] if shadow else None


def _header_option(item: str) -> tuple[str, str]:
    """`NAME=VALUE`, or curl's `NAME: VALUE`: whichever separator comes first.

    Neither `=` nor `:` can be part of a header name, so the first one ends it.
    """
    cut = min((i for i in (item.find("="), item.find(":")) if i >= 0), default=-1)
    if cut < 0:
        raise HdrpolicyError(f"`--header {item}` is not NAME=VALUE or NAME: VALUE")
    name, value = item[:cut], item[cut + 1 :]
    if item[cut] == ":":
        value = value.lstrip(" \t")  # as curl sends it
    if not is_token(name):
        raise HdrpolicyError(
            f"`--header {item}`: `{name}` is not a header name "
            "(letters, digits and !#$%&'*+-.^_`|~)"
        )
    return name, value


class Proxy(StrEnum):
    ENVOY = "envoy"


@app.command(name="test")
def test_command(
    policies: Annotated[
        list[Path], typer.Argument(help="Policy files (.hp), or directories to search for them.")
    ],
    tests: Annotated[
        Path | None,
        typer.Option(help="The test file (default: POLICY.tests.yaml beside the policy)."),
    ] = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="text or json.")
    ] = OutputFormat.TEXT,
    junit_xml: Annotated[
        Path | None, typer.Option("--junit-xml", help="Also write a JUnit XML report here.")
    ] = None,
    toolchain: Annotated[
        ToolchainName, typer.Option(help="Which target's plug-in to run the cases on.")
    ] = ToolchainName.GO,
    proxy: Annotated[
        Proxy | None,
        typer.Option(help="Also run every case through this proxy over HTTP/1.1 and HTTP/2."),
    ] = None,
    coverage: Annotated[
        bool,
        typer.Option(
            "--coverage", help="Also report the rules and condition sides no case exercises."
        ),
    ] = False,
    mode: Annotated[
        Mode, typer.Option(help="Test the build `compile --dry-run` makes (dry-run).")
    ] = Mode.ENFORCE,
    shadow: Annotated[
        Path | None,
        typer.Option(help="Test the build `compile --shadow` makes; report both decisions."),
    ] = None,
) -> None:
    """Run each policy's test cases on the reference evaluator and on the compiled plugin.wasm."""
    from hdrpolicy import runner, testcoverage
    from hdrpolicy.policytests import load as load_tests
    from hdrpolicy.policytests import tests_path_for

    policies = _policy_files(policies)
    if tests is not None and len(policies) != 1:
        raise HdrpolicyError("--tests goes with exactly one policy")
    options = _rollout_options(mode is Mode.DRY_RUN, shadow, True, True, None, False)
    if junit_xml is not None:
        _writable(junit_xml)
    shadow_checked = None
    if shadow is not None:
        shadow_checked = _read_pair(shadow, None)[0]
    if proxy is Proxy.ENVOY:
        envoy.find_envoy()
    unreadable: dict[int, runner.PolicyReport] = {}
    jobs = []
    for i, policy in enumerate(policies):
        checked = _read_checked(policy)
        if checked is None:
            raise typer.Exit(FAILED)
        tests_file = tests or tests_path_for(policy)
        try:
            jobs.append((checked, load_tests(tests_file)))
        except OSError as exc:
            error = f"cannot read `{tests_file}`: {exc.strerror}"
            unreadable[i] = runner.PolicyReport(checked, None, error=error)
    ran = iter(
        runner.run_all(
            jobs,
            _progress,
            TOOLCHAINS[toolchain],
            proxy is Proxy.ENVOY,
            options,
            shadow_checked,
        )
    )
    reports = [unreadable.get(i) or next(ran) for i in range(len(policies))]
    for report in reports:
        if report.error:
            _err(f"error: {report.checked.source.path}: {report.error}")
        items = report.diagnostics
        source = (
            report.tests.source
            if report.tests and report.tests.diagnostics
            else report.checked.source
        )
        for d in items:
            _err(render_text(source, d) + "\n")
    measured = testcoverage.of_reports(reports) if coverage else []
    if output_format is OutputFormat.JSON:
        data = runner.to_json(reports)
        if coverage:
            data["coverage"] = [testcoverage.to_json(m) for m in measured]
        typer.echo(json.dumps(data, indent=2))
    else:
        typer.echo(runner.render_text(reports))
        for m in measured:
            typer.echo(testcoverage.render_text(m))
    if junit_xml is not None and not _written(junit_xml, runner.to_junit(reports)):
        raise typer.Exit(FAILED)
    if not all(r.ok for r in reports):
        raise typer.Exit(FAILED)


@app.command(name="run")
def run_command(
    policy: Annotated[Path, typer.Argument(help="The policy file (.hp).")],
    upstream: Annotated[
        str | None,
        typer.Option(help="The service behind Envoy, http://HOST[:PORT] (default: a 200 reply)."),
    ] = None,
    port: Annotated[int, typer.Option(help="The port to listen on (0: any free port).")] = (
        envoy.DEFAULT_PORT
    ),
    address: Annotated[str, typer.Option(help="The IP address to listen on.")] = (
        envoy.DEFAULT_ADDRESS
    ),
) -> None:
    """Serve POLICY in a real Envoy in front of UPSTREAM until Ctrl-C."""
    from hdrpolicy.proxy.serve import ServeOptions, serve

    checked = _read_checked(policy)
    if checked is None:
        raise typer.Exit(FAILED)
    if not checked.ok or checked.policy is None:
        _print_diagnostics([checked], OutputFormat.TEXT)
        raise typer.Exit(FAILED)
    options = ServeOptions(port, address, envoy.Upstream.parse(upstream) if upstream else None)
    envoy.find_envoy()
    serve(checked, options, typer.echo, _progress)


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
    try:
        app()
    except Exception as exc:  # a bug in hdrpolicy, not in the user's input
        _err(f"internal error: {type(exc).__name__}: {exc}")
        _err("this is a bug in hdrpolicy; please report it with the command you ran")
        raise SystemExit(70) from None
