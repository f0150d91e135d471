"""Who owns the proxy Deployment's replica count, against the real API server and controllers.

Without autoscaling the route's spec.proxy.replicas owns it: a hand scale is drift and is
restored. With autoscaling the HorizontalPodAutoscaler (kube-controller-manager's) owns it,
and turning autoscaling on hands the field over without a reset to the default of one.

Only the Deployment's spec matters here, so no process runs for its pods.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest
import urllib3
from kubernetes import client, watch

from llmroute.api import GROUP, ROUTE_PLURAL, VERSION
from llmroute.kube import FIELD_MANAGER, manages_field
from localcluster import LocalCluster, tools, wait_for

pytestmark = pytest.mark.usefixtures("operator")

DEPLOYMENT = "gw-litellm"


def route_manifest(proxy: dict) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LLMRoute",
        "metadata": {"name": "gw"},
        "spec": {
            "models": [
                {
                    "name": "local",
                    "targets": [
                        {
                            "provider": "openai-compatible",
                            "model": "tiny",
                            "apiBase": "http://127.0.0.1:9/v1",
                            "rpm": 100,
                        }
                    ],
                }
            ],
            "proxy": proxy,
        },
    }


def create_route(api: client.ApiClient, namespace: str, proxy: dict) -> None:
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, ROUTE_PLURAL, route_manifest(proxy)
    )


def patch_proxy(api: client.ApiClient, namespace: str, proxy: dict) -> None:
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, ROUTE_PLURAL, "gw", {"spec": {"proxy": proxy}}
    )


def raw_deployment(api: client.ApiClient, namespace: str) -> dict:
    """The Deployment as the API server sends it (managedFields in their JSON shape)."""
    response = client.AppsV1Api(api).read_namespaced_deployment(
        DEPLOYMENT, namespace, _preload_content=False
    )
    return json.loads(response.data)


def deployment_replicas(api: client.ApiClient, namespace: str) -> int | None:
    return raw_deployment(api, namespace)["spec"].get("replicas")


def operator_owns_replicas(api: client.ApiClient, namespace: str) -> bool:
    return manages_field(raw_deployment(api, namespace), FIELD_MANAGER, ("spec", "replicas"))


def route_condition(api: client.ApiClient, namespace: str, type_: str) -> dict | None:
    route = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, ROUTE_PLURAL, "gw"
    )
    conditions = (route.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), None)


def observed_generation(api: client.ApiClient, namespace: str) -> bool:
    route = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, ROUTE_PLURAL, "gw"
    )
    return (route.get("status") or {}).get("observedGeneration") == route["metadata"]["generation"]


class ReplicaWatch:
    """Every spec.replicas the Deployment takes, from a resourceVersion on (a watch, so no
    change falls between two reads)."""

    def __init__(self, api: client.ApiClient, namespace: str, resource_version: str) -> None:
        self.apps = client.AppsV1Api(api)
        self.namespace = namespace
        self.resource_version = resource_version
        self.seen: list[int] = []
        self._stopped = False
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for event in self._watch.stream(
                self.apps.list_namespaced_deployment,
                self.namespace,
                field_selector=f"metadata.name={DEPLOYMENT}",
                resource_version=self.resource_version,
                timeout_seconds=600,
            ):
                self.seen.append(event["object"].spec.replicas)
        except urllib3.exceptions.ProtocolError:
            # Stopped, the watch ends with the next event, or when the cluster goes away.
            if not self._stopped:
                raise

    def stop(self) -> list[int]:
        self._stopped = True
        self._watch.stop()
        return list(self.seen)


def test_turning_autoscaling_on_hands_the_replicas_to_the_autoscaler(api, namespace):
    create_route(api, namespace, {"replicas": 5, "workers": 1})
    wait_for(lambda: deployment_replicas(api, namespace) == 5, what="the Deployment at 5 replicas")
    # Five processes count rpm 100 each on their own: 20 each, said in a condition.
    limits = wait_for(lambda: route_condition(api, namespace, "LimitsExact"), what="LimitsExact")
    assert (limits["status"], limits["reason"]) == ("False", "DividedAcrossProcesses")
    assert "rpm 100: 20 per process, 100 in total" in limits["message"]
    apps = client.AppsV1Api(api)
    before = apps.read_namespaced_deployment(DEPLOYMENT, namespace)
    watcher = ReplicaWatch(api, namespace, before.metadata.resource_version)

    # maxReplicas 4 < 5: the autoscaler, and only it, takes the count down to 4 (it enforces
    # its bounds without metrics; this cluster runs no metrics server).
    patch_proxy(
        api, namespace, {"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 4}}
    )
    autoscaling = client.AutoscalingV2Api(api)
    wait_for(
        lambda: autoscaling.read_namespaced_horizontal_pod_autoscaler(DEPLOYMENT, namespace),
        timeout=60,
        what="the HorizontalPodAutoscaler",
    )
    # Until the autoscaler has brought the count within its bounds, or it fell below them.
    wait_for(
        lambda: watcher.seen and (watcher.seen[-1] == 4 or min(watcher.seen) < 2),
        timeout=120,
        what="the autoscaler scaling the Deployment to its maximum",
    )
    seen = watcher.stop()
    assert min(seen) >= 2, f"replicas dropped below minReplicas during the hand-over: {seen}"
    assert seen[-1] == 4
    # The operator no longer claims the field, so it never writes it back.
    assert not operator_owns_replicas(api, namespace)


def kubectl(cluster: LocalCluster, cache_dir: Path, *args: str) -> None:
    subprocess.run(
        [
            str(tools.binary("kubectl")),
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--cache-dir",
            str(cache_dir),
            *args,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_hand_scaled_deployment_is_restored(api, cluster, namespace, tmp_path, capsys):
    create_route(api, namespace, {"replicas": 1})
    wait_for(lambda: deployment_replicas(api, namespace) == 1, what="the Deployment at 1 replica")
    apps = client.AppsV1Api(api)
    before = apps.read_namespaced_deployment(DEPLOYMENT, namespace)
    watcher = ReplicaWatch(api, namespace, before.metadata.resource_version)

    scaled_at = time.monotonic()
    kubectl(cluster, tmp_path, "scale", "deployment", DEPLOYMENT, "-n", namespace, "--replicas=3")
    wait_for(lambda: 3 in watcher.seen, timeout=30, what="the hand scale to 3")
    wait_for(
        lambda: watcher.seen[watcher.seen.index(3) :].count(1) > 0,
        timeout=60,
        interval=0.05,
        what="the replica count restored to 1",
    )
    restored_after = time.monotonic() - scaled_at
    with capsys.disabled():
        print(f"\nhand scale restored in {restored_after:.2f} s")
    assert deployment_replicas(api, namespace) == 1
    watcher.stop()

    # With autoscaling on, the autoscaler owns the count: a hand scale within its bounds is
    # left to it (without metrics it keeps it), and a reconcile does not undo it.
    patch_proxy(
        api, namespace, {"autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 5}}
    )
    wait_for(lambda: not operator_owns_replicas(api, namespace), what="spec.replicas released")
    kubectl(cluster, tmp_path, "scale", "deployment", DEPLOYMENT, "-n", namespace, "--replicas=3")
    patch_proxy(api, namespace, {"autoscaling": {"targetCPUUtilizationPercentage": 70}})
    wait_for(lambda: observed_generation(api, namespace), what="the route reconciled")
    assert deployment_replicas(api, namespace) == 3
