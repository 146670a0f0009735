"""Test helpers for shipping: a real registry, skopeo, and the CRD schemas (tests/fixtures).

The session fixture lives in `conftest_registry.py` (loaded with
`pytest_plugins = ["conftest_registry"]`); this module holds what tests import.
The registry is Debian's `docker-registry` (CNCF distribution 2.8), started once per session on
127.0.0.1 with htpasswd basic auth whose realm is an `https://` URL (the form
recent Istio insists on), and stopped afterwards.  A missing binary fails the
tests that need it, loudly: CI installs it, and a skipped registry test would
hide that it stopped running.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tarfile
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

REGISTRY_BINARY = "docker-registry"
APT_HINT = "apt-get install -y docker-registry skopeo apache2-utils"
REALM = "https://registry.example.com/"
USERNAME = "hdrpolicy"
PASSWORD = "correct horse battery staple"


FIXTURES = Path(__file__).resolve().parent / "fixtures"


@cache
def crd_schema(file_name: str) -> dict[str, Any]:
    """The `openAPIV3Schema` of the (single, served) version of a CRD in `tests/fixtures/`."""
    crd = yaml.safe_load((FIXTURES / file_name).read_text(encoding="utf-8"))
    versions = crd["spec"]["versions"]
    assert len(versions) == 1, f"{file_name}: expected one version"
    schema: dict[str, Any] = versions[0]["schema"]["openAPIV3Schema"]
    return schema


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not installed; the shipping tests need it: {APT_HINT}")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Registry:
    host: str
    username: str
    password: str

    @property
    def creds(self) -> str:
        return f"{self.username}:{self.password}"

    def ref(self, repository: str, tag: str = "v0.0.1") -> str:
        return f"{self.host}/{repository}:{tag}"


def wait_until_up(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"docker-registry exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if requests.get(url, timeout=1).status_code in (200, 401):
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    pytest.fail(f"docker-registry did not answer at {url} within 20s:\n{log.read_text()}")


def skopeo(*args: str) -> str:
    """Run skopeo against the plain-HTTP test registry; fail the test with its output."""
    binary = require_tool("skopeo")
    proc = subprocess.run(
        [binary, "--insecure-policy", *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"skopeo {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout


def pull_wasm(registry: Registry, ref: str, dest: Path) -> tuple[dict[str, Any], bytes]:
    """Copy `ref` into an OCI layout with skopeo; return its manifest and the last layer's wasm."""
    layout = dest / "pulled"
    skopeo(
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        registry.creds,
        f"docker://{ref}",
        f"oci:{layout}:pulled",
    )
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].removeprefix("sha256:")
    manifest: dict[str, Any] = json.loads((layout / "blobs" / "sha256" / digest).read_text())
    last = manifest["layers"][-1]["digest"].removeprefix("sha256:")
    with tarfile.open(layout / "blobs" / "sha256" / last, mode="r:gz") as tar:
        member = tar.extractfile("plugin.wasm")
        assert member is not None
        return manifest, member.read()
