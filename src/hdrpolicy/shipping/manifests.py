"""Stage 8, deploy: the image digest → WasmPlugin, EnvoyExtensionPolicy and Envoy filter config.

Each manifest pins the image by its manifest digest (`sha256:` is its hex), so
what was reviewed is what runs.  Before a push there is no registry reference
yet, so the image URL points at the reserved `.invalid` domain
(`unpushed.invalid/hdrpolicy/NAME:unpushed`, RFC 2606): the manifest still
validates against its CRD and already carries the right digest (it is a
function of the wasm bytes), but it is obviously unpushed and can never fetch
anything by accident.  `pin_manifests` rewrites the URL after a push and keeps
every other choice made at compile time.

The policy file, its sha256 and the wasm's sha256 are written as a header
comment for people and as `metadata.annotations` for `pin_manifests`, which
rebuilds the header from them.  Output is deterministic: fixed key order,
no timestamps, no absolute paths.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from hdrpolicy.errors import HdrpolicyError
from hdrpolicy.escape import visible_line
from hdrpolicy.files import write_atomically
from hdrpolicy.proxy.envoy import DEFAULT_ADDRESS, DEFAULT_PORT, Plugin, Upstream, bootstrap

WASMPLUGIN = "wasmplugin.yaml"
ENVOY_EXTENSION_POLICY = "envoyextensionpolicy.yaml"
ENVOY = "envoy.yaml"
MANIFESTS = (WASMPLUGIN, ENVOY_EXTENSION_POLICY, ENVOY)

UNPUSHED_REGISTRY = "unpushed.invalid"
GATEWAY_API_GROUP = "gateway.networking.k8s.io"
# Kinds Envoy Gateway accepts in an EnvoyExtensionPolicy's targetRefs.
EG_TARGET_KINDS = (
    "Gateway",
    "ListenerSet",
    "HTTPRoute",
    "GRPCRoute",
    "TCPRoute",
    "UDPRoute",
    "TLSRoute",
)
# Envoy Gateway's quickstart Gateway, the target when none is given.
EG_DEFAULT_TARGET = ("Gateway", "eg")
ANNOTATION_POLICY = "hdrpolicy.io/policy"
ANNOTATION_POLICY_SHA256 = "hdrpolicy.io/policy-sha256"
ANNOTATION_WASM_SHA256 = "hdrpolicy.io/wasm-sha256"
ANNOTATION_SHADOW = "hdrpolicy.io/shadow-policy"
ANNOTATION_SHADOW_SHA256 = "hdrpolicy.io/shadow-policy-sha256"
# `enforce`, `dry-run` (never denies) or `shadow` (enforces, and evaluates a
# second policy): `kubectl get wasmplugins -L hdrpolicy.io/mode` shows it.
LABEL_MODE = "hdrpolicy.io/mode"
# A dry-run plug-in's resource name ends so, so applying it never replaces
# (switches off) the enforcing plug-in of the same policy.
DRY_RUN_SUFFIX = "-dry-run"
_HEX64 = re.compile(r"[a-f0-9]{64}")


class ManifestError(HdrpolicyError):
    """Options that cannot make a valid manifest, or a manifest file that cannot be pinned."""


class Phase(StrEnum):
    AUTHN = "AUTHN"
    AUTHZ = "AUTHZ"
    STATS = "STATS"


@dataclass(frozen=True)
class TargetRef:
    """A Gateway API object the plug-in attaches to (`--target-ref Kind/name`)."""

    kind: str
    name: str
    group: str = GATEWAY_API_GROUP

    @classmethod
    def parse(cls, text: str) -> TargetRef:
        """`Kind/name`; `Service` is in the core group, everything else in Gateway API's."""
        kind, sep, name = text.partition("/")
        if not sep or not re.fullmatch(r"[A-Za-z][-A-Za-z0-9]*", kind) or not name or "/" in name:
            raise ManifestError(
                f"`{text}` is not a target reference; expected KIND/NAME, e.g. `Gateway/eg`"
            )
        return cls(kind, name, "" if kind == "Service" else GATEWAY_API_GROUP)


