"""The OCI image: Istio's loadable shape, reproducible to the byte, readable by skopeo."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

import pytest

from hdrpolicy.shipping import oci
from registry import skopeo

WASM = b"\x00asm\x01\x00\x00\x00" + bytes(range(256)) * 4


@pytest.fixture
def wasm_file(tmp_path: Path) -> Path:
    path = tmp_path / "plugin.wasm"
    path.write_bytes(WASM)
    return path


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_wasm_gives_the_same_layout_and_digest(wasm_file: Path, tmp_path: Path) -> None:
    first = oci.write_image_layout(wasm_file, tmp_path / "a", "v1")
    second = oci.write_image_layout(wasm_file, tmp_path / "b", "v1")
    assert first.manifest_digest == second.manifest_digest
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    assert oci.build_image(WASM).digest == first.manifest_digest


def test_the_tag_is_not_part_of_the_image(wasm_file: Path, tmp_path: Path) -> None:
    a = oci.write_image_layout(wasm_file, tmp_path / "a", "v1")
    b = oci.write_image_layout(wasm_file, tmp_path / "b", "v2")
    assert a.manifest_digest == b.manifest_digest


def test_different_wasm_gives_a_different_digest() -> None:
    assert oci.build_image(WASM).digest != oci.build_image(WASM + b"\x00").digest


def test_layer_is_a_gzipped_tar_holding_only_plugin_wasm() -> None:
    image = oci.build_image(WASM)
    layer = image.layer.data
    assert layer[:3] == b"\x1f\x8b\x08"
    assert layer[3] == 0, "no FNAME or other optional gzip header fields"
    assert layer[4:8] == b"\x00\x00\x00\x00", "gzip mtime is 0"
    with tarfile.open(fileobj=io.BytesIO(layer), mode="r:gz") as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["plugin.wasm"]
        (member,) = members
        assert (member.mtime, member.uid, member.gid, member.mode) == (0, 0, 0, 0o644)
        assert (member.uname, member.gname) == ("", "")
        assert member.isreg()
        extracted = tar.extractfile(member)
        assert extracted is not None
        assert extracted.read() == WASM


def test_manifest_and_config_follow_the_oci_image_spec() -> None:
    image = oci.build_image(WASM)
    manifest = json.loads(image.manifest.data)
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"] == image.config.descriptor()
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert manifest["layers"] == [image.layer.descriptor()]
    assert manifest["layers"][-1]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    config = json.loads(image.config.data)
    diff_id = "sha256:" + hashlib.sha256(gzip.decompress(image.layer.data)).hexdigest()
    assert config["rootfs"] == {"type": "layers", "diff_ids": [diff_id]}
    assert (config["architecture"], config["os"]) == ("wasm", "wasip1")
    assert "created" not in config
    assert image.wasm_sha256 == hashlib.sha256(WASM).hexdigest()


def test_layout_files(wasm_file: Path, tmp_path: Path) -> None:
    info = oci.write_image_layout(wasm_file, tmp_path / "oci", "v0.0.1")
    layout = tmp_path / "oci"
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    (entry,) = index["manifests"]
    assert entry["digest"] == info.manifest_digest
    assert entry["annotations"] == {"org.opencontainers.image.ref.name": "v0.0.1"}
    blobs = sorted(p.name for p in (layout / "blobs" / "sha256").iterdir())
    expected = [info.manifest_digest, info.config_digest, info.layer_digest]
    assert blobs == sorted(d.removeprefix("sha256:") for d in expected)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no staging left"


def test_rewriting_a_layout_replaces_it(wasm_file: Path, tmp_path: Path) -> None:
    oci.write_image_layout(wasm_file, tmp_path / "oci")
    wasm_file.write_bytes(WASM + b"!")
    info = oci.write_image_layout(wasm_file, tmp_path / "oci")
    assert len(list((tmp_path / "oci" / "blobs" / "sha256").iterdir())) == 3
    assert oci.read_image_layout(tmp_path / "oci").digest == info.manifest_digest


def test_skopeo_reads_the_layout(wasm_file: Path, tmp_path: Path) -> None:
    info = oci.write_image_layout(wasm_file, tmp_path / "oci", "v1")
    inspected = json.loads(skopeo("inspect", f"oci:{tmp_path / 'oci'}:v1"))
    assert inspected["Digest"] == info.manifest_digest
    assert inspected["Layers"] == [info.layer_digest]


def test_read_image_layout_refuses_a_tampered_blob(wasm_file: Path, tmp_path: Path) -> None:
    info = oci.write_image_layout(wasm_file, tmp_path / "oci")
    layer = tmp_path / "oci" / "blobs" / "sha256" / info.layer_digest.removeprefix("sha256:")
    layer.write_bytes(layer.read_bytes() + b"x")
    with pytest.raises(oci.ImageError, match="does not match its digest"):
        oci.read_image_layout(tmp_path / "oci")


def test_read_image_layout_refuses_a_directory_that_is_no_layout(tmp_path: Path) -> None:
    with pytest.raises(oci.ImageError, match="not an OCI image layout"):
        oci.read_image_layout(tmp_path)


def test_missing_wasm_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(oci.ImageError, match="cannot read"):
        oci.write_image_layout(tmp_path / "nope.wasm", tmp_path / "oci")


def test_docker_without_an_engine_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("docker")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such-docker.sock")
    with pytest.raises(oci.ImageError, match="no Docker engine is reachable"):
        oci.docker_build_and_push(tmp_path, "127.0.0.1:5000/test/x:v1")


def test_docker_without_the_sdk_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "docker", None)
    with pytest.raises(oci.ImageError, match=r"pip install 'hdrpolicy\[docker\]'"):
        oci.docker_build_and_push(tmp_path, "127.0.0.1:5000/test/x:v1")
