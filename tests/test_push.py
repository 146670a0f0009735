"""`push`: a real registry, read back with skopeo; credentials, conflicts and failures."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from hdrpolicy.shipping import manifests, oci
from hdrpolicy.shipping.push import (
    ENV_PASSWORD,
    ENV_USERNAME,
    Credentials,
    ErrorKind,
    PushError,
    _Registry,
    parse_reference,
    push_layout,
    resolve_credentials,
)
from registry import Registry, crd_schema, free_port, pull_wasm, skopeo

WASM = b"\x00asm\x01\x00\x00\x00" + b"hdrpolicy push test" * 50


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests see only the credentials they set up, never the developer's own."""
    monkeypatch.delenv(ENV_USERNAME, raising=False)
    monkeypatch.delenv(ENV_PASSWORD, raising=False)
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def repo(request: pytest.FixtureRequest) -> str:
    """A repository of the test's own, so tests never see each other's tags."""
    return "test-oci/" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")


def layout(tmp_path: Path, wasm: bytes = WASM, name: str = "oci") -> Path:
    (tmp_path / f"{name}.wasm").write_bytes(wasm)
    oci.write_image_layout(tmp_path / f"{name}.wasm", tmp_path / name)
    return tmp_path / name


def push(registry: Registry, path: Path, ref: str, **kwargs: Any) -> Any:
    kwargs.setdefault("username", registry.username)
    kwargs.setdefault("password", registry.password)
    return push_layout(path, ref, plain_http=True, attempts=2, backoff=0.01, **kwargs)


def inspect_digest(registry: Registry, ref: str) -> str:
    out = skopeo("inspect", "--tls-verify=false", "--creds", registry.creds, f"docker://{ref}")
    digest: str = json.loads(out)["Digest"]
    return digest


