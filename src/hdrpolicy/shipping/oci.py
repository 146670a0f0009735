"""Stage 6, package: plugin.wasm → a reproducible OCI image, written as an OCI image layout.

Istio's and Envoy Gateway's image fetchers load an image whose *last layer* is
a gzipped tar holding a file named `plugin.wasm` (a raw `application/wasm`
layer is not loadable by Istio).  The image is built here in pure Python so
that no Docker engine is needed, and byte for byte reproducibly: the tar entry
has a fixed mtime, owner and mode, the gzip header has no name and mtime 0,
the config has no `created` time, and JSON is written compactly in a fixed key
order.  The same `plugin.wasm` therefore always gives the same manifest digest,
which is what the deployment manifests pin.  (The gzip stream is produced by
the local zlib at level 9; a different zlib build could compress differently,
so the digest is stable per machine image, which CI pins.)

The image is written as an OCI image layout (`oci-layout`, `index.json`,
`blobs/sha256/…`) so standard tools (`skopeo`, `oras`, `crane`) can read it,
and `hdrpolicy push` uploads exactly these bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hdrpolicy.errors import HdrpolicyError

WASM_NAME = "plugin.wasm"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
# Go's names for the target the plug-in is built for (GOOS=wasip1 GOARCH=wasm).
# Istio and Envoy Gateway fetch a single manifest by tag and never match platforms,
# so these are informative; the OCI spec asks for GOOS/GOARCH values here.
IMAGE_OS = "wasip1"
IMAGE_ARCHITECTURE = "wasm"


class ImageError(HdrpolicyError):
    """The image could not be built, read or handed to Docker; the message says why."""


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> bytes:
    """Compact JSON in the caller's key order: the digest depends on these exact bytes."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class Blob:
    """Content-addressed bytes and the media type they are referenced with."""

    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class Image:
    """An image ready to write or push: config, one layer and the manifest naming both."""

    config: Blob
    layer: Blob
    manifest: Blob
    diff_id: str
    wasm_sha256: str

    @property
    def digest(self) -> str:
        """The manifest digest: what `spec.sha256` pins (as hex) and what a registry reports."""
        return self.manifest.digest

    @property
    def digest_hex(self) -> str:
        return self.digest.removeprefix("sha256:")

    @property
    def blobs(self) -> tuple[Blob, ...]:
        return (self.config, self.layer, self.manifest)


@dataclass(frozen=True)
class ImageInfo:
    """What `write_image_layout` produced, for the CLI and the manifests."""

    layout: Path
    ref_name: str
    manifest_digest: str
    manifest_size: int
    config_digest: str
    layer_digest: str
    diff_id: str
    wasm_sha256: str

    @property
    def digest_hex(self) -> str:
        return self.manifest_digest.removeprefix("sha256:")


def layer_tar(wasm: bytes) -> bytes:
    """An uncompressed tar with one entry, `plugin.wasm`, whose metadata never varies."""
    info = tarfile.TarInfo(WASM_NAME)
    info.size = len(wasm)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(wasm))
    return buf.getvalue()


def gzip_reproducibly(data: bytes) -> bytes:
    """gzip with mtime 0 and no file name in the header (`gzip.compress` stores none)."""
    return gzip.compress(data, compresslevel=9, mtime=0)


def build_image(wasm: bytes) -> Image:
    """The image for one plug-in; a pure function of the wasm bytes."""
    tar = layer_tar(wasm)
    diff_id = sha256_digest(tar)
    layer = Blob(LAYER_MEDIA_TYPE, gzip_reproducibly(tar))
    config = Blob(
        CONFIG_MEDIA_TYPE,
        canonical_json(
            {
                "architecture": IMAGE_ARCHITECTURE,
                "os": IMAGE_OS,
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            }
        ),
    )
    manifest = Blob(
        MANIFEST_MEDIA_TYPE,
        canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_MEDIA_TYPE,
                "config": config.descriptor(),
                "layers": [layer.descriptor()],
            }
        ),
    )
    return Image(config, layer, manifest, diff_id, hashlib.sha256(wasm).hexdigest())


