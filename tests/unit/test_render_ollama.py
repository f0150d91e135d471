"""Render: the managed Ollama (StatefulSet, headless Service, NetworkPolicy) in detail.

The golden cases managed-ollama and priority-chain hold the whole objects; these tests say
which properties of them matter and why.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmroute import versions
from llmroute.api.route import SpecError
from llmroute.api.schema import schema_default
from llmroute.render.names import managed_ollama_url
from llmroute.render.ollama import MODELS_DIR, READY_FILE, pull_script
from manifests import render_manifest

GOLDEN = Path(__file__).parent / "golden"
LABELS = {
    "app.kubernetes.io/name": "ollama",
    "app.kubernetes.io/instance": "gw",
    "app.kubernetes.io/component": "ollama",
    "app.kubernetes.io/part-of": "llmroute",
    "app.kubernetes.io/managed-by": "llmroute",
    "llmroute.dev/route": "gw",
}
PROXY_SELECTOR = {
    "app.kubernetes.io/name": "litellm",
    "app.kubernetes.io/instance": "gw",
    "app.kubernetes.io/component": "proxy",
}


def route(ollama: dict[str, Any] | None = None, **target: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "models": [
            {"name": "local", "targets": [{"provider": "ollama", "model": "llama3.2", **target}]}
        ]
    }
    if ollama is not None:
        spec["ollama"] = ollama
    return {
        "apiVersion": "llmroute.dev/v1alpha1",
        "kind": "LLMRoute",
        "metadata": {"name": "gw", "namespace": "apps"},
        "spec": spec,
    }


def ollama_objects(obj: dict[str, Any], **options: Any) -> dict[str, dict[str, Any]]:
    rendered = render_manifest(obj, **options)
    return {
        o["kind"]: o
        for o in rendered.objects
        if o["metadata"]["labels"]["app.kubernetes.io/component"] == "ollama"
    }


def statefulset(obj: dict[str, Any]) -> dict[str, Any]:
    return ollama_objects(obj)["StatefulSet"]


def container(obj: dict[str, Any]) -> dict[str, Any]:
    (only,) = statefulset(obj)["spec"]["template"]["spec"]["containers"]
    return only


def env(obj: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(obj)["env"]}


def test_managed_ollama_objects_in_apply_order() -> None:
    rendered = render_manifest(route({"models": ["llama3.2"]}))
    kinds = [(o["kind"], o["metadata"]["name"]) for o in rendered.objects]
    assert kinds[-3:] == [
        ("NetworkPolicy", "gw-ollama"),
        ("Service", "gw-ollama"),
        ("StatefulSet", "gw-ollama"),
    ]
    for _, obj in ollama_objects(route({"models": ["llama3.2"]})).items():
        assert obj["metadata"]["labels"] == LABELS
        assert obj["metadata"]["namespace"] == "apps"
        assert "ownerReferences" not in obj["metadata"]


@pytest.mark.parametrize(
    "ollama", [None, {"external": {"url": "http://ollama.lan:11434"}}], ids=["absent", "external"]
)
def test_no_managed_ollama_without_spec_or_with_external(ollama: dict | None) -> None:
    assert ollama_objects(route(ollama, apiBase="http://elsewhere:11434")) == {}


def test_external_url_is_where_targets_point() -> None:
    rendered = render_manifest(route({"external": {"url": "http://ollama.lan:11434/"}}))
    (deployment,) = rendered.config["model_list"]
    assert deployment["litellm_params"]["api_base"] == "http://ollama.lan:11434"


def test_targets_without_api_base_point_at_the_headless_service() -> None:
    obj = route({"models": ["llama3.2"]})
    rendered = render_manifest(obj)
    (deployment,) = rendered.config["model_list"]
    assert deployment["litellm_params"]["api_base"] == managed_ollama_url("gw", "apps")
    service = ollama_objects(obj)["Service"]
    assert managed_ollama_url("gw", "apps") == "http://gw-ollama.apps.svc:11434"
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == statefulset(obj)["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 11434, "targetPort": "http", "protocol": "TCP"}
    ]
    assert statefulset(obj)["spec"]["serviceName"] == "gw-ollama"


@pytest.mark.parametrize(
    ("ollama", "message"),
    [
        ({"external": {"url": "http://x:1"}, "models": ["a"]}, "models"),
        ({"external": {"url": "http://x:1"}, "storage": {"size": "1Gi"}}, "storage"),
        ({"models": ["bad name"]}, "spec.ollama.models[0]"),
        ({"storage": {"size": "lots"}}, "spec.ollama.storage.size"),
        ({"models": ["llama3.2\n"]}, "spec.ollama.models[0]"),
        ({"storage": {"size": "1Gi\n"}}, "spec.ollama.storage.size"),
        ({"numParallel": 0}, "spec.ollama.numParallel"),
    ],
)
def test_what_render_refuses(ollama: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("]", r"\]")):
        render_manifest(route(ollama))


def test_defaults_come_from_the_crd() -> None:
    obj = route({"models": ["llama3.2"]})
    (claim,) = statefulset(obj)["spec"]["volumeClaimTemplates"]
    size = schema_default("LLMRoute", "spec.ollama.storage.size")
    assert size == "20Gi"
    assert claim["spec"]["resources"] == {"requests": {"storage": size}}
    # Absent: the cluster's default StorageClass.
    assert "storageClassName" not in claim["spec"]
    values = env(obj)
    assert values["OLLAMA_KEEP_ALIVE"] == schema_default("LLMRoute", "spec.ollama.keepAlive")
    assert values["OLLAMA_NUM_PARALLEL"] == str(
        schema_default("LLMRoute", "spec.ollama.numParallel")
    )
    assert "resources" not in container(obj), "no GPU and no resources: nothing to request"


def test_explicit_defaults_render_the_same() -> None:
    explicit = route(
        {
            "models": ["llama3.2"],
            "storage": {"size": "20Gi"},
            "gpu": {"count": 0, "resourceName": "nvidia.com/gpu"},
            "keepAlive": "5m",
            "numParallel": 1,
        }
    )
    assert render_manifest(explicit) == render_manifest(route({"models": ["llama3.2"]}))


def test_storage_class_empty_means_no_class() -> None:
    obj = route({"storage": {"storageClassName": ""}})
    (claim,) = statefulset(obj)["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == ""
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"


def test_volume_claim_template_and_retention() -> None:
    obj = route({"models": ["llama3.2"], "storage": {"size": "50Gi", "storageClassName": "ssd"}})
    spec = statefulset(obj)["spec"]
    assert spec["replicas"] == 1
    assert spec["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"] == {"name": "models", "labels": LABELS}
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "50Gi"}},
        "storageClassName": "ssd",
    }
    mounts = {m["name"]: m["mountPath"] for m in container(obj)["volumeMounts"]}
    assert mounts["models"] == MODELS_DIR
    assert env(obj)["OLLAMA_MODELS"] == MODELS_DIR


def test_gpu_resources_node_selector_and_tolerations() -> None:
    toleration = {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}
    obj = route(
        {
            "gpu": {"count": 2},
            "resources": {"requests": {"memory": "8Gi"}, "limits": {"memory": "12Gi"}},
            "nodeSelector": {"accelerator": "l4"},
            "tolerations": [toleration],
            "keepAlive": "-1",
            "numParallel": 8,
        }
    )
    assert container(obj)["resources"] == {
        "requests": {"memory": "8Gi"},
        "limits": {"memory": "12Gi", "nvidia.com/gpu": 2},
    }
    pod = statefulset(obj)["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"accelerator": "l4"}
    assert pod["tolerations"] == [toleration]
    assert env(obj)["OLLAMA_KEEP_ALIVE"] == "-1"
    assert env(obj)["OLLAMA_NUM_PARALLEL"] == "8"
    amd = route({"gpu": {"count": 1, "resourceName": "amd.com/gpu"}})
    assert container(amd)["resources"] == {"limits": {"amd.com/gpu": 1}}


def test_the_network_policy_admits_only_the_routes_proxies_and_the_operator() -> None:
    policy = ollama_objects(route({}), operator_namespace="llmroute-system")["NetworkPolicy"]
    spec = policy["spec"]
    assert spec["podSelector"] == {
        "matchLabels": statefulset(route({}))["spec"]["selector"]["matchLabels"]
    }
    assert spec["policyTypes"] == ["Ingress"]
    proxies, operator = spec["ingress"]
    assert proxies["from"] == [{"podSelector": {"matchLabels": PROXY_SELECTOR}}]
    assert operator["from"] == [
        {
            "namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": "llmroute-system"}
            },
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "llmroute-operator"}},
        }
    ]
    for rule in spec["ingress"]:
        assert rule["ports"] == [{"protocol": "TCP", "port": 11434}]


def test_pod_runs_unprivileged_with_a_read_only_root() -> None:
    obj = route({"models": ["llama3.2"]})
    pod = statefulset(obj)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    c = container(obj)
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    # Everything Ollama writes is on a volume: models, HOME (its key pair), temp files.
    writable = {m["mountPath"] for m in c["volumeMounts"]}
    assert writable == {MODELS_DIR, "/tmp"}
    assert env(obj)["HOME"] == "/tmp"
    assert READY_FILE.startswith("/tmp/")


def test_the_container_runs_the_pull_script_and_gates_readiness_on_it() -> None:
    obj = route({"models": ["llama3.2", "qwen2.5:7b"]})
    c = container(obj)
    # The process runner and the Ollama status find the container by this name.
    assert c["name"] == "ollama"
    assert c["image"] == versions.OLLAMA_IMAGE
    assert c["command"] == ["/bin/sh", "-c", pull_script(), "llmroute-ollama"]
    assert c["ports"] == [{"name": "http", "containerPort": 11434, "protocol": "TCP"}]
    values = env(obj)
    assert values["LLMROUTE_OLLAMA_MODELS"] == "llama3.2 qwen2.5:7b"
    assert values["LLMROUTE_OLLAMA_READY_FILE"] == READY_FILE
    assert c["readinessProbe"]["exec"]["command"] == ["test", "-f", READY_FILE]
    # Liveness watches the server, which answers long before a pull ends.
    assert c["livenessProbe"]["httpGet"] == {"path": "/", "port": "http"}
    for name in values:
        if name.startswith("LLMROUTE_"):
            assert name in pull_script(), f"the script does not read {name}"


def test_changing_the_models_changes_only_the_pod_template() -> None:
    before = route({"models": ["llama3.2"]})
    after = copy.deepcopy(before)
    after["spec"]["ollama"]["models"] = ["llama3.2", "qwen2.5:7b"]
    old, new = render_manifest(before), render_manifest(after)
    # The proxy does not restart for it.
    assert old.config_hash == new.config_hash
    changed = [
        (a["kind"], a["metadata"]["name"])
        for a, b in zip(old.objects, new.objects, strict=True)
        if a != b
    ]
    assert changed == [("StatefulSet", "gw-ollama")]
    a, b = statefulset(before)["spec"], statefulset(after)["spec"]
    assert {k: v for k, v in a.items() if k != "template"} == {
        k: v for k, v in b.items() if k != "template"
    }
    assert a["template"] != b["template"]


@pytest.mark.parametrize(
    ("case", "managed"),
    [("priority-chain", True), ("managed-ollama", True), ("external-ollama", False)],
)
def test_golden_cases_with_spec_ollama(case: str, managed: bool) -> None:
    obj = yaml.safe_load((GOLDEN / case / "route.yaml").read_text())
    kinds = {o["kind"] for o in render_manifest(obj).objects}
    assert ("StatefulSet" in kinds) is managed