def test_push_then_pull_back_with_skopeo(
    registry: Registry, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    ref = registry.ref(repo(request))
    image = layout(tmp_path)
    result = push(registry, image, ref)
    assert result.digest == oci.read_image_layout(image).digest
    assert (result.uploaded, result.already_present, result.previous_digest) == (2, 0, None)
    assert result.credentials_source == "--username"
    assert inspect_digest(registry, ref) == result.digest
    manifest, wasm = pull_wasm(registry, ref, tmp_path)
    assert wasm == WASM
    assert manifest["layers"][-1]["mediaType"] == oci.LAYER_MEDIA_TYPE


def test_pushing_twice_gives_the_same_digest(
    registry: Registry, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    ref = registry.ref(repo(request))
    first = push(registry, layout(tmp_path), ref)
    again = push(registry, layout(tmp_path, name="again"), ref)
    assert again.digest == first.digest == inspect_digest(registry, ref)
    assert (again.uploaded, again.already_present) == (0, 2)
    assert again.previous_digest == first.digest
    assert again.notes == (f"`{ref}` already pointed at {first.digest}",)


def test_a_tag_naming_another_image_is_refused_unless_forced(
    registry: Registry, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    ref = registry.ref(repo(request))
    first = push(registry, layout(tmp_path), ref)
    other = layout(tmp_path, WASM + b"changed", name="other")
    with pytest.raises(PushError) as refused:
        push(registry, other, ref)
    assert refused.value.kind is ErrorKind.TAG_EXISTS
    assert first.digest in refused.value.message and "--force" in refused.value.message
    assert inspect_digest(registry, ref) == first.digest, "the tag did not move"
    moved = push(registry, other, ref, force=True)
    assert moved.previous_digest == first.digest != moved.digest
    assert inspect_digest(registry, ref) == moved.digest
    assert pull_wasm(registry, ref, tmp_path)[1] == WASM + b"changed"


def test_wrong_password_is_unauthorised_and_secret_free(
    registry: Registry, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    secret = "not-the-password-s3cret"
    with pytest.raises(PushError) as failed:
        push(registry, layout(tmp_path), registry.ref(repo(request)), password=secret)
    assert failed.value.kind is ErrorKind.UNAUTHORIZED
    message = failed.value.message
    assert message.startswith("unauthorised: ")
    assert f"user `{registry.username}`" in message
    assert secret not in message and secret not in repr(failed.value)
    assert base64.b64encode(f"{registry.username}:{secret}".encode()).decode() not in message


def test_no_credentials_at_all_is_unauthorised(
    registry: Registry, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with pytest.raises(PushError) as failed:
        push_layout(
            layout(tmp_path), registry.ref(repo(request)), plain_http=True, attempts=2, backoff=0.01
        )
    assert failed.value.kind is ErrorKind.UNAUTHORIZED
    assert "none were found" in failed.value.message


def test_unreachable_registry(tmp_path: Path) -> None:
    host = f"127.0.0.1:{free_port()}"
    with pytest.raises(PushError) as failed:
        push_layout(
            layout(tmp_path), f"{host}/test/x:v1", plain_http=True, attempts=2, backoff=0.01
        )
    assert failed.value.kind is ErrorKind.UNREACHABLE
    assert f"cannot reach registry `{host}` after 2 attempt(s)" in failed.value.message


def test_tls_to_a_plain_http_registry_is_a_tls_error(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(PushError) as failed:
        push_layout(layout(tmp_path), registry.ref("test/tls"), attempts=2, backoff=0.01)
    assert failed.value.kind is ErrorKind.TLS
    assert "--plain-http" in failed.value.message


def test_environment_credentials(
    registry: Registry,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_USERNAME, registry.username)
    monkeypatch.setenv(ENV_PASSWORD, registry.password)
    result = push_layout(
        layout(tmp_path), registry.ref(repo(request)), plain_http=True, attempts=2, backoff=0.01
    )
    assert result.credentials_source == f"${ENV_USERNAME}"


def _docker_config(directory: Path, config: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))


def test_docker_config_from_DOCKER_CONFIG(
    registry: Registry,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    auth = base64.b64encode(registry.creds.encode()).decode()
    _docker_config(tmp_path / "cfg", {"auths": {f"http://{registry.host}": {"auth": auth}}})
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "cfg"))
    result = push_layout(
        layout(tmp_path), registry.ref(repo(request)), plain_http=True, attempts=2, backoff=0.01
    )
    assert result.credentials_source == f"`{tmp_path / 'cfg' / 'config.json'}`"


def _fake_helper(bin_dir: Path, name: str, registry: Registry) -> None:
    bin_dir.mkdir(exist_ok=True)
    helper = bin_dir / f"docker-credential-{name}"
    creds = json.dumps(
        {"ServerURL": registry.host, "Username": registry.username, "Secret": registry.password}
    )
    helper.write_text(
        "#!/bin/sh\n"
        f'read server; if [ "$server" = "{registry.host}" ]; then\n'
        f"  echo '{creds}'\nelse echo 'credentials not found in native keychain'; exit 1; fi\n"
    )
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize("key", ["credHelpers", "credsStore"])
def test_docker_credential_helpers(
    key: str,
    registry: Registry,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_helper(tmp_path / "bin", "fake", registry)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    config: dict[str, Any] = (
        {"credHelpers": {registry.host: "fake"}} if key == "credHelpers" else {"credsStore": "fake"}
    )
    _docker_config(tmp_path / "home" / ".docker", config)
    result = push_layout(
        layout(tmp_path), registry.ref(repo(request)), plain_http=True, attempts=2, backoff=0.01
    )
    assert result.credentials_source == "`docker-credential-fake`"
    # A helper that has nothing for a host means "no credentials", not an error.
    assert resolve_credentials("other.example.com") is None


def test_credential_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    auth = base64.b64encode(b"cfg-user:cfg-pass").decode()
    _docker_config(tmp_path / "home" / ".docker", {"auths": {"r.example.com": {"auth": auth}}})
    assert resolve_credentials("r.example.com") == Credentials(
        "cfg-user", "cfg-pass", f"`{tmp_path / 'home' / '.docker' / 'config.json'}`"
    )
    monkeypatch.setenv(ENV_USERNAME, "env-user")
    monkeypatch.setenv(ENV_PASSWORD, "env-pass")
    found = resolve_credentials("r.example.com")
    assert found is not None and found.username == "env-user"
    found = resolve_credentials("r.example.com", username="cli", password="pw")
    assert found is not None and (found.username, found.source) == ("cli", "--username")
    assert "pw" not in repr(found)
    monkeypatch.delenv(ENV_PASSWORD)
    with pytest.raises(PushError, match=ENV_PASSWORD):
        resolve_credentials("r.example.com")
    with pytest.raises(PushError, match="both a username and a password"):
        resolve_credentials("r.example.com", username="cli")


def test_missing_credential_helper_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _docker_config(tmp_path / "home" / ".docker", {"credsStore": "nonexistent-helper"})
    with pytest.raises(
        PushError, match="`docker-credential-nonexistent-helper`, which is not on PATH"
    ):
        resolve_credentials("r.example.com")


def test_references() -> None:
    ref = parse_reference("registry.example.com/test-oci/header-authorization:v0.0.1")
    assert (ref.registry, ref.repository, ref.tag) == (
        "registry.example.com",
        "test-oci/header-authorization",
        "v0.0.1",
    )
    assert parse_reference("127.0.0.1:5000/x").tag == "latest"
    assert parse_reference("docker.io/me/x:1").api_host == "registry-1.docker.io"
    for bad in ("header-authorization:v1", "r.example.com/Upper:v1", "r.example.com/x@sha256:00"):
        with pytest.raises(PushError) as failed:
            parse_reference(bad)
        assert failed.value.kind is ErrorKind.REFERENCE


class _FlakySession(requests.Session):
    """Answers 503 and 429 before 200, counting requests."""

    def __init__(self, statuses: list[int]) -> None:
        super().__init__()
        self.statuses = statuses
        self.calls = 0

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = self.statuses[min(self.calls, len(self.statuses) - 1)]
        self.calls += 1
        return response


def test_transient_failures_are_retried_with_backoff() -> None:
    client = _Registry(
        parse_reference("r.example.com/x:v1"),
        None,
        plain_http=True,
        tls_verify=True,
        attempts=4,
        backoff=0.001,
        timeout=1,
    )
    client.session = _FlakySession([503, 429, 200])
    assert client.do_request("http://r.example.com/v2/").status_code == 200
    assert client.session.calls == 3
    client.session = _FlakySession([502])
    assert client.do_request("http://r.example.com/v2/").status_code == 502
    assert client.session.calls == 4, "gives up after `attempts`"


@pytest.mark.slow
def test_compile_and_push_from_the_command_line(
    registry: Registry, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The issue's "done when": `compile … --push REF --plain-http`, then an independent pull."""
    import os
    import subprocess
    import sys

    import jsonschema

    policy = Path(__file__).resolve().parents[1] / "examples/policies/header-authorization.hp"
    ref = registry.ref(repo(request))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hdrpolicy", *args],
            input=registry.password + "\n",
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=os.environ,
            check=False,
        )

    first = cli(
        *("compile", str(policy), "-o", "dist", "--push", ref, "--plain-http"),
        *("--username", registry.username, "--password-stdin"),
    )
    assert first.returncode == 0, first.stderr
    digest = first.stdout.strip()
    assert digest.startswith("sha256:") and registry.password not in first.stderr
    out = tmp_path / "dist"
    plugin = yaml.safe_load((out / manifests.WASMPLUGIN).read_text())
    jsonschema.validate(plugin, crd_schema("istio-wasmplugin-crd.yaml"))
    assert plugin["spec"]["url"] == f"oci://{ref}"
    assert plugin["spec"]["sha256"] == digest.removeprefix("sha256:")
    assert inspect_digest(registry, ref) == digest
    assert pull_wasm(registry, ref, tmp_path)[1] == (out / "plugin.wasm").read_bytes()

    again = cli(
        "push", "dist", ref, "--plain-http", "--username", registry.username, "--password-stdin"
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == digest
