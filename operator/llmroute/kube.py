"""The few Kubernetes API calls the operator makes, on the official Python client.

Children are written with server-side apply under one field manager, so a re-apply of
an unchanged object is a no-op on the server (the resourceVersion stays as it is).
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

FIELD_MANAGER = "llmroute"

# apiVersion/kind -> URL plural, for the kinds the operator owns.
_PLURALS = {
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Secret"): "secrets",
    ("v1", "Service"): "services",
    ("v1", "PersistentVolumeClaim"): "persistentvolumeclaims",
    ("apps/v1", "Deployment"): "deployments",
    ("apps/v1", "StatefulSet"): "statefulsets",
    ("networking.k8s.io/v1", "NetworkPolicy"): "networkpolicies",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "horizontalpodautoscalers",
}


def object_path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    plural = _PLURALS[(api_version, kind)]
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{prefix}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


def _call(
    api: client.ApiClient,
    method: str,
    path: str,
    *,
    query_params: list[tuple[str, str]] | None = None,
    header_params: dict[str, str] | None = None,
    body: Any = None,
) -> Any:
    """One request through the client's own auth, TLS and connection pool; JSON back."""
    request = api.param_serialize(
        method=method,
        resource_path=path,
        query_params=query_params,
        header_params={"Accept": "application/json", **(header_params or {})},
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(*request)
    response.read()
    if not 200 <= response.status < 300:
        raise ApiException(http_resp=response)
    return json.loads(response.data) if response.data else None


def apply(api: client.ApiClient, obj: dict) -> dict:
    """Server-side apply `obj` (which must carry metadata.namespace) as FIELD_MANAGER."""
    meta = obj["metadata"]
    return _call(
        api,
        "PATCH",
        object_path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"]),
        query_params=[("fieldManager", FIELD_MANAGER), ("force", "true")],
        header_params={
            "Content-Type": "application/apply-patch+yaml",
            "Accept": "application/json",
        },
        # JSON is YAML; a str body is sent as is by the client.
        body=json.dumps(obj),
    )


def get(
    api: client.ApiClient, api_version: str, kind: str, namespace: str, name: str
) -> dict | None:
    try:
        return _call(api, "GET", object_path(api_version, kind, namespace, name))
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def create(api: client.ApiClient, obj: dict) -> dict | None:
    """Create `obj`; None when it exists already (what is there is never overwritten)."""
    meta = obj["metadata"]
    try:
        return _call(
            api,
            "POST",
            object_path(obj["apiVersion"], obj["kind"], meta["namespace"]),
            query_params=[("fieldManager", FIELD_MANAGER)],
            header_params={"Content-Type": "application/json"},
            body=obj,
        )
    except ApiException as error:
        if error.status == 409:
            return None
        raise


def owner_reference(owner: dict) -> dict:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def last_writer(obj: dict) -> str | None:
    """The field manager of the most recent write to anything but the status."""
    entries = [
        e
        for e in obj.get("metadata", {}).get("managedFields") or []
        if not e.get("subresource") and e.get("time")
    ]
    if not entries:
        return None
    return max(entries, key=lambda e: e["time"])["manager"]
