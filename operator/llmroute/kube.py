"""The few Kubernetes API calls the operator makes, on the official Python client.

Children are written with server-side apply under one field manager, so a re-apply of
an unchanged object is a no-op on the server (the resourceVersion stays as it is).
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from llmroute.render.children import plurals
from llmroute.render.labels import REPLICAS_ANNOTATION

FIELD_MANAGER = "llmroute"
# A second manager of the operator's own, used only to hand spec.replicas over to an
# autoscaler (see apply_releasing_replicas). It owns nothing once the autoscaler has
# written the field, and the API server then drops its entry from managedFields.
HANDOVER_FIELD_MANAGER = "llmroute-handover"

# apiVersion/kind -> URL plural, for the kinds the operator owns (its table of child kinds).
_PLURALS = plurals()


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


def apply(
    api: client.ApiClient,
    obj: dict,
    *,
    dry_run: bool = False,
    manager: str = FIELD_MANAGER,
    force: bool = True,
) -> dict:
    """Server-side apply `obj` (which must carry metadata.namespace) as `manager`.

    dry_run: the same request with dryRun=All; the API server validates and admits it (the
    built-in checks, admission policies and webhooks) and returns the result, but stores
    nothing.
    """
    meta = obj["metadata"]
    query = [("fieldManager", manager), ("force", "true" if force else "false")]
    if dry_run:
        query.append(("dryRun", "All"))
    return _call(
        api,
        "PATCH",
        object_path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"]),
        query_params=query,
        header_params={
            "Content-Type": "application/apply-patch+yaml",
            "Accept": "application/json",
        },
        # JSON is YAML, but for its escapes of characters beyond the basic plane (surrogate
        # pairs), which YAML refuses: write every character as itself. A str body is sent as
        # UTF-8 by the client.
        body=json.dumps(obj, ensure_ascii=False),
    )


def api_message(error: ApiException) -> str:
    """The API server's own message for a refused request (its Status object), else the HTTP
    reason. It names the object and the fields at fault, never the object's data."""
    try:
        status = json.loads(error.body or "")
    except (TypeError, ValueError):
        status = None
    if isinstance(status, dict) and status.get("message"):
        return str(status["message"])
    return f"{error.status} {error.reason}".strip()


