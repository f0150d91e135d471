"""Kubernetes objects of a route's managed Ollama: StatefulSet, headless Service, NetworkPolicy.

Plain dicts, without ownerReferences (the handler adds them). Rendered only when the route has
`spec.ollama` without `external`.

The models live on a volume from the StatefulSet's volumeClaimTemplates, retained when the
route is deleted or scaled down: a pulled model is gigabytes, and pulling it again costs time
and registry traffic. The container's command (payloads/ollama_pull.sh) serves
Ollama and pulls the declared models that the volume does not hold yet; the readiness probe
passes only once all of them are present, so the pod is never Ready with a model missing.
"""

from __future__ import annotations

from typing import Any, Final

from llmroute import versions
from llmroute.api.route import Ollama, Route
from llmroute.payloads import OLLAMA_PULL, payload_text
from llmroute.render.labels import (
    ollama_labels,
    ollama_selector,
    operator_ingress,
    proxy_selector,
)
from llmroute.render.names import OLLAMA_PORT, ollama_name
from llmroute.render.stateful import stateful_pod_security_context, volume_claim_template

CONTAINER: Final = "ollama"
# The volumeClaimTemplate; its PVC is named models-<route>-ollama-0.
MODELS_VOLUME: Final = "models"
# On the volume, not under HOME: the image's default (/root/.ollama/models) belongs to root,
# and the container runs as an unprivileged user.
MODELS_DIR: Final = "/models"
TMP_DIR: Final = "/tmp"
READY_FILE: Final = "/tmp/llmroute/ready"
MODELS_ENV: Final = "LLMROUTE_OLLAMA_MODELS"
READY_FILE_ENV: Final = "LLMROUTE_OLLAMA_READY_FILE"
# Seconds the server gets to answer before the script gives up and the container restarts.
START_TIMEOUT_SECONDS: Final = 120
# A pull in progress is interrupted on SIGTERM; what was downloaded stays on the volume and
# the next pull resumes it.
TERMINATION_GRACE_SECONDS: Final = 30


def pull_script() -> str:
    """The text of payloads/ollama_pull.sh, the Ollama container's command."""
    return payload_text(OLLAMA_PULL)


def render_ollama_objects(route: Route, operator_namespace: str | None) -> list[dict[str, Any]]:
    """The managed Ollama's objects in apply order, or none when the route has no managed one."""
    if route.ollama is None:
        return []
    return [
        # Before the pod exists, so it is never reachable beyond what the policy allows.
        render_ollama_network_policy(route, operator_namespace),
        render_ollama_service(route),
        render_ollama_statefulset(route, route.ollama),
    ]