@dataclass(frozen=True)
class DeployOptions:
    """What the user can override; the defaults are the tutorial's."""

    # None: `istio-system` for the WasmPlugin, `default` for the EnvoyExtensionPolicy.
    namespace: str | None = None
    # None: `{istio: ingressgateway}`, unless a target_ref is given (Istio allows only one).
    selector: Mapping[str, str] | None = None
    target_ref: TargetRef | None = None
    phase: Phase = Phase.AUTHN
    priority: int | None = None
    pull_secret: str | None = None
    fail_open: bool = False
    # envoy.yaml: where it loads the plug-in from (absolute, or relative to Envoy's
    # working directory); None: the plug-in's bytes are inline, so it runs from anywhere.
    wasm_path: str | None = None
    # envoy.yaml: the listener, and the service behind it (None: a 200 saying "allowed").
    envoy_address: str = DEFAULT_ADDRESS
    envoy_port: int = DEFAULT_PORT
    upstream: Upstream | None = None
    # envoy.yaml: the admin endpoint's port, on 127.0.0.1 (9901 is Envoy's customary one).
    envoy_admin_port: int = 9901

    def __post_init__(self) -> None:
        if self.selector is not None and self.target_ref is not None:
            raise ManifestError("give a selector or a target reference, not both")
        if self.selector is not None and not self.selector:
            raise ManifestError("the selector is empty")
        if self.priority is not None and not -(2**31) <= self.priority < 2**31:
            raise ManifestError(f"priority `{self.priority}` is not a 32-bit integer")
        for port in (self.envoy_port, self.envoy_admin_port):
            if not 0 <= port < 2**16:
                raise ManifestError(f"port `{port}` is not between 0 and 65535")
        try:
            ip_address(self.envoy_address)
        except ValueError:
            raise ManifestError(
                f"`{self.envoy_address}` is not an IP address for Envoy's listener"
            ) from None
        if self.wasm_path == "":
            raise ManifestError("the plug-in path for envoy.yaml is empty")
        # What the API server would refuse is refused here, with the option's name.
        if self.namespace is not None:
            _require(self.namespace, _DNS_LABEL, "--namespace")
        if self.pull_secret is not None:
            _require(self.pull_secret, _DNS_SUBDOMAIN, "--pull-secret")
        if self.target_ref is not None:
            _require(self.target_ref.name, _DNS_SUBDOMAIN, "--target-ref")
        for key, value in (self.selector or {}).items():
            prefix, _, name = key.rpartition("/")
            if prefix:
                _require(prefix, _DNS_SUBDOMAIN, "--selector")
            _require(name, _LABEL_NAME, "--selector")
            if value:
                _require(value, _LABEL_NAME, "--selector")


# Kubernetes' name rules (k8s.io/apimachinery/pkg/util/validation): pattern, length, wording.
_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_DNS_LABEL = (
    re.compile(_LABEL),
    63,
    "a DNS label (lower-case letters, digits and `-`, at most 63 characters)",
)
_DNS_SUBDOMAIN = (
    re.compile(rf"{_LABEL}(?:\.{_LABEL})*"),
    253,
    "a DNS subdomain (lower-case letters, digits, `-` and `.`, at most 253 characters)",
)
_LABEL_NAME = (
    re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"),
    63,
    "a label name (letters, digits, `-`, `_` and `.`, at most 63 characters)",
)


def _require(value: str, rule: tuple[re.Pattern[str], int, str], option: str) -> None:
    pattern, limit, what = rule
    if len(value) > limit or not pattern.fullmatch(value):
        raise ManifestError(
            f"`{option}`: `{visible_line(value)}` is not {what}; Kubernetes would refuse it"
        )


@dataclass(frozen=True)
class PluginInfo:
    """The plug-in being deployed: its name, provenance and image."""

    name: str
    policy_file: str
    policy_sha256: str
    wasm_sha256: str
    image_digest: str
    # `registry/repository:tag` once pushed; None before.
    image_ref: str | None = None
    # plugin.wasm itself, for envoy.yaml (unknown when pinning a pushed image).
    wasm: bytes | None = field(default=None, repr=False, compare=False)
    mode: str = "enforce"
    # The shadow policy's file name and sha256 (a shadow build).
    shadow_file: str | None = None
    shadow_sha256: str | None = None

    @classmethod
    def from_files(
        cls,
        name: str,
        policy: Path,
        wasm: Path,
        image_digest: str,
        image_ref: str | None = None,
        *,
        mode: str = "enforce",
        shadow: Path | None = None,
    ) -> PluginInfo:
        """Hash the files; only the policy's file name is recorded, never its directory.

        A dry-run plug-in's name ends in `-dry-run`; a shadow build's mode is `shadow`.
        """
        code = wasm.read_bytes()
        return cls(
            name=name + (DRY_RUN_SUFFIX if mode == "dry-run" else ""),
            policy_file=policy.name,
            policy_sha256=hashlib.sha256(policy.read_bytes()).hexdigest(),
            wasm_sha256=hashlib.sha256(code).hexdigest(),
            image_digest=image_digest,
            image_ref=image_ref,
            wasm=code,
            mode="shadow" if shadow is not None else mode,
            shadow_file=shadow.name if shadow is not None else None,
            shadow_sha256=hashlib.sha256(shadow.read_bytes()).hexdigest() if shadow else None,
        )

    @property
    def digest_hex(self) -> str:
        hex_ = self.image_digest.removeprefix("sha256:")
        if not _HEX64.fullmatch(hex_):
            raise ManifestError(f"`{self.image_digest}` is not a sha256 image digest")
        return hex_

    @property
    def ref(self) -> str:
        """The image reference, or the obviously unpushed placeholder."""
        return self.image_ref or f"{UNPUSHED_REGISTRY}/hdrpolicy/{self.name}:unpushed"

    @property
    def pushed(self) -> bool:
        return self.image_ref is not None


