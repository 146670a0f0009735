"""The `compile` command's library side: check → emit → build → move into place.

Everything is written to a temporary directory next to the output directory
and moved into place only when every step succeeded, so a failed compile
leaves the user's directory exactly as it was.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hdrpolicy.build import BuildError, Progress, ToolchainMissing, build, find_go
from hdrpolicy.cache import cache_root
from hdrpolicy.emit import emit
from hdrpolicy.files import default_mode
from hdrpolicy.manifests import DeployOptions, PluginInfo, write_manifests
from hdrpolicy.oci import write_image_layout
from hdrpolicy.pipeline import Checked, check_file
from hdrpolicy.toolchains import Toolchain

WASM = "plugin.wasm"
OCI = "oci"


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


def compile_policy(
    policy_path: Path,
    out_dir: Path,
    toolchain: Toolchain,
    *,
    build_wasm: bool = True,
    deploy: DeployOptions | None = None,
    progress: Progress = lambda _: None,
) -> CompileResult:
    """Compile one policy file into `out_dir`; raises BuildError when a build fails.

    Diagnostics are returned in the result; nothing is written if any is an error.
    """
    checked = check_file(policy_path)
    result = CompileResult(checked, out_dir)
    if not checked.ok:
        return result
    assert checked.policy is not None
    if out_dir.exists() and not out_dir.is_dir():
        raise BuildError(f"`{out_dir}` exists and is not a directory")
    files = emit(checked.policy, checked.source, policy_path.name, toolchain)
    parent = out_dir.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=parent))
    staging.chmod(default_mode(directory=True))
    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        if build_wasm:
            try:
                result.built_with = build(staging, toolchain, progress)
            except ToolchainMissing as missing:
                if toolchain.name.value == "go":
                    raise
                result.skipped_build = missing
        if (staging / WASM).is_file():
            # The image and the manifests that pin it, next to the Dockerfile.
            image = write_image_layout(staging / WASM, staging / OCI, checked.policy.name)
            result.image_digest = image.manifest_digest
            info = PluginInfo.from_files(
                checked.policy.name, policy_path, staging / WASM, image.manifest_digest
            )
            write_manifests(staging, info, deploy or DeployOptions())
        produced = sorted(p.name for p in staging.iterdir())
        result.removed = _move_into_place(staging, out_dir, produced)
        result.written = produced
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def cached_wasm(checked: Checked, toolchain: Toolchain, progress: Progress) -> Path:
    """plugin.wasm for a checked policy, from a cache keyed by the emitted sources.

    `hdrpolicy test` runs against the same bytes `compile` would produce; a
    policy whose Go has not changed is not rebuilt.
    """
    assert checked.policy is not None
    files = emit(checked.policy, checked.source, Path(checked.source.path).name, toolchain)
    digest = hashlib.sha256(find_go().version.encode())
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    target = cache_root() / "builds" / digest.hexdigest()[:24]
    if (target / WASM).is_file():
        return target / WASM
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        build(staging, toolchain, progress)
        try:
            os.replace(staging, target)
        except OSError:
            # Another process built the same sources first: its result is identical.
            if not (target / WASM).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
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


def _move_into_place(staging: Path, out_dir: Path, produced: list[str]) -> list[str]:
    if not out_dir.exists():
        os.replace(staging, out_dir)  # the caller's cleanup then finds nothing
        return []
    for name in produced:
        target = out_dir / name
        if (staging / name).is_dir() and target.exists():
            # Swap directories: the old one is deleted only once the new one is in place.
            old = staging / f".old-{name}"
            os.replace(target, old)
            os.replace(staging / name, target)
        else:
            os.replace(staging / name, target)
    removed = []
    for name in GENERATED:
        stale = out_dir / name
        if name in produced or not stale.exists():
            continue
        if stale.is_dir():
            shutil.rmtree(stale)
        else:
            stale.unlink()
        removed.append(name)
    return removed
