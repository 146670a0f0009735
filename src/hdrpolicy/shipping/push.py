"""Stage 7, publish: an OCI image layout → a registry tag, verified by reading it back.

The registry protocol is oras-py's (`oras.provider.Registry`: reference
parsing, blob existence checks and monolithic blob uploads, the bearer-token
exchange).  Three things are done here instead, because oras-py gets them
wrong for this use:

* The manifest is uploaded as the layout's exact bytes.  oras-py re-serialises
  the manifest dict, which would change its digest and break the pin the
  deployment manifests carry.
* `do_request` is replaced.  oras-py retries *every* exception, including a
  rejected password, for minutes with a fixed back-off, and answers a Basic
  challenge by asking the challenge's realm for a token.  Here a Basic
  challenge gets Basic credentials, a Bearer challenge gets a token, a
  rejected credential fails at once, and only transient failures (connection
  errors, 429, 5xx) are retried, a few times with a short exponential back-off.
* Credentials come from hdrpolicy's own sources in a fixed order (explicit,
  environment, `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`, with
  `credHelpers`/`credsStore`); oras-py ignores `DOCKER_CONFIG`.

Every failure is a `PushError` whose message names the problem.  Every
credential read is held by `redact`, which the CLI applies to every message
it prints, so none is shown even when a registry echoes it back.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import oras.auth.utils  # type: ignore[import-untyped]
import oras.container  # type: ignore[import-untyped]
import oras.provider  # type: ignore[import-untyped]
import requests

from hdrpolicy.errors import HdrpolicyError
from hdrpolicy.escape import visible_line
from hdrpolicy.shipping.oci import MANIFEST_MEDIA_TYPE, ImageError, read_image_layout
from hdrpolicy.shipping.redact import hold, hold_credentials

ENV_USERNAME = "HDRPOLICY_REGISTRY_USERNAME"
ENV_PASSWORD = "HDRPOLICY_REGISTRY_PASSWORD"
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
MANIFEST_ACCEPT = ", ".join(
    [
        MANIFEST_MEDIA_TYPE,
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
# Docker Hub is addressed as docker.io but served, and keyed in config.json, elsewhere.
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"


class ErrorKind(StrEnum):
    REFERENCE = "reference"
    CREDENTIALS = "credentials"
    UNAUTHORIZED = "unauthorized"
    DENIED = "denied"
    UNREACHABLE = "unreachable"
    TLS = "tls"
    TAG_EXISTS = "tag-exists"
    REGISTRY = "registry"
    LAYOUT = "layout"
    VERIFY = "verify"


class PushError(HdrpolicyError):
    """A push failed; `message` is safe to show (it never holds a secret)."""

    def __init__(self, message: str, kind: ErrorKind = ErrorKind.REGISTRY) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Reference:
    """`registry/repository:tag`, split; `api_host` is where the registry API lives."""

    registry: str
    repository: str
    tag: str

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}:{self.tag}"


_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REFERENCE = re.compile(
    rf"(?P<registry>[A-Za-z0-9.-]+(?::[0-9]+)?|\[[0-9a-fA-F:]+\](?::[0-9]+)?)/"
    rf"(?P<repository>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
)


def parse_reference(ref: str) -> Reference:
    """Parse `REGISTRY/REPOSITORY[:TAG]`; the registry must be explicit, the tag defaults to latest.

    A registry host is required (no implicit Docker Hub) because the reference
    ends up in cluster manifests, where an implicit default is a surprise.
    """
    if "@" in re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*://", "", ref).split("/", 1)[0]:
        userinfo = ref.rsplit("@", 1)[0]
        hold(userinfo, userinfo.split("://")[-1].partition(":")[2])
        raise PushError(
            "the reference holds credentials (before an `@` ahead of the registry); "
            "references end up in cluster manifests, so hdrpolicy refuses them: give "
            f"`--username` with `--password-stdin`, or ${ENV_USERNAME}/${ENV_PASSWORD}, "
            "or the Docker config",
            ErrorKind.REFERENCE,
        )
    if "@" in ref:
        raise PushError(
            f"`{ref}`: push to a tag, not a digest (the digest is computed from the image)",
            ErrorKind.REFERENCE,
        )
    m = _REFERENCE.fullmatch(ref)
    if m is None:
        _refuse_upper_case(ref)
    if m is None or not (
        "." in m["registry"] or ":" in m["registry"] or m["registry"] == "localhost"
    ):
        raise PushError(
            f"`{ref}` is not a registry reference; expected REGISTRY/REPOSITORY:TAG, "
            "e.g. `registry.example.com/test-oci/header-authorization:v0.0.1`",
            ErrorKind.REFERENCE,
        )
    registry = m["registry"]
    port = registry.rsplit(":", 1)[1] if ":" in registry and not registry.endswith("]") else None
    if port is not None and not 0 < int(port) < 65536:
        raise PushError(
            f"`{ref}`: port `{port}` is not a TCP port (1 to 65535)", ErrorKind.REFERENCE
        )
    return Reference(registry, m["repository"], m["tag"] or "latest")


def _refuse_upper_case(ref: str) -> None:
    """A reference that is only wrong in its case gets told so (Docker's own error is vague)."""
    registry, _, rest = ref.partition("/")
    repository, colon, tag = rest.partition(":")
    lowered = f"{registry}/{repository.lower()}{colon}{tag}"
    if repository != repository.lower() and _REFERENCE.fullmatch(lowered):
        raise PushError(
            f"`{ref}`: repository names are lower case in OCI registries (only the tag may "
            f"have capitals); write `{lowered}`",
            ErrorKind.REFERENCE,
        )


def tag_given(ref: str) -> bool:
    """Whether REF names its tag (else `latest` is pushed, and the CLI says so first)."""
    m = _REFERENCE.fullmatch(ref)
    return m is not None and m["tag"] is not None


@dataclass(frozen=True)
class Credentials:
    """A username and password, and where they came from (shown; the password never is)."""

    username: str
    password: str = field(repr=False)
    source: str

    def __post_init__(self) -> None:
        hold_credentials(self.username, self.password)


def docker_config_path(environ: Mapping[str, str]) -> Path:
    """`$DOCKER_CONFIG/config.json` if DOCKER_CONFIG is set, else `~/.docker/config.json`."""
    if environ.get("DOCKER_CONFIG"):
        return Path(environ["DOCKER_CONFIG"]) / "config.json"
    home = environ.get("HOME")
    return (Path(home) if home else Path.home()) / ".docker" / "config.json"


def _config_host(key: str) -> str:
    """Docker's normalisation of an `auths` key: drop the scheme and any path."""
    host = re.sub(r"^[a-z]+://", "", key).split("/", 1)[0]
    return DOCKER_HUB if host in {"index.docker.io", DOCKER_HUB_API} else host


def resolve_credentials(
    registry: str,
    *,
    username: str | None = None,
    password: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Credentials | None:
    """The first credentials found: explicit, then environment, then Docker's config file.

    Returns None when no source has any (an anonymous push is then attempted,
    and a registry that wants credentials gets a clear unauthorised error).
    """
    env = os.environ if environ is None else environ
    if username is not None or password is not None:
        if not username or password is None:
            raise PushError(
                "give both a username and a password (`--username` with `--password-stdin`)",
                ErrorKind.CREDENTIALS,
            )
        return Credentials(username, password, "--username")
    env_user, env_password = env.get(ENV_USERNAME), env.get(ENV_PASSWORD)
    if env_user or env_password:
        if not env_user or env_password is None:
            missing = ENV_PASSWORD if env_user else ENV_USERNAME
            raise PushError(f"`{missing}` is not set but its partner is", ErrorKind.CREDENTIALS)
        return Credentials(env_user, env_password, f"${ENV_USERNAME}")
    return _from_docker_config(registry, docker_config_path(env), env)


def _from_docker_config(
    registry: str, path: Path, environ: Mapping[str, str]
) -> Credentials | None:
    try:
        config = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise PushError(
            f"cannot read Docker config `{path}`: {exc}", ErrorKind.CREDENTIALS
        ) from exc
    if not isinstance(config, dict):
        raise PushError(f"Docker config `{path}` is not a JSON object", ErrorKind.CREDENTIALS)
    host = _config_host(registry)
    server = DOCKER_HUB_CONFIG_KEY if host == DOCKER_HUB else host
    helpers = {_config_host(k): v for k, v in (config.get("credHelpers") or {}).items()}
    if host in helpers:
        return _from_helper(str(helpers[host]), server, environ)
    for key, entry in sorted((config.get("auths") or {}).items()):
        if _config_host(key) != host or not isinstance(entry, dict):
            continue
        where = f"`{path}`"
        if entry.get("auth"):
            hold(str(entry["auth"]))
            try:
                decoded = base64.b64decode(entry["auth"], validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError, TypeError) as exc:
                raise PushError(
                    f"the `auth` entry for `{key}` in {where} is not base64 `user:password`",
                    ErrorKind.CREDENTIALS,
                ) from exc
            user, sep, secret = decoded.partition(":")
            if not sep or not user:
                raise PushError(
                    f"the `auth` entry for `{key}` in {where} is not base64 `user:password`",
                    ErrorKind.CREDENTIALS,
                )
            return Credentials(user, secret, where)
        if entry.get("username") and entry.get("password") is not None:
            return Credentials(str(entry["username"]), str(entry["password"]), where)
    if config.get("credsStore"):
        return _from_helper(str(config["credsStore"]), server, environ)
    return None


def _from_helper(name: str, server: str, environ: Mapping[str, str]) -> Credentials | None:
    """Ask `docker-credential-NAME get`; "not found" means no credentials, anything else fails."""
    binary = f"docker-credential-{name}"
    try:
        proc = subprocess.run(
            [binary, "get"],
            input=server,
            capture_output=True,
            text=True,
            env=dict(environ),
            timeout=60,
            check=False,
        )
    except FileNotFoundError as exc:
        raise PushError(
            f"the Docker config names credential helper `{binary}`, which is not on PATH",
            ErrorKind.CREDENTIALS,
        ) from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PushError(
            f"credential helper `{binary}` failed: {exc}", ErrorKind.CREDENTIALS
        ) from exc
    if proc.returncode != 0:
        if "not found" in (proc.stdout + proc.stderr).lower():
            return None
        raise PushError(
            f"credential helper `{binary}` failed: {proc.stderr.strip() or proc.stdout.strip()}",
            ErrorKind.CREDENTIALS,
        )
    try:
        payload = json.loads(proc.stdout)
        user, secret = str(payload["Username"]), str(payload["Secret"])
    except (ValueError, KeyError, TypeError) as exc:
        raise PushError(
            f"credential helper `{binary}` printed something other than credentials",
            ErrorKind.CREDENTIALS,
        ) from exc
    if user == "<token>":
        raise PushError(
            f"`{binary}` holds an identity token for `{server}`, which hdrpolicy cannot use; "
            "give a username and password instead",
            ErrorKind.CREDENTIALS,
        )
    return Credentials(user, secret, f"`{binary}`")


@dataclass(frozen=True)
class PushResult:
    reference: str
    digest: str
    # Where the credentials came from, or None for an anonymous push.
    credentials_source: str | None
    uploaded: int
    already_present: int
    # The digest the tag pointed at before the push, if it existed.
    previous_digest: str | None = None
    notes: tuple[str, ...] = ()


def _registry_errors(response: requests.Response) -> str:
    """The registry's own error codes and messages (the distribution spec's JSON body)."""
    try:
        errors = response.json().get("errors", [])
        parts = [f"{e.get('code', '?')}: {e.get('message', '')}".strip() for e in errors]
    except (ValueError, AttributeError):
        parts = []
    return "; ".join(parts) or f"HTTP {response.status_code} {response.reason}"


class _Registry(oras.provider.Registry):  # type: ignore[misc]
    """oras-py's Registry with hdrpolicy's credentials, auth and retry policy."""

    def __init__(
        self,
        ref: Reference,
        credentials: Credentials | None,
        *,
        plain_http: bool,
        tls_verify: bool | str,
        attempts: int,
        backoff: float,
        timeout: float,
    ) -> None:
        super().__init__(
            hostname=ref.api_host, insecure=plain_http, tls_verify=tls_verify, auth_backend="token"
        )
        self.ref = ref
        self.credentials = credentials
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.timeout = timeout
        self.authorization: str | None = None
        if credentials is not None:
            self.auth.set_basic_auth(credentials.username, credentials.password)

    def do_request(
        self,
        url: str,
        method: str = "GET",
        data: Any = None,
        headers: dict[str, str] | None = None,
        json: Any = None,
        stream: bool = False,
    ) -> requests.Response:
        """One request, authorised on demand, retried only when the failure is transient."""
        for attempt in range(1, self.attempts + 1):
            last = attempt == self.attempts
            try:
                response = self._authorised(url, method, data, headers, json, stream)
            except requests.exceptions.SSLError as exc:
                raise PushError(
                    f"TLS handshake with `{self.ref.api_host}` failed: {_reason(exc)}; "
                    "use `--plain-http` only for a registry that serves plain HTTP",
                    ErrorKind.TLS,
                ) from exc
            except (requests.ConnectionError, requests.Timeout) as exc:
                if last:
                    raise PushError(
                        f"cannot reach registry `{self.ref.api_host}` "
                        f"after {self.attempts} attempt(s): {_reason(exc)}",
                        ErrorKind.UNREACHABLE,
                    ) from exc
            except requests.TooManyRedirects as exc:
                raise PushError(
                    f"registry `{self.ref.api_host}` redirects in a loop "
                    f"(more than {self.session.max_redirects} redirects)",
                ) from exc
            except requests.RequestException as exc:
                raise PushError(
                    f"the request to registry `{self.ref.api_host}` failed: {_reason(exc)}"
                ) from exc
            else:
                if response.status_code not in TRANSIENT_STATUSES or last:
                    return response
            time.sleep(self.backoff * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    def _send(
        self, url: str, method: str, data: Any, headers: dict[str, str], body: Any, stream: bool
    ) -> requests.Response:
        if self.authorization:
            headers = {**headers, "Authorization": self.authorization}
        session: requests.Session = self.session
        return session.request(
            method,
            url,
            data=data,
            json=body,
            headers=headers,
            stream=stream,
            verify=self._tls_verify,
            timeout=self.timeout,
        )

    def _authorised(
        self,
        url: str,
        method: str,
        data: Any,
        headers: dict[str, str] | None,
        body: Any,
        stream: bool,
    ) -> requests.Response:
        base = dict(headers or {})
        response = self._send(url, method, data, base, body, stream)
        if response.status_code != 401:
            return self._check_denied(response)
        self.authorization = self._answer(response.headers.get("WWW-Authenticate", ""))
        response = self._send(url, method, data, base, body, stream)
        if response.status_code == 401:
            raise self._unauthorised()
        return self._check_denied(response)

    def _check_denied(self, response: requests.Response) -> requests.Response:
        if response.status_code == 403:
            who = f"user `{self.credentials.username}`" if self.credentials else "anonymous"
            raise PushError(
                f"registry `{self.ref.api_host}` denied {who} access to "
                f"`{self.ref.repository}`: {_registry_errors(response)}",
                ErrorKind.DENIED,
            )
        return response

    def _unauthorised(self) -> PushError:
        if self.credentials is None:
            return PushError(
                f"unauthorised: registry `{self.ref.api_host}` requires credentials and none "
                f"were found (tried --username, ${ENV_USERNAME}/${ENV_PASSWORD} and the Docker "
                "config file)",
                ErrorKind.UNAUTHORIZED,
            )
        return PushError(
            f"unauthorised: registry `{self.ref.api_host}` rejected the password for user "
            f"`{self.credentials.username}` (from {self.credentials.source})",
            ErrorKind.UNAUTHORIZED,
        )

    def _answer(self, challenge: str) -> str:
        """The Authorization header answering a 401's challenge: Basic, or a Bearer token."""
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            if self.credentials is None:
                raise self._unauthorised()
            pair = f"{self.credentials.username}:{self.credentials.password}".encode()
            return "Basic " + base64.b64encode(pair).decode("ascii")
        if scheme == "bearer":
            return f"Bearer {self._token(challenge)}"
        raise PushError(
            f"registry `{self.ref.api_host}` asked for an unsupported authentication scheme "
            f"`{scheme or '(none)'}`",
            ErrorKind.UNAUTHORIZED,
        )

    def _token(self, challenge: str) -> str:
        """A token from the challenge's token service (the distribution token protocol).

        Done here rather than by oras-py, which sends no timeout and fails with
        an exception on an answer that is not a JSON object.  The token goes
        into a header, so one with CR, LF or other non-visible characters is
        refused (it could add headers of its own).
        """
        parsed = oras.auth.utils.parse_auth_header(challenge)
        if not parsed.realm:
            raise PushError(
                f"registry `{self.ref.api_host}` asked for a token but named no token "
                "service (`realm`)",
                ErrorKind.UNAUTHORIZED,
            )
        realm = visible_line(str(parsed.realm))
        params = {k: str(v) for k in ("service", "scope") if (v := getattr(parsed, k, None))}
        headers = {"Accept": "application/json"}
        if self.credentials is not None:
            pair = f"{self.credentials.username}:{self.credentials.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        try:
            response = self.session.get(
                str(parsed.realm),
                params=params,
                headers=headers,
                verify=self._tls_verify,
                timeout=self.timeout,
            )
        except requests.TooManyRedirects as exc:
            raise PushError(
                f"token service `{realm}` redirects in a loop", ErrorKind.UNAUTHORIZED
            ) from exc
        except requests.RequestException as exc:
            raise PushError(
                f"cannot get a token from `{realm}`: {_reason(exc)}", ErrorKind.UNREACHABLE
            ) from exc
        if response.status_code == 401:
            raise self._unauthorised()
        if response.status_code != 200:
            raise PushError(
                f"token service `{realm}` refused a token: {_registry_errors(response)}",
                ErrorKind.UNAUTHORIZED,
            )
        try:
            answer = response.json()
        except ValueError:
            answer = None
        token = None
        if isinstance(answer, dict):
            token = answer.get("token") or answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise PushError(
                f"token service `{realm}` did not answer with a token "
                "(a JSON object with `token` or `access_token`)",
                ErrorKind.UNAUTHORIZED,
            )
        hold(token)
        if not all(0x21 <= ord(ch) <= 0x7E for ch in token):
            raise PushError(
                f"token service `{realm}` gave a token with characters an HTTP header cannot "
                "hold (such as CR or LF); it was not used",
                ErrorKind.UNAUTHORIZED,
            )
        return token


def _reason(exc: Exception) -> str:
    """The innermost cause of a requests error, which names refusal, DNS or certificate."""
    inner: BaseException = exc
    while inner.__context__ is not None and inner.__context__ is not inner:
        inner = inner.__context__
    text = str(inner)
    return text.split("] ", 1)[-1] if "] " in text else text


def push_layout(
    layout: Path,
    ref: str,
    *,
    username: str | None = None,
    password: str | None = None,
    plain_http: bool = False,
    tls_verify: bool | str = True,
    force: bool = False,
    attempts: int = 4,
    backoff: float = 0.5,
    timeout: float = 60.0,
    environ: Mapping[str, str] | None = None,
) -> PushResult:
    """Push the image in `layout` to `ref`, then read the manifest back and compare digests.

    A tag that already exists is left alone if it names this very image (the
    push is then a no-op and says so), and refused if it names another image
    unless `force` is set: moving a tag under a running cluster is a decision.
    """
    reference = parse_reference(ref)
    try:
        image = read_image_layout(layout)
    except ImageError as exc:
        raise PushError(exc.message, ErrorKind.LAYOUT) from exc
    credentials = resolve_credentials(
        reference.registry, username=username, password=password, environ=environ
    )
    client = _Registry(
        reference,
        credentials,
        plain_http=plain_http,
        tls_verify=tls_verify,
        attempts=attempts,
        backoff=backoff,
        timeout=timeout,
    )
    container = oras.container.Container(str(reference))
    container.registry = reference.api_host
    manifest_url = f"{client.prefix}://{container.manifest_url()}"
    source = credentials.source if credentials else None

    previous = _current_digest(client, manifest_url)
    notes: list[str] = []
    if previous == image.digest:
        notes.append(f"`{reference}` already pointed at {image.digest}")
    elif previous is not None and not force:
        raise PushError(
            f"tag `{reference}` already exists and points at another image ({previous}); "
            "push to a new tag, or pass `--force` to move the tag",
            ErrorKind.TAG_EXISTS,
        )
    elif previous is not None:
        notes.append(f"moved `{reference}` from {previous}")

    uploaded = present = 0
    for descriptor, path in image.blobs:
        if client.blob_exists(descriptor, container):
            present += 1
            continue
        try:
            response = client.put_upload(str(path), container, descriptor)
        except ValueError as exc:  # oras-py: the registry gave no upload session
            raise PushError(
                f"registry `{reference.api_host}` refused the upload to "
                f"`{reference.repository}`: {exc}"
            ) from exc
        if response.status_code not in (200, 201, 202):
            raise PushError(
                f"uploading {descriptor['digest']} to `{reference}` failed: "
                f"{_registry_errors(response)}"
            )
        uploaded += 1

    response = client.do_request(
        manifest_url, "PUT", data=image.manifest.data, headers={"Content-Type": MANIFEST_MEDIA_TYPE}
    )
    if response.status_code not in (200, 201):
        raise PushError(
            f"uploading the manifest to `{reference}` failed: {_registry_errors(response)}"
        )
    reported = response.headers.get("Docker-Content-Digest")
    if reported and reported != image.digest:
        raise PushError(
            f"registry stored the manifest as {reported}, expected {image.digest}",
            ErrorKind.VERIFY,
        )
    stored = _current_digest(client, manifest_url)
    if stored != image.digest:
        raise PushError(
            f"verification failed: `{reference}` reads back as {stored}, expected {image.digest}",
            ErrorKind.VERIFY,
        )
    return PushResult(
        reference=str(reference),
        digest=image.digest,
        credentials_source=source,
        uploaded=uploaded,
        already_present=present,
        previous_digest=previous,
        notes=tuple(notes),
    )


def _current_digest(client: _Registry, manifest_url: str) -> str | None:
    """The digest of the manifest a tag names now (hashed from its bytes), or None if no tag."""
    response = client.do_request(manifest_url, "GET", headers={"Accept": MANIFEST_ACCEPT})
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise PushError(
            f"reading `{client.ref}` from the registry failed: {_registry_errors(response)}"
        )
    return "sha256:" + hashlib.sha256(response.content).hexdigest()