def yaml_comment_text(text: str) -> str:
    """Text from outside made one visible line inside a `#` comment.

    PyYAML ends a comment at U+2028, U+2029 and NEL as well as CR and LF, and
    both PyYAML and go-yaml reject control characters anywhere in a stream:
    `visible_line` leaves only printable characters, so what follows `#` can
    neither end the comment nor start a document.
    """
    return visible_line(text)


def _header(info: PluginInfo, what: str) -> str:
    lines = [
        f"# {what}, generated by hdrpolicy from {yaml_comment_text(info.policy_file)}",
        *(
            [f"# mode: {info.mode}" + _MODE_NOTES.get(info.mode, "")]
            if info.mode != "enforce"
            else []
        ),
        f"# policy sha256: {yaml_comment_text(info.policy_sha256)}",
        f"# plugin.wasm sha256: {yaml_comment_text(info.wasm_sha256)}",
        f"# image digest: {yaml_comment_text(info.image_digest)}",
    ]
    if info.pushed:
        lines.append(f"# image: {yaml_comment_text(info.ref)}")
    return "\n".join(lines) + "\n" + ("" if info.pushed else _NOT_PUSHED)


_MODE_NOTES = {
    "dry-run": " (never denies: counts and logs what it would deny)",
    "shadow": " (enforces the policy, and evaluates a second one in its shadow)",
}

_NOT_PUSHED = (
    "# NOT PUSHED YET: the image URL points at `unpushed.invalid`;\n"
    "# run `hdrpolicy push DIR REGISTRY/REPOSITORY:TAG` to pin the pushed image.\n"
)


def _annotations(info: PluginInfo) -> dict[str, str]:
    """Provenance for `pin_manifests`; the file name as the header shows it (YAML is text)."""
    out = {
        ANNOTATION_POLICY: visible_line(info.policy_file),
        ANNOTATION_POLICY_SHA256: info.policy_sha256,
        ANNOTATION_WASM_SHA256: info.wasm_sha256,
    }
    if info.shadow_file is not None and info.shadow_sha256 is not None:
        out[ANNOTATION_SHADOW] = visible_line(info.shadow_file)
        out[ANNOTATION_SHADOW_SHA256] = info.shadow_sha256
    return out


# A string both YAML 1.1 (PyYAML) and go-yaml v2 (kubectl's sigs.k8s.io/yaml)
# read as that very string when it is written plain.
_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9._/:@-]*")
# Plain words go-yaml v2 reads as booleans or null although PyYAML does not quote them.
_NOT_PLAIN = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})


@cache
def _dumper() -> type[Any]:
    """PyYAML's safe dumper, with every string kubectl might misread double-quoted.

    PyYAML writes `1e3`, `0o17`, `y` and `n` plain because YAML 1.1 reads
    them as strings; go-yaml reads them as a number or a boolean, so a
    `--namespace` or selector value could reach the cluster as another type.
    Double-quoted scalars escape every non-printable character.  Built on
    first use: `fmt` and `check` import this module but never dump YAML.
    """
    import yaml

    class Dumper(yaml.SafeDumper):
        def represent_str(self, data: str) -> yaml.ScalarNode:
            if _PLAIN.fullmatch(data) and data.lower() not in _NOT_PLAIN:
                return super().represent_str(data)
            return self.represent_scalar("tag:yaml.org,2002:str", data, style='"')

    Dumper.add_representer(str, Dumper.represent_str)
    return Dumper