def apply_releasing_replicas(api: client.ApiClient, obj: dict, initial_replicas: int) -> dict:
    """Apply a workload whose spec.replicas another controller (an autoscaler) owns.

    `obj` leaves spec.replicas out. Left out while FIELD_MANAGER still owns the field, the
    API server would reset it to its default (one replica) before the autoscaler claims it.
    So, as the Kubernetes documentation's "Transferring ownership" (Server-Side Apply)
    describes: HANDOVER_FIELD_MANAGER first applies just the current count, without force,
    becoming a co-owner of the field; only then does FIELD_MANAGER apply without it, and the
    count stays. A conflict means the autoscaler changed the count meanwhile and owns it
    already: nothing to hand over. A new workload starts at `initial_replicas` (the
    autoscaler's minimum), never at one.
    """
    meta = obj["metadata"]
    live = get(api, obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
    if live is None:
        live = apply(api, {**obj, "spec": {"replicas": initial_replicas, **obj["spec"]}})
    if manages_field(live, FIELD_MANAGER, ("spec", "replicas")):
        handover = {
            "apiVersion": obj["apiVersion"],
            "kind": obj["kind"],
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "spec": {"replicas": live["spec"]["replicas"]},
        }
        try:
            apply(api, handover, manager=HANDOVER_FIELD_MANAGER, force=False)
        except ApiException as error:
            if error.status != 409:
                raise
    return apply(api, obj)


def get(
    api: client.ApiClient, api_version: str, kind: str, namespace: str, name: str
) -> dict | None:
    try:
        return _call(api, "GET", object_path(api_version, kind, namespace, name))
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def serves(api: client.ApiClient, api_version: str, plural: str) -> bool:
    """Whether the API server serves `plural` in `api_version` (a kind whose CRDs a cluster
    may not have, such as the Gateway API's HTTPRoute). Asked of the API group's discovery
    document: one small GET."""
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    try:
        resources = _call(api, "GET", prefix)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return any(r.get("name") == plural for r in (resources or {}).get("resources") or [])


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


def delete_owned(
    api: client.ApiClient, api_version: str, kind: str, namespace: str, name: str, owner_uid: str
) -> bool:
    """Delete the object if it exists and `owner_uid` owns it; True when it was deleted."""
    obj = get(api, api_version, kind, namespace, name)
    if obj is None or owner_uid not in {
        ref.get("uid") for ref in obj["metadata"].get("ownerReferences") or []
    }:
        return False
    try:
        # The precondition makes sure a re-created object of the same name is left alone.
        _call(
            api,
            "DELETE",
            object_path(api_version, kind, namespace, name),
            header_params={"Content-Type": "application/json"},
            body={"preconditions": {"uid": obj["metadata"]["uid"]}},
        )
    except ApiException as error:
        if error.status in (404, 409):
            return False
        raise
    return True


def owner_reference(owner: dict) -> dict:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def foreign_owner(existing: dict | None, owner: dict) -> dict | None:
    """Who else owns `existing`, when `owner` (an ownerReference) does not: that reference.

    Another LLMRoute (controller or not) or any other controller claims the object: applying
    over it would take it over and fight its owner. An object nobody controls is adopted, and
    so is one left by an earlier route of the same name (deleted and created again before the
    garbage collector came by: one name is one route at a time).
    """
    if existing is None:
        return None
    for ref in existing.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("uid") == owner["uid"]:
            continue
        same_route = ref.get("kind") == owner["kind"] and ref.get("name") == owner["name"]
        if (ref.get("controller") or ref.get("kind") == owner["kind"]) and not same_route:
            return ref
    return None


# Controllers that write to our children as part of their normal work (the Deployment
# controller's revision annotation); their writes are not drift. Nor are the operator's own.
SYSTEM_MANAGERS = frozenset({"kube-controller-manager", HANDOVER_FIELD_MANAGER})


def manages_field(obj: dict, manager: str, path: tuple[str, ...]) -> bool:
    """Whether `manager` owns the field at `path` (e.g. ("spec", "replicas")) of `obj`."""
    for entry in obj.get("metadata", {}).get("managedFields") or []:
        if entry.get("manager") != manager or entry.get("subresource"):
            continue
        fields = entry.get("fieldsV1") or {}
        for name in path:
            fields = fields.get(f"f:{name}") if isinstance(fields, dict) else None
            if fields is None:
                break
        else:
            return True
    return False


def scaled_by_others(obj: dict) -> bool:
    """Whether a workload runs another replica count than the one the operator applied.

    The operator records the count it applies in an annotation (none when an autoscaler owns
    the count). `kubectl scale` and other writers of the scale subresource change
    spec.replicas without touching the object's own managed fields, so this compares values
    rather than write times.
    """
    wanted = (obj.get("metadata", {}).get("annotations") or {}).get(REPLICAS_ANNOTATION)
    if wanted is None:
        return False
    return str((obj.get("spec") or {}).get("replicas", 1)) != wanted


def edited_by_others(obj: dict) -> bool:
    """Whether someone else wrote to anything but the status since our last apply.

    managedFields times have a resolution of one second, so a write in the same second
    as ours counts as after it: a needless (no-op) re-apply, never a missed edit.
    """
    entries = [
        e
        for e in obj.get("metadata", {}).get("managedFields") or []
        if not e.get("subresource") and e.get("time")
    ]
    ours = max((e["time"] for e in entries if e["manager"] == FIELD_MANAGER), default="")
    return any(
        e["time"] >= ours
        for e in entries
        if e["manager"] != FIELD_MANAGER and e["manager"] not in SYSTEM_MANAGERS
    )
