"""The `compile` command's library side: check → emit → build → move into place.

Everything is written to a temporary directory next to the output directory
and moved into place only when every step succeeded, so a failed compile
leaves the user's directory exactly as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from hdrpolicy import rollout
from hdrpolicy.backend.build import BuildError, Progress, ToolchainMissing, build, find_compiler
from hdrpolicy.backend.cache import cache_root
from hdrpolicy.backend.emit import emit
from hdrpolicy.backend.toolchains import Toolchain
from hdrpolicy.files import (
    STAGING_MARKER,
    KeepStaging,
    default_mode,
    staging_dir,
    stale_staging_dirs,
    write_atomically,
)
from hdrpolicy.frontend.pipeline import Checked, check_file
from hdrpolicy.shipping.manifests import DeployOptions, PluginInfo, write_manifests
from hdrpolicy.shipping.oci import write_image_layout

WASM = "plugin.wasm"
OCI = "oci"


class SwitchFailed(BuildError):
    """The switch failed and could not be undone: `out_dir` is not as it was (see the message)."""


@dataclass
class CompileResult:
    checked: Checked
    out_dir: Path
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    built_with: str | None = None
    # The OCI image manifest digest (sha256:…), when plugin.wasm was built.
    image_digest: str | None = None
    # Set when the sources were written but the build was skipped (no toolchain).
    skipped_build: ToolchainMissing | None = None
    # What was found and repaired from a compile that was killed (see `recover_stale`).
    recovered: list[str] = field(default_factory=list)
    # The shadow policy (`--shadow`), checked.
    shadow: Checked | None = None


def compile_policy(
    policy_path: Path,
    out_dir: Path,
    toolchain: Toolchain,
    *,
    build_wasm: bool = True,
    deploy: DeployOptions | None = None,
    progress: Progress = lambda _: None,
    options: rollout.Options | None = None,
    shadow_path: Path | None = None,
) -> CompileResult:
    """Compile one policy file into `out_dir`; raises BuildError when a build fails.

    With `shadow_path`, the plug-in also evaluates that policy in the live
    one's shadow.  Diagnostics are returned in the result (the shadow
    policy's in `shadow`); nothing is written if any is an error.
    """
    checked = check_file(policy_path)
    result = CompileResult(checked, out_dir)
    if shadow_path is not None:
        result.shadow = check_file(shadow_path)
    if not checked.ok or (result.shadow is not None and not result.shadow.ok):
        return result
    assert checked.policy is not None
    if out_dir.exists() and not out_dir.is_dir():
        raise BuildError(f"`{out_dir}` exists and is not a directory")
    plan = rollout_build(checked, result.shadow, options or rollout.Options())
    files = emit_build(plan, checked, result.shadow, toolchain)
    target = out_dir.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    result.recovered = recover_stale(out_dir)
    with staging_dir(target.parent, staging_prefix(out_dir)) as staging:
        staging.chmod(default_mode(directory=True))
        for name, data in files.items():
            (staging / name).write_bytes(data)
        if build_wasm:
            try:
                result.built_with = build(staging, toolchain, progress)
            except ToolchainMissing as missing:
                if not toolchain.build_optional:
                    raise
                result.skipped_build = missing
        if (staging / WASM).is_file():
            # The image and the manifests that pin it, next to the Dockerfile.
            image = write_image_layout(staging / WASM, staging / OCI, checked.policy.name)
            result.image_digest = image.manifest_digest
            info = PluginInfo.from_files(
                checked.policy.name,
                policy_path,
                staging / WASM,
                image.manifest_digest,
                mode=plan.mode.value,
                shadow=shadow_path,
            )
            write_manifests(staging, info, deploy or DeployOptions())
        produced = sorted(p.name for p in staging.iterdir() if p.name != STAGING_MARKER)
        result.removed = _swap_into_place(staging, out_dir, produced)
        result.written = produced
    return result


def rollout_build(
    checked: Checked, shadow: Checked | None, options: rollout.Options
) -> rollout.Build:
    """The build of checked policies: each named by its file name, as `compile` names it."""
    assert checked.policy is not None
    live = rollout.Side(checked.policy, Path(checked.source.path).name)
    if shadow is None:
        return options.build(live)
    assert shadow.policy is not None
    return options.build(live, rollout.Side(shadow.policy, Path(shadow.source.path).name))


def emit_build(
    plan: rollout.Build, checked: Checked, shadow: Checked | None, toolchain: Toolchain
) -> dict[str, bytes]:
    """The Go module of a build (see `emit`)."""
    return emit(
        plan.live.policy,
        checked.source,
        plan.live.source_name,
        toolchain,
        plan,
        shadow.source if shadow is not None else None,
    )


def cached_wasm(
    checked: Checked,
    toolchain: Toolchain,
    progress: Progress,
    options: rollout.Options | None = None,
    shadow: Checked | None = None,
) -> Path:
    """plugin.wasm for a checked policy, from a cache keyed by the emitted sources.

    `hdrpolicy test` runs against the same bytes `compile` would produce; a
    policy whose Go has not changed is not rebuilt.
    """
    plan = rollout_build(checked, shadow, options or rollout.Options())
    files = emit_build(plan, checked, shadow, toolchain)
    digest = hashlib.sha256(f"{toolchain.name}\0{find_compiler(toolchain).version}".encode())
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    target = cache_root() / "builds" / digest.hexdigest()[:24]
    if (target / WASM).is_file():
        return target / WASM
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in stale_staging_dirs(target.parent, ".build-"):
        shutil.rmtree(stale, ignore_errors=True)
    with staging_dir(target.parent, ".build-") as staging:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        build(staging, toolchain, progress)
        (staging / STAGING_MARKER).unlink()
        try:
            os.replace(staging, target)
        except OSError:
            # Another process built the same sources first: its result is identical.
            if not (target / WASM).is_file():
                raise
    return target / WASM


# Files a compile may produce; a stale one that this compile did not produce
# is removed, so the directory never mixes two compiles.
GENERATED = (
    "main.go",
    "nottinygc.go",
    "go.mod",
    "go.sum",
    "Dockerfile",
    WASM,
    OCI,
    "wasmplugin.yaml",
    "envoyextensionpolicy.yaml",
    "envoy.yaml",
)


def staging_prefix(out_dir: Path) -> str:
    """The name every staging directory for `out_dir` starts with (a hidden sibling)."""
    return f".{out_dir.resolve().name}.hdrpolicy-"


# In the staging directory during the switch: the plan (written before the
# first rename, removed once all succeeded) and the entries it replaced.
JOURNAL = ".hdrpolicy-switch.json"
BACKUP = ".hdrpolicy-backup"


def _swap_into_place(staging: Path, out_dir: Path, produced: list[str]) -> list[str]:
    """Switch `out_dir` to the staged files as one step: all renames happen, or none stays.

    Each replaced or stale entry is renamed into the staging directory's backup
    before its successor is renamed in; on any failure every step is undone
    from the backup.  A kill in the middle leaves the journal, and the next
    run's `recover_stale` undoes it the same way.
    """
    if not out_dir.exists():
        (staging / STAGING_MARKER).unlink()
        os.replace(staging, out_dir)  # one rename; the staging context then finds nothing
        return []
    stale = [n for n in GENERATED if n not in produced and os.path.lexists(out_dir / n)]
    kinds = {n: (staging / n).is_dir() for n in produced} | {n: n == OCI for n in stale}
    for name, is_dir in kinds.items():
        _check_kind(out_dir / name, is_dir=is_dir)
    write_atomically(staging / JOURNAL, json.dumps({"produced": produced, "stale": stale}))
    backup = staging / BACKUP
    backup.mkdir()
    step = ""
    try:
        for name in produced:
            step = name
            if os.path.lexists(out_dir / name):
                os.replace(out_dir / name, backup / name)
            os.replace(staging / name, out_dir / name)
        for name in stale:
            step = name
            os.replace(out_dir / name, backup / name)
    except OSError as exc:
        _undo_or_keep(staging, out_dir)
        raise BuildError(f"cannot replace `{out_dir / step}`: {exc.strerror or exc}") from exc
    (staging / JOURNAL).unlink()  # committed: the backup is now only old files
    return stale


def _check_kind(path: Path, *, is_dir: bool) -> None:
    """Refuse to replace a directory with a file or a file with a directory: it is not ours."""
    if not os.path.lexists(path) or path.is_symlink():
        return
    if path.is_dir() != is_dir:
        found, wanted = ("a directory", "a file") if path.is_dir() else ("a file", "a directory")
        raise BuildError(
            f"`{path}` is {found}, but compile writes {wanted} there; "
            "move it out of the way and compile again"
        )


def _undo(staging: Path, out_dir: Path) -> None:
    """Put `out_dir` back as it was before `_swap_into_place` started (idempotent).

    Works from the journal and what is where: a produced entry missing from the
    staging directory was moved in and goes back; a backed-up entry returns.
    """
    plan = json.loads((staging / JOURNAL).read_text(encoding="utf-8"))
    backup = staging / BACKUP
    for name in reversed([*plan["produced"], *plan["stale"]]):
        moved_in = name in plan["produced"] and not os.path.lexists(staging / name)
        if moved_in and os.path.lexists(out_dir / name):
            os.replace(out_dir / name, staging / name)
        if os.path.lexists(backup / name):
            os.replace(backup / name, out_dir / name)
    (staging / JOURNAL).unlink()


def _undo_or_keep(staging: Path, out_dir: Path) -> None:
    try:
        _undo(staging, out_dir)
    except OSError as exc:
        raise KeepStaging(
            SwitchFailed(
                f"the switch of `{out_dir}` failed and could not be undone "
                f"({exc.strerror or exc}: `{exc.filename}`); the previous files are in "
                f"`{staging / BACKUP}`, and the next compile restores them"
            )
        ) from exc


def recover_stale(out_dir: Path) -> list[str]:
    """Remove staging directories of compiles into `out_dir` that were killed.

    One killed during the switch is undone first, so `out_dir` is as it was
    before that compile.  Returns what was done, for the user.
    """
    target = out_dir.resolve()
    done = []
    for stale in stale_staging_dirs(target.parent, staging_prefix(out_dir)):
        if (stale / JOURNAL).is_file() and target.is_dir():
            _undo(stale, target)
            done.append(f"restored `{out_dir}` from an interrupted compile")
        shutil.rmtree(stale, ignore_errors=True)
        done.append(f"removed `{stale.name}` left by an interrupted compile")
    return done
