"""Deleting routes, quotas and their namespace completes while the operator is gone.

Nothing llmroute runs puts a finalizer on a route or a quota (docs/design.md), so deletion
never waits for the operator. Objects that an older operator left its kopf finalizer on lose
it as soon as the operator sees them again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from conftest import OperatorProcess
from llmroute.api import GROUP, QUOTA_PLURAL, ROUTE_PLURAL, VERSION
from localcluster import wait_for

pytestmark = pytest.mark.e2e

# The finalizer kopf puts on objects that have timers or daemons (its default
# settings.persistence.finalizer); the operator's ModelQuota and Ollama timers did.
KOPF_FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"


def route_manifest(name: str, finalizers: list[str] | None = None) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LLMRoute",
        "metadata": {"name": name, "finalizers": finalizers or []},
        "spec": {
            "models": [{"name": "local", "targets": [{"provider": "ollama", "model": "llama3.2"}]}],
            "ollama": {"models": ["llama3.2"], "storage": {"size": "1Gi"}},
        },
    }


def quota_manifest(name: str, route: str, finalizers: list[str] | None = None) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelQuota",
        "metadata": {"name": name, "finalizers": finalizers or []},
        "spec": {
            "routeRef": {"name": route},
            "match": {"model": "llama3.2"},
            "budget": {"limitUSD": 1, "period": "daily"},
        },
    }


@pytest.fixture
def own_namespace(api: client.ApiClient) -> Iterator[str]:
    """A namespace the test deletes itself (the shared fixture's teardown would delete it)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    try:
        core.delete_namespace(name)
    except ApiException as error:
        if error.status != 404:
            raise


@pytest.fixture
def namespaced_operator(cluster, own_namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    """An operator of its own, watching only the test's namespace, that the test stops."""
    operator = OperatorProcess(
        cluster.kubeconfig, tmp_path / "operator.log", args=["--namespace", own_namespace]
    )
    operator.start()
    yield operator
    if operator.popen is not None and operator.popen.poll() is None:
        operator.stop()


def handled(custom: client.CustomObjectsApi, namespace: str, plural: str, name: str) -> dict:
    """The object once the operator has written its status for the current generation."""

    def probe() -> dict | None:
        body = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        generation = body["metadata"].get("generation")
        return body if (body.get("status") or {}).get("observedGeneration") == generation else None

    return wait_for(probe, timeout=120, what=f"{plural}/{name} handled by the operator")


def test_deletion_completes_without_the_operator(api, own_namespace, namespaced_operator) -> None:
    namespace = own_namespace
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, ROUTE_PLURAL, route_manifest("gw")
    )
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, QUOTA_PLURAL, quota_manifest("budget", "gw")
    )
    # Left by an older operator: its timers needed kopf's finalizer.
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, ROUTE_PLURAL, route_manifest("old", [KOPF_FINALIZER])
    )
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, QUOTA_PLURAL, quota_manifest("old", "old", [KOPF_FINALIZER])
    )

    for plural, name in [(ROUTE_PLURAL, "gw"), (QUOTA_PLURAL, "budget")]:
        body = handled(custom, namespace, plural, name)
        assert body["metadata"].get("finalizers") in (None, []), (plural, name)
    for plural in (ROUTE_PLURAL, QUOTA_PLURAL):

        def released(plural: str = plural) -> bool:
            body = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, "old")
            return not body["metadata"].get("finalizers")

        wait_for(released, timeout=120, what=f"{plural}/old without the old operator's finalizer")
    # The route with an Ollama got its children: the operator did its work on it.
    client.AppsV1Api(api).read_namespaced_stateful_set("gw-ollama", namespace)

    assert namespaced_operator.stop() == 0
    for plural in (QUOTA_PLURAL, ROUTE_PLURAL):
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, plural, "old")
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, QUOTA_PLURAL, "budget")
    started = time.monotonic()
    core.delete_namespace(namespace)

    def gone() -> bool:
        try:
            core.read_namespace(namespace)
        except ApiException as error:
            return error.status == 404
        return False

    wait_for(gone, timeout=180, interval=1, what=f"namespace {namespace} deleted")
    print(f"namespace deleted without the operator in {time.monotonic() - started:.1f} s")