def _index(image: Image, ref_name: str) -> bytes:
    entry = {**image.manifest.descriptor(), "annotations": {REF_NAME_ANNOTATION: ref_name}}
    return canonical_json({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": [entry]})


def write_image_layout(wasm: Path, dest: Path, ref_name: str = "latest") -> ImageInfo:
    """Build the image for `wasm` and write it as an OCI image layout at `dest`.

    `ref_name` is the tag recorded in `index.json` (so `skopeo copy oci:DEST:TAG`
    works); it is not part of the image, so it does not change the digest.  The
    layout is assembled in a temporary directory next to `dest` and swapped in,
    so a reader never sees half a layout.
    """
    try:
        data = wasm.read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read `{wasm}`: {exc.strerror or exc}") from exc
    image = build_image(data)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        blobs = staging / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        for blob in image.blobs:
            (blobs / blob.digest.removeprefix("sha256:")).write_bytes(blob.data)
        (staging / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
        (staging / "index.json").write_bytes(_index(image, ref_name))
        _make_readable(staging)
        if dest.is_dir():
            shutil.rmtree(dest)
        os.replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ImageInfo(
        layout=dest,
        ref_name=ref_name,
        manifest_digest=image.digest,
        manifest_size=image.manifest.size,
        config_digest=image.config.digest,
        layer_digest=image.layer.digest,
        diff_id=image.diff_id,
        wasm_sha256=image.wasm_sha256,
    )


def _make_readable(root: Path) -> None:
    """mkdtemp makes 0o700; give the layout the modes `mkdir`/`open` would (umask applies)."""
    umask = os.umask(0)
    os.umask(umask)
    root.chmod(0o777 & ~umask)
    for path in root.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


@dataclass(frozen=True)
class LayoutImage:
    """An image read back from a layout: the manifest's exact bytes and its blobs' files."""

    manifest: Blob
    ref_name: str | None
    # (descriptor, file) for the config and every layer, in manifest order.
    blobs: tuple[tuple[dict[str, Any], Path], ...]

    @property
    def digest(self) -> str:
        return self.manifest.digest


def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_bytes())
    except OSError as exc:
        raise ImageError(f"cannot read {what} `{path}`: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ImageError(f"{what} `{path}` is not valid JSON: {exc}") from exc


def _blob_path(layout: Path, digest: str) -> Path:
    algorithm, _, hex_ = digest.partition(":")
    if algorithm != "sha256" or len(hex_) != 64 or not all(c in "0123456789abcdef" for c in hex_):
        raise ImageError(f"unsupported digest `{digest}` in `{layout}`")
    return layout / "blobs" / "sha256" / hex_


def _read_blob(layout: Path, descriptor: dict[str, Any]) -> bytes:
    digest = str(descriptor.get("digest", ""))
    path = _blob_path(layout, digest)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"blob `{digest}` is missing from `{layout}`") from exc
    if sha256_digest(data) != digest or len(data) != descriptor.get("size"):
        raise ImageError(f"blob `{digest}` in `{layout}` does not match its digest or size")
    return data


def read_image_layout(layout: Path) -> LayoutImage:
    """Read the one image in a layout, checking every blob against its digest.

    Pushing checks first so that a layout edited by hand is refused locally
    instead of producing an image whose digest differs from the manifests'.
    """
    if not (layout / "oci-layout").is_file():
        raise ImageError(f"`{layout}` is not an OCI image layout (no `oci-layout` file)")
    index = _load_json(layout / "index.json", "image index")
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or len(manifests) != 1:
        raise ImageError(f"`{layout}/index.json` must list exactly one image manifest")
    entry = manifests[0]
    if entry.get("mediaType") != MANIFEST_MEDIA_TYPE:
        raise ImageError(f"`{layout}/index.json` does not point at an OCI image manifest")
    manifest_bytes = _read_blob(layout, entry)
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError as exc:
        raise ImageError(f"the image manifest in `{layout}` is not valid JSON") from exc
    descriptors = [manifest.get("config"), *manifest.get("layers", [])]
    blobs = []
    for descriptor in descriptors:
        if not isinstance(descriptor, dict):
            raise ImageError(f"the image manifest in `{layout}` has a malformed descriptor")
        _read_blob(layout, descriptor)
        blobs.append((descriptor, _blob_path(layout, descriptor["digest"])))
    annotations = entry.get("annotations") or {}
    return LayoutImage(
        manifest=Blob(MANIFEST_MEDIA_TYPE, manifest_bytes),
        ref_name=annotations.get(REF_NAME_ANNOTATION),
        blobs=tuple(blobs),
    )


def docker_build_and_push(context: Path, ref: str) -> str:
    """Build `context/Dockerfile` with a Docker engine and push it as `ref`; returns the digest.

    For users who want Docker's own image (`--docker`).  The `docker` package
    is imported here, not at module load, so hdrpolicy works without it; any
    failure to reach an engine becomes one clear ImageError.  Credentials are
    the engine's own (`docker login`).
    """
    try:
        import docker
        import docker.errors
    except ImportError as exc:
        raise ImageError(
            "`--docker` needs the `docker` Python package: pip install 'hdrpolicy[docker]'"
        ) from exc
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        raise ImageError(
            "no Docker engine is reachable (is it running, and is DOCKER_HOST right?); "
            f"push without `--docker` to build the image in Python instead: {exc}"
        ) from exc
    repository, _, tag = ref.rpartition(":")
    if not repository or "/" in tag:
        repository, tag = ref, "latest"
    try:
        client.images.build(path=str(context), tag=f"{repository}:{tag}", rm=True)
        digest = None
        for event in client.images.push(repository, tag=tag, stream=True, decode=True):
            if "error" in event:
                raise ImageError(f"docker push of `{ref}` failed: {event['error']}")
            aux = event.get("aux") or {}
            digest = aux.get("Digest", digest)
    except docker.errors.DockerException as exc:
        raise ImageError(f"docker build or push of `{ref}` failed: {exc}") from exc
    if not digest:
        raise ImageError(f"docker push of `{ref}` did not report a digest")
    return str(digest)