def _dump(doc: Mapping[str, Any]) -> str:
    import yaml

    return yaml.dump(
        dict(doc), Dumper=_dumper(), sort_keys=False, default_flow_style=False, width=1000
    )


def wasmplugin(info: PluginInfo, options: DeployOptions) -> dict[str, Any]:
    """Istio's WasmPlugin, in the tutorial's shape and key order."""
    spec: dict[str, Any] = {
        "url": f"oci://{info.ref}",
        "sha256": info.digest_hex,
        "imagePullPolicy": "IfNotPresent",
    }
    if options.pull_secret:
        spec["imagePullSecret"] = options.pull_secret
    if options.target_ref is not None:
        ref = options.target_ref
        spec["targetRef"] = {"group": ref.group, "kind": ref.kind, "name": ref.name}
    else:
        labels = options.selector or {"istio": "ingressgateway"}
        spec["selector"] = {"matchLabels": {k: labels[k] for k in sorted(labels)}}
    spec["phase"] = options.phase.value
    if options.priority is not None:
        spec["priority"] = options.priority
    spec["failStrategy"] = "FAIL_OPEN" if options.fail_open else "FAIL_CLOSE"
    return {
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {
            "name": info.name,
            "namespace": options.namespace or "istio-system",
            "labels": {LABEL_MODE: info.mode},
            "annotations": _annotations(info),
        },
        "spec": spec,
    }


def envoyextensionpolicy(info: PluginInfo, options: DeployOptions) -> dict[str, Any]:
    """Envoy Gateway's EnvoyExtensionPolicy: the same image and digest, attached to a Gateway."""
    kind, name = EG_DEFAULT_TARGET
    group = GATEWAY_API_GROUP
    if options.target_ref is not None:
        kind, name, group = (
            options.target_ref.kind,
            options.target_ref.name,
            options.target_ref.group,
        )
        if kind not in EG_TARGET_KINDS or group != GATEWAY_API_GROUP:
            raise ManifestError(
                f"Envoy Gateway cannot attach a policy to `{kind}`; use one of "
                + ", ".join(f"`{k}`" for k in EG_TARGET_KINDS)
            )
    image: dict[str, Any] = {"url": info.ref, "sha256": info.digest_hex}
    if options.pull_secret:
        image["pullSecretRef"] = {"name": options.pull_secret}
    return {
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "EnvoyExtensionPolicy",
        "metadata": {
            "name": info.name,
            "namespace": options.namespace or "default",
            "labels": {LABEL_MODE: info.mode},
            "annotations": _annotations(info),
        },
        "spec": {
            "targetRefs": [{"group": group, "kind": kind, "name": name}],
            "wasm": [
                {
                    "name": info.name,
                    "code": {"type": "Image", "image": image},
                    "failOpen": options.fail_open,
                }
            ],
        },
    }


# Stands for the plug-in's base64 while the config is dumped: PyYAML's pure-Python
# emitter takes seconds over 3 MB, and base64 needs no quoting beyond '…'.
_INLINE = "@hdrpolicy-inline-wasm@"


def envoy_bootstrap(info: PluginInfo, options: DeployOptions) -> dict[str, Any]:
    """A complete Envoy config: the plug-in on a listener, in front of the upstream."""
    if options.wasm_path is None and info.wasm is None:
        raise ManifestError("envoy.yaml needs plugin.wasm's bytes, or a path to load it from")
    plugin = Plugin(
        name=info.name,
        wasm=options.wasm_path or _INLINE,
        inline=options.wasm_path is None,
        address=options.envoy_address,
        port=options.envoy_port,
        fail_open=options.fail_open,
        access_log="/dev/stdout",
        policy=info.name.removesuffix(DRY_RUN_SUFFIX) if info.mode == "dry-run" else info.name,
    )
    return bootstrap([plugin], options.upstream, admin_port=options.envoy_admin_port)


