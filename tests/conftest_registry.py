"""The session-scoped registry fixture; the helpers it uses are in `registry.py`.

Enable with `pytest_plugins = ["conftest_registry"]` (in `tests/conftest.py`, or
in a test module that needs `registry`).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
import yaml

from registry import (
    PASSWORD,
    REALM,
    REGISTRY_BINARY,
    USERNAME,
    Registry,
    free_port,
    require_tool,
    wait_until_up,
)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    binary = require_tool(REGISTRY_BINARY)
    htpasswd = require_tool("htpasswd")
    root = tmp_path_factory.mktemp("registry")
    entry = subprocess.run(
        [htpasswd, "-Bbn", USERNAME, PASSWORD], capture_output=True, text=True, check=True
    ).stdout
    (root / "htpasswd").write_text(entry)
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(root / "data")},
            "delete": {"enabled": True},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": "hdrpolicy-tests"},
        "auth": {"htpasswd": {"realm": REALM, "path": str(root / "htpasswd")}},
    }
    (root / "config.yml").write_text(yaml.safe_dump(config))
    log = root / "registry.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, "serve", str(root / "config.yml")], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/v2/", proc, log)
        yield Registry(f"127.0.0.1:{port}", USERNAME, PASSWORD)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