def render_ollama_service(route: Route) -> dict[str, Any]:
    # Headless: the StatefulSet's governing Service. <route>-ollama.<ns>.svc resolves to the
    # Ready pod, so the proxy reaches Ollama only once the models are pulled.
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": ollama_name(route.name),
            "namespace": route.namespace,
            "labels": ollama_labels(route.name),
        },
        "spec": {
            "clusterIP": "None",
            "selector": ollama_selector(route.name),
            "ports": [
                {"name": "http", "port": OLLAMA_PORT, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }


def render_ollama_network_policy(route: Route, operator_namespace: str | None) -> dict[str, Any]:
    port = [{"protocol": "TCP", "port": OLLAMA_PORT}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": ollama_name(route.name),
            "namespace": route.namespace,
            "labels": ollama_labels(route.name),
        },
        "spec": {
            "podSelector": {"matchLabels": ollama_selector(route.name)},
            "policyTypes": ["Ingress"],
            "ingress": [
                # The route's own proxies are the only clients of its Ollama.
                {
                    "from": [{"podSelector": {"matchLabels": proxy_selector(route.name)}}],
                    "ports": port,
                },
                # The operator reads /api/tags for status.ollama.models.
                *operator_ingress(operator_namespace, OLLAMA_PORT),
            ],
        },
    }


def _resources(ollama: Ollama) -> dict[str, Any]:
    resources = {k: dict(v) for k, v in ollama.resources.items() if isinstance(v, dict)}
    if ollama.gpu_count > 0:
        # Extended resources are requested through limits; the request follows the limit.
        resources["limits"] = {**resources.get("limits", {}), ollama.gpu_resource: ollama.gpu_count}
    return resources


def _env(ollama: Ollama) -> list[dict[str, Any]]:
    return [
        {"name": "OLLAMA_HOST", "value": f"0.0.0.0:{OLLAMA_PORT}"},
        {"name": "OLLAMA_MODELS", "value": MODELS_DIR},
        {"name": "OLLAMA_KEEP_ALIVE", "value": ollama.keep_alive},
        {"name": "OLLAMA_NUM_PARALLEL", "value": str(ollama.num_parallel)},
        # The root filesystem is read-only; Ollama keeps its key pair under HOME.
        {"name": "HOME", "value": TMP_DIR},
        # In the pod template, so a change of the list rolls the pod; the script pulls only
        # what the volume does not hold yet.
        {"name": MODELS_ENV, "value": " ".join(ollama.models)},
        {"name": READY_FILE_ENV, "value": READY_FILE},
        {"name": "LLMROUTE_OLLAMA_START_TIMEOUT", "value": str(START_TIMEOUT_SECONDS)},
    ]


def _container(ollama: Ollama) -> dict[str, Any]:
    alive = {"httpGet": {"path": "/", "port": "http"}, "timeoutSeconds": 5}
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": versions.OLLAMA_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        # The script as an argument of sh, so the pod needs no ConfigMap and a change of the
        # script rolls the pod like any other change of the template.
        "command": ["/bin/sh", "-c", pull_script(), "llmroute-ollama"],
        "ports": [{"name": "http", "containerPort": OLLAMA_PORT, "protocol": "TCP"}],
        "env": _env(ollama),
        # The server answers within seconds, long before the pulls end: the startup and
        # liveness probes watch the server, the readiness probe the models.
        "startupProbe": {**alive, "periodSeconds": 2, "failureThreshold": 30},
        "livenessProbe": {**alive, "periodSeconds": 15, "failureThreshold": 4},
        "readinessProbe": {
            "exec": {"command": ["test", "-f", READY_FILE]},
            "periodSeconds": 5,
            "failureThreshold": 1,
        },
        # A failed pull explains itself in the container's last state, or with its last logs.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": MODELS_VOLUME, "mountPath": MODELS_DIR},
            {"name": "tmp", "mountPath": TMP_DIR},
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    resources = _resources(ollama)
    if resources:
        container["resources"] = resources
    return container


def render_ollama_statefulset(route: Route, ollama: Ollama) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {
        # Service links would fill the environment with variables of every Service in the
        # namespace; one named "ollama" would add OLLAMA_* variables, Ollama's own settings.
        "enableServiceLinks": False,
        # Ollama never talks to the Kubernetes API.
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": stateful_pod_security_context(),
        "containers": [_container(ollama)],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}}],
    }
    if ollama.node_selector:
        pod_spec["nodeSelector"] = dict(ollama.node_selector)
    if ollama.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in ollama.tolerations]
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {
            "name": ollama_name(route.name),
            "namespace": route.namespace,
            "labels": ollama_labels(route.name),
        },
        "spec": {
            # One server: the volume is ReadWriteOnce, and one Ollama serves many requests
            # (numParallel) per loaded model.
            "replicas": 1,
            "serviceName": ollama_name(route.name),
            "selector": {"matchLabels": ollama_selector(route.name)},
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate"},
            # Pulled models outlive the route and a scale-down; claims created with Retain get
            # no ownerReference, so deleting the route leaves them (docs/ollama.md: reclaiming).
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": "Retain",
                "whenScaled": "Retain",
            },
            "template": {
                "metadata": {"labels": ollama_labels(route.name)},
                "spec": pod_spec,
            },
            # The labels find the retained claims: kubectl delete pvc -l llmroute.dev/route=<route>
            "volumeClaimTemplates": [
                volume_claim_template(
                    MODELS_VOLUME,
                    ollama_labels(route.name),
                    ollama.storage_size,
                    ollama.storage_class,
                )
            ],
        },
    }