def _envoy_text(info: PluginInfo, options: DeployOptions) -> str:
    host = options.envoy_address
    url = f"http://{f'[{host}]' if ':' in host else host}:{options.envoy_port}/"
    note = [
        "# A complete Envoy config: `envoy -c envoy.yaml`, from any directory, serves",
        f"# {url} (HTTP/1.1 and h2c) under the policy;"
        f" admin on 127.0.0.1:{options.envoy_admin_port}.",
    ]
    text = _dump(envoy_bootstrap(info, options))
    if options.wasm_path is None:
        assert info.wasm is not None
        note.append("# The plug-in's bytes are inline (vm_config.code.local.inline_bytes).")
        text = text.replace(_INLINE, base64.b64encode(info.wasm).decode("ascii"), 1)
    else:
        shown = yaml_comment_text(options.wasm_path)
        note.append(f"# The plug-in is read from `{shown}` (a relative path is")
        note.append("# relative to Envoy's working directory); Envoy has no sha256 check for")
        note.append("# local code, so compare `sha256sum` of that file with the line above.")
    return _header(info, "Envoy config") + "\n".join(note) + "\n" + text


def render(info: PluginInfo, options: DeployOptions) -> dict[str, str]:
    """File name → text for all three manifests."""
    return {
        WASMPLUGIN: _header(info, "Istio WasmPlugin") + _dump(wasmplugin(info, options)),
        ENVOY_EXTENSION_POLICY: _header(info, "Envoy Gateway EnvoyExtensionPolicy")
        + _dump(envoyextensionpolicy(info, options)),
        ENVOY: _envoy_text(info, options),
    }


def write_manifests(out_dir: Path, info: PluginInfo, options: DeployOptions) -> list[str]:
    """(Re)write all three manifests into `out_dir`; returns the file names, sorted."""
    texts = render(info, options)  # render everything first: a bad option writes nothing
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        write_atomically(out_dir / name, text)
    return sorted(texts)


def _load(path: Path) -> dict[str, Any]:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ManifestError(f"cannot read `{path}`: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ManifestError(f"`{path}` is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("metadata"), dict):
        raise ManifestError(f"`{path}` is not a Kubernetes manifest")
    return doc


def _info_from(doc: dict[str, Any], path: Path, image_ref: str, digest: str) -> PluginInfo:
    annotations = doc["metadata"].get("annotations") or {}
    labels = doc["metadata"].get("labels") or {}
    shadow = annotations.get(ANNOTATION_SHADOW)
    try:
        return PluginInfo(
            mode=str(labels.get(LABEL_MODE, "enforce")),
            shadow_file=None if shadow is None else str(shadow),
            shadow_sha256=None if shadow is None else str(annotations[ANNOTATION_SHADOW_SHA256]),
            name=str(doc["metadata"]["name"]),
            policy_file=str(annotations[ANNOTATION_POLICY]),
            policy_sha256=str(annotations[ANNOTATION_POLICY_SHA256]),
            wasm_sha256=str(annotations[ANNOTATION_WASM_SHA256]),
            image_digest=digest,
            image_ref=image_ref,
        )
    except KeyError as exc:
        raise ManifestError(f"`{path}` was not generated by hdrpolicy (missing {exc})") from exc


def pin_manifests(out_dir: Path, image_ref: str, digest: str) -> list[str]:
    """After a push: point the Kubernetes manifests at `image_ref` and pin `digest`.

    Everything else in them (namespace, selector, phase, …) is kept as compiled.
    `envoy.yaml` loads the local plugin.wasm, so only its "not pushed" note is
    replaced.  Returns the files pinned.
    """
    rewritten = []
    for name in (WASMPLUGIN, ENVOY_EXTENSION_POLICY):
        path = out_dir / name
        if not path.exists():
            continue
        doc = _load(path)
        info = _info_from(doc, path, image_ref, digest)
        spec = doc.get("spec") or {}
        if name == WASMPLUGIN:
            spec["url"] = f"oci://{info.ref}"
            spec["sha256"] = info.digest_hex
            what = "Istio WasmPlugin"
        else:
            for plugin in spec.get("wasm") or []:
                image = plugin.get("code", {}).get("image")
                if isinstance(image, dict):
                    image["url"] = info.ref
                    image["sha256"] = info.digest_hex
            what = "Envoy Gateway EnvoyExtensionPolicy"
        write_atomically(path, _header(info, what) + _dump(doc))
        rewritten.append(name)
    if not rewritten:
        raise ManifestError(f"no manifests to pin in `{out_dir}`; compile the policy first")
    envoy = out_dir / ENVOY
    if envoy.exists():
        text = envoy.read_text(encoding="utf-8")
        note = f"# image: {image_ref} (pushed; this file loads the local plugin.wasm instead)\n"
        if _NOT_PUSHED in text:
            write_atomically(envoy, text.replace(_NOT_PUSHED, note, 1))
    return rewritten
