"""Deployment manifests: valid against their CRDs, pinned by digest, deterministic."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from conftest import EXAMPLES, hdrpolicy
from hdrpolicy.proxy.envoy import EnvoyError, Upstream
from hdrpolicy.shipping import manifests as m
from registry import crd_schema

ISTIO_CRD = "istio-wasmplugin-crd.yaml"
EG_CRD = "envoy-gateway-envoyextensionpolicy-crd.yaml"
DIGEST = "sha256:" + "ab" * 32
INFO = m.PluginInfo(
    name="header-authorization",
    policy_file="header-authorization.hp",
    policy_sha256="11" * 32,
    wasm_sha256="22" * 32,
    image_digest=DIGEST,
    wasm=b"\0asm\1\0\0\0",
)
OPTION_SETS = {
    "defaults": m.DeployOptions(),
    "gateway": m.DeployOptions(
        namespace="edge",
        target_ref=m.TargetRef.parse("Gateway/public"),
        phase=m.Phase.AUTHZ,
        priority=10,
        pull_secret="wasm-secret",
        fail_open=True,
    ),
    "selector": m.DeployOptions(selector={"app": "api", "istio": "ingressgateway"}, priority=-5),
}


def validate_istio(doc: dict[str, Any]) -> None:
    jsonschema.validate(doc, crd_schema(ISTIO_CRD))
    assert (doc["apiVersion"], doc["kind"]) == ("extensions.istio.io/v1alpha1", "WasmPlugin")
    # CEL rule jsonschema cannot check: only one of selector, targetRef, targetRefs.
    assert sum(k in doc["spec"] for k in ("selector", "targetRef", "targetRefs")) <= 1


def validate_eg(doc: dict[str, Any]) -> None:
    jsonschema.validate(doc, crd_schema(EG_CRD))
    assert (doc["apiVersion"], doc["kind"]) == (
        "gateway.envoyproxy.io/v1alpha1",
        "EnvoyExtensionPolicy",
    )
    # CEL rules: targetRefs in the Gateway API group, of a kind EG accepts; Image needs image.
    for ref in doc["spec"]["targetRefs"]:
        assert ref["group"] == "gateway.networking.k8s.io"
        assert ref["kind"] in m.EG_TARGET_KINDS
    for plugin in doc["spec"]["wasm"]:
        assert plugin["code"]["type"] == "Image" and "image" in plugin["code"]


def load(text: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(text)
    return doc


@pytest.mark.parametrize("case", sorted(OPTION_SETS))
def test_manifests_validate_against_their_crds(case: str) -> None:
    texts = m.render(INFO, OPTION_SETS[case])
    validate_istio(load(texts[m.WASMPLUGIN]))
    validate_eg(load(texts[m.ENVOY_EXTENSION_POLICY]))


def test_wasmplugin_defaults_are_the_tutorials() -> None:
    doc = load(m.render(INFO, m.DeployOptions())[m.WASMPLUGIN])
    assert doc["metadata"]["name"] == "header-authorization"
    assert doc["metadata"]["namespace"] == "istio-system"
    assert doc["spec"] == {
        "url": "oci://unpushed.invalid/hdrpolicy/header-authorization:unpushed",
        "sha256": "ab" * 32,
        "imagePullPolicy": "IfNotPresent",
        "selector": {"matchLabels": {"istio": "ingressgateway"}},
        "phase": "AUTHN",
        "failStrategy": "FAIL_CLOSE",
    }


def test_options_reach_both_kubernetes_manifests() -> None:
    texts = m.render(INFO, OPTION_SETS["gateway"])
    istio, eg = load(texts[m.WASMPLUGIN]), load(texts[m.ENVOY_EXTENSION_POLICY])
    assert istio["metadata"]["namespace"] == eg["metadata"]["namespace"] == "edge"
    assert istio["spec"]["targetRef"] == {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": "public",
    }
    assert "selector" not in istio["spec"]
    assert (istio["spec"]["phase"], istio["spec"]["priority"]) == ("AUTHZ", 10)
    assert istio["spec"]["imagePullSecret"] == "wasm-secret"
    assert istio["spec"]["failStrategy"] == "FAIL_OPEN"
    assert eg["spec"]["targetRefs"] == [istio["spec"]["targetRef"]]
    (plugin,) = eg["spec"]["wasm"]
    assert plugin["failOpen"] is True
    assert plugin["code"]["image"]["pullSecretRef"] == {"name": "wasm-secret"}


def test_eg_defaults_to_the_quickstart_gateway() -> None:
    eg = load(m.render(INFO, m.DeployOptions())[m.ENVOY_EXTENSION_POLICY])
    assert eg["metadata"]["namespace"] == "default"
    assert eg["spec"]["targetRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "eg"}
    ]
    assert eg["spec"]["wasm"][0]["code"]["image"] == {
        "url": "unpushed.invalid/hdrpolicy/header-authorization:unpushed",
        "sha256": "ab" * 32,
    }


def _wasm_filter(config: dict[str, Any]) -> dict[str, Any]:
    (listener,) = config["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    (manager,) = chain["filters"]
    filters = manager["typed_config"]["http_filters"]
    assert [f["name"] for f in filters] == ["envoy.filters.http.wasm", "envoy.filters.http.router"]
    typed: dict[str, Any] = filters[0]["typed_config"]
    assert typed["@type"] == "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
    return typed


def test_envoy_config_is_a_bootstrap_with_the_plugin_inline() -> None:
    text = m.render(INFO, m.DeployOptions())[m.ENVOY]
    config = load(text)
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    (listener,) = config["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 10000}
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert manager["codec_type"] == "AUTO"
    assert manager["normalize_path"] is manager["merge_slashes"] is True
    assert manager["path_with_escaped_slashes_action"] == "REJECT_REQUEST"
    (route,) = manager["route_config"]["virtual_hosts"][0]["routes"]
    assert route["direct_response"]["status"] == 200, "no upstream: a reply that says allowed"
    assert "clusters" not in config["static_resources"]
    vm = _wasm_filter(config)["config"]["vm_config"]
    assert vm["runtime"] == "envoy.wasm.runtime.v8"
    assert vm["code"] == {"local": {"inline_bytes": "AGFzbQEAAAA="}}
    assert f"plugin.wasm sha256: {'22' * 32}" in text


def test_envoy_config_options() -> None:
    options = m.DeployOptions(
        envoy_address="0.0.0.0",
        envoy_port=8080,
        upstream=Upstream.parse("http://backend.example:9000"),
        wasm_path="/etc/envoy/plugin.wasm",
        fail_open=True,
    )
    text = m.render(INFO, options)[m.ENVOY]
    config = load(text)
    (listener,) = config["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 8080}
    (cluster,) = config["static_resources"]["clusters"]
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {
        "address": "backend.example",
        "port_value": 9000,
    }
    assert cluster["type"] == "LOGICAL_DNS"
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    (route,) = manager["route_config"]["virtual_hosts"][0]["routes"]
    assert route["route"] == {"cluster": cluster["name"]}
    wasm = _wasm_filter(config)["config"]
    assert wasm["fail_open"] is True
    assert wasm["vm_config"]["code"] == {"local": {"filename": "/etc/envoy/plugin.wasm"}}
    assert "/etc/envoy/plugin.wasm" in text.split("admin:")[0], "the header says where"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"envoy_port": 70000}, "not between 0 and 65535"),
        ({"envoy_address": "localhost"}, "not an IP address"),
        ({"wasm_path": ""}, "path for envoy.yaml is empty"),
    ],
)
def test_bad_envoy_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(m.ManifestError, match=message):
        m.DeployOptions(**options)


@pytest.mark.parametrize(
    "url",
    ["https://a.example", "a.example:80", "http://a.example/api", "http://a:b@c", "http://:1"],
)
def test_bad_upstreams_are_refused(url: str) -> None:
    with pytest.raises(EnvoyError, match="not an upstream URL"):
        Upstream.parse(url)


@pytest.mark.parametrize("name", m.MANIFESTS)
def test_every_manifest_names_the_policy_and_its_hash(name: str) -> None:
    text = m.render(INFO, m.DeployOptions())[name]
    assert text.startswith("# ")
    assert "header-authorization.hp" in text.splitlines()[0]
    assert f"policy sha256: {'11' * 32}" in text
    assert "NOT PUSHED YET" in text


def test_output_is_deterministic() -> None:
    options = m.DeployOptions(selector={"z": "1", "a": "2"})
    assert m.render(INFO, options) == m.render(INFO, m.DeployOptions(selector={"a": "2", "z": "1"}))


def test_write_then_pin(tmp_path: Path) -> None:
    written = m.write_manifests(tmp_path, INFO, OPTION_SETS["gateway"])
    assert written == sorted(m.MANIFESTS)
    envoy_before = (tmp_path / m.ENVOY).read_bytes()
    ref = "registry.example.com/test-oci/header-authorization:v0.0.1"
    digest = "sha256:" + "cd" * 32
    assert m.pin_manifests(tmp_path, ref, digest) == [m.WASMPLUGIN, m.ENVOY_EXTENSION_POLICY]
    istio = load((tmp_path / m.WASMPLUGIN).read_text())
    eg = load((tmp_path / m.ENVOY_EXTENSION_POLICY).read_text())
    validate_istio(istio)
    validate_eg(eg)
    assert istio["spec"]["url"] == f"oci://{ref}"
    assert istio["spec"]["sha256"] == eg["spec"]["wasm"][0]["code"]["image"]["sha256"] == "cd" * 32
    assert eg["spec"]["wasm"][0]["code"]["image"]["url"] == ref
    assert istio["spec"]["targetRef"]["name"] == "public", "compile-time choices survive"
    assert istio["metadata"]["namespace"] == "edge"
    text = (tmp_path / m.WASMPLUGIN).read_text()
    assert "NOT PUSHED YET" not in text and f"# image: {ref}" in text
    # envoy.yaml loads the local file: only its "not pushed" note changes.
    envoy_after = (tmp_path / m.ENVOY).read_text()
    assert "NOT PUSHED YET" in envoy_before.decode() and "NOT PUSHED YET" not in envoy_after
    assert f"# image: {ref} (pushed; this file loads the local plugin.wasm instead)" in envoy_after
    assert load(envoy_after) == load(envoy_before.decode())
    pinned = m.render(
        replace(INFO, image_digest=digest, image_ref=ref),
        OPTION_SETS["gateway"],
    )
    assert pinned[m.WASMPLUGIN] == text, "pinning equals generating with the ref"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(m.MANIFESTS), "no temp files"


def test_pin_without_manifests_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(m.ManifestError, match="compile the policy first"):
        m.pin_manifests(tmp_path, "registry.example.com/a:b", DIGEST)


def test_bad_options_are_refused() -> None:
    with pytest.raises(m.ManifestError, match="not both"):
        m.DeployOptions(selector={"a": "b"}, target_ref=m.TargetRef.parse("Gateway/x"))
    with pytest.raises(m.ManifestError, match="KIND/NAME"):
        m.TargetRef.parse("gateway")
    with pytest.raises(m.ManifestError, match="32-bit"):
        m.DeployOptions(priority=2**31)
    with pytest.raises(m.ManifestError, match="cannot attach a policy to `Service`"):
        m.render(INFO, m.DeployOptions(target_ref=m.TargetRef.parse("Service/api")))
    with pytest.raises(m.ManifestError, match="not a sha256"):
        m.render(replace(INFO, image_digest="sha256:xyz"), m.DeployOptions())


@pytest.mark.slow
def test_compile_options_reach_the_generated_manifests(tmp_path: Path) -> None:
    proc = hdrpolicy(
        *("compile", str(EXAMPLES / "header-authorization.hp"), "-o", "dist"),
        *("--namespace", "edge", "--selector", "app=gateway", "--selector", "tier=edge"),
        *("--phase", "AUTHZ", "--priority", "10", "--pull-secret", "regcred", "--fail-open"),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    plugin = yaml.safe_load((tmp_path / "dist" / m.WASMPLUGIN).read_text())
    jsonschema.validate(plugin, crd_schema("istio-wasmplugin-crd.yaml"))
    assert plugin["metadata"]["namespace"] == "edge"
    spec = plugin["spec"]
    assert spec["selector"] == {"matchLabels": {"app": "gateway", "tier": "edge"}}
    assert (spec["phase"], spec["priority"], spec["failStrategy"]) == ("AUTHZ", 10, "FAIL_OPEN")
    assert spec["imagePullSecret"] == "regcred"


def test_bad_compile_options_are_located_errors(tmp_path: Path) -> None:
    policy = str(EXAMPLES / "header-authorization.hp")
    bad_selector = hdrpolicy("compile", policy, "-o", "dist", "--selector", "novalue", cwd=tmp_path)
    assert bad_selector.returncode == 1 and "--selector novalue" in bad_selector.stderr
    both = hdrpolicy(
        *("compile", policy, "-o", "dist", "--selector", "a=b", "--target-ref", "Gateway/eg"),
        cwd=tmp_path,
    )
    assert both.returncode == 1 and "not both" in both.stderr
    assert not (tmp_path / "dist").exists()  # nothing written for bad options
