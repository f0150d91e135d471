"""LLMRoute handlers: fetch inputs, render, apply, write status. Nothing else lives here."""

from __future__ import annotations

import logging
import re
import secrets
import threading
from collections import defaultdict
from typing import Any, NoReturn

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .. import kube
from ..api import GROUP, ROUTE_PLURAL, VERSION
from ..api.validation import validate
from ..quota import quota_effects_for_route
from ..render import (
    RenderedRoute,
    RenderError,
    check_litellm_config,
    render_route,
    warm_up_config_check,
)
from . import ollama as ollama_status
from . import state
from .conditions import condition_status, ordered, set_condition

CONDITION_ORDER = ("Ready", "ConfigValid", "SecretsResolved", "ProxyAvailable", "OllamaReady")
MANAGED = {"app.kubernetes.io/managed-by": "llmroute"}
ROUTE_LABEL = "llmroute.dev/route"
# Seconds before kopf retries a route whose referenced Secret is missing; a Secret event
# reconciles it at once, so this is only the safety net.
SECRET_RETRY_DELAY = 30

_locks: defaultdict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)


# -- handlers ----------------------------------------------------------------------


@kopf.on.startup()
def load_config_check(logger: logging.Logger, **_: Any) -> None:
    # Importing litellm costs seconds of CPU (docs/benchmarks.md); paid before the watches
    # start, it no longer holds up the first routes to arrive, all waiting on one import.
    warm_up_config_check()
    logger.info("litellm loaded for config checks")


@kopf.on.resume(GROUP, VERSION, ROUTE_PLURAL)
@kopf.on.create(GROUP, VERSION, ROUTE_PLURAL)
@kopf.on.update(GROUP, VERSION, ROUTE_PLURAL)
def reconcile_route_handler(
    body: kopf.Body, optional_children: kopf.Index, logger: logging.Logger, **_: Any
) -> None:
    reconcile(dict(body), optional_children, logger)


@kopf.on.delete(GROUP, VERSION, ROUTE_PLURAL, optional=True)
def route_deleted(name: str, logger: logging.Logger, **_: Any) -> None:
    # optional=True: no finalizer. Children carry ownerReferences and are
    # garbage-collected by the cluster.
    logger.info("LLMRoute %s deleted; its children are garbage-collected", name)


@kopf.index(GROUP, VERSION, ROUTE_PLURAL)
def routes_by_secret(body: kopf.Body, **_: Any) -> dict[tuple[str, str], str]:
    """(namespace, Secret name) -> route name, for every Secret a route references."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    return {(namespace, secret): name for secret in referenced_secret_names(body.get("spec", {}))}


@kopf.on.event(
    "",
    "v1",
    "secrets",
    when=lambda body, routes_by_secret, **_: bool(
        routes_by_secret.get((body["metadata"].get("namespace"), body["metadata"]["name"]))
    ),
)
def secret_changed(
    body: kopf.Body,
    routes_by_secret: kopf.Index,
    optional_children: kopf.Index,
    logger: logging.Logger,
    **_: Any,
) -> None:
    """A Secret that routes reference appeared or changed: reconcile those routes now."""
    namespace = body["metadata"]["namespace"]
    for route_name in set(routes_by_secret.get((namespace, body["metadata"]["name"]), [])):
        reconcile_by_name(namespace, route_name, optional_children, logger)


@kopf.on.event(
    "apps", "v1", "deployments", labels={**MANAGED, "app.kubernetes.io/component": "proxy"}
)
def proxy_deployment_changed(
    type: str | None,
    body: kopf.Body,
    optional_children: kopf.Index,
    logger: logging.Logger,
    **_: Any,
) -> None:
    _workload_changed(type, body, optional_children, logger, _update_proxy_available)


@kopf.on.event(
    "apps", "v1", "statefulsets", labels={**MANAGED, "app.kubernetes.io/component": "ollama"}
)
def ollama_statefulset_changed(
    type: str | None,
    body: kopf.Body,
    optional_children: kopf.Index,
    logger: logging.Logger,
    **_: Any,
) -> None:
    _workload_changed(type, body, optional_children, logger, _update_ollama_ready)


def _workload_changed(
    type: str | None,
    body: kopf.Body,
    optional_children: kopf.Index,
    logger: logging.Logger,
    update,
) -> None:
    """A Deployment or StatefulSet of a route: restore it when it drifted, else report it."""
    route_name = body["metadata"].get("labels", {}).get(ROUTE_LABEL)
    if not route_name:
        return
    namespace = body["metadata"]["namespace"]
    if type == "DELETED" or kube.edited_by_others(body):
        reconcile_by_name(namespace, route_name, optional_children, logger)
    else:
        update(namespace, route_name, dict(body))


# Model presence, crash loops and external Ollamas change without any event the operator
# watches; this re-reads them. Only routes with an Ollama pay for it.
OLLAMA_REFRESH_SECONDS = 60


@kopf.timer(
    GROUP,
    VERSION,
    ROUTE_PLURAL,
    interval=OLLAMA_REFRESH_SECONDS,
    idle=OLLAMA_REFRESH_SECONDS,
    when=lambda spec, **_: bool(spec.get("ollama")),
)
def refresh_ollama_status(name: str, namespace: str, **_: Any) -> None:
    _update_ollama_ready(namespace, name, None)


def _restore_on_change(
    type: str | None,
    body: kopf.Body,
    optional_children: kopf.Index,
    logger: logging.Logger,
    **_: Any,
) -> None:
    """A child deleted or edited by someone else is restored from the route."""
    route_name = body["metadata"].get("labels", {}).get(ROUTE_LABEL)
    if route_name and (type == "DELETED" or kube.edited_by_others(body)):
        reconcile_by_name(body["metadata"]["namespace"], route_name, optional_children, logger)


for _group, _version, _plural in (
    ("", "v1", "configmaps"),
    ("", "v1", "services"),
    ("networking.k8s.io", "v1", "networkpolicies"),
    ("policy", "v1", "poddisruptionbudgets"),
    ("autoscaling", "v2", "horizontalpodautoscalers"),
):
    kopf.on.event(_group, _version, _plural, labels=MANAGED)(_restore_on_change)


def _index_optional_child(body: kopf.Body, param: str, **_: Any) -> dict[tuple, tuple[str, ...]]:
    """(namespace, kind, name) of an optional child that exists -> the uids of its owners."""
    meta = body["metadata"]
    owners = tuple(ref.get("uid", "") for ref in meta.get("ownerReferences") or [])
    return {(meta["namespace"], param, meta["name"]): owners}


# Pruning looks up which optional children exist here rather than GETting every optional
# kind of every route it reconciles (five requests a reconcile, docs/benchmarks.md). kopf
# lists the indexed kinds before it calls any handler, so the index is complete from the start.
for _group, _version, _plural, _kind, _component in (
    ("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", "proxy"),
    ("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", "proxy"),
    ("apps", "v1", "statefulsets", "StatefulSet", "ollama"),
    ("", "v1", "services", "Service", "ollama"),
    ("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", "ollama"),
):
    kopf.index(
        _group,
        _version,
        _plural,
        id="optional_children",
        param=_kind,
        labels={**MANAGED, "app.kubernetes.io/component": _component},
    )(_index_optional_child)


# -- reconciliation ----------------------------------------------------------------


def reconcile(route: dict, optional_children: kopf.Index, logger: logging.Logger) -> None:
    """Bring the children of `route` to the rendered state and report it in status."""
    meta = route["metadata"]
    with _locks[(meta["namespace"], meta["name"])]:
        _reconcile_locked(route, optional_children, logger)


def _reconcile_locked(route: dict, optional_children: kopf.Index, logger: logging.Logger) -> None:
    api = state.api_client()
    meta = route["metadata"]
    generation = meta.get("generation")
    status = dict(route.get("status") or {})
    conditions = list(status.get("conditions") or [])

    def report(**changes: Any) -> None:
        _write_status(api, route, {**status, **changes, "conditions": conditions})

    def refuse(condition: str, reason: str, message: str, error: Exception) -> NoReturn:
        """Report why nothing is applied, and leave the children as they are."""
        failed = set_condition(conditions, condition, False, reason, message, generation)
        _write_status(
            api,
            route,
            {**status, "observedGeneration": generation, "conditions": _ready(failed, generation)},
        )
        raise error

    errors = validate(route)
    if errors:
        message = "; ".join(str(e) for e in errors[:5])
        refuse(
            "ConfigValid", "InvalidSpec", message, kopf.PermanentError(f"invalid spec: {message}")
        )

    try:
        rendered = render_route(
            route,
            quotas=quota_effects_for_route(api, meta["namespace"], meta["name"]),
            master_key_secret=_master_key_secret_name(route),
            operator_namespace=state.operator_namespace(),
        )
    except RenderError as error:
        refuse(
            "ConfigValid", "InvalidSpec", str(error), kopf.PermanentError(f"invalid spec: {error}")
        )
    problems = check_litellm_config(rendered.config)
    if problems:
        message = "; ".join(problems[:5])
        refuse(
            "ConfigValid",
            "LiteLLMRejected",
            message,
            kopf.PermanentError(f"litellm rejects the rendered config: {message}"),
        )
    conditions = set_condition(
        conditions,
        "ConfigValid",
        True,
        "Valid",
        "the spec renders a valid LiteLLM config",
        generation,
    )

    missing = _missing_secrets(api, route, rendered)
    if missing:
        message = "; ".join(missing)
        refuse(
            "SecretsResolved",
            "SecretNotFound",
            message,
            kopf.TemporaryError(message, delay=SECRET_RETRY_DELAY),
        )
    conditions = set_condition(
        conditions,
        "SecretsResolved",
        True,
        "Found",
        "every referenced Secret key exists",
        generation,
    )

    owner = kube.owner_reference(route)
    if rendered.generated_secret is not None:
        _create_master_key_secret(api, rendered.generated_secret, owner, logger)
    deployment = statefulset = storage_message = None
    for obj in rendered.objects:
        if obj["kind"] == "StatefulSet":
            existing = kube.get(
                api, "apps/v1", "StatefulSet", meta["namespace"], obj["metadata"]["name"]
            )
            obj, storage_message = ollama_status.keep_claim_templates(obj, existing)
        applied = kube.apply(api, _owned(obj, owner))
        if obj["kind"] == "Deployment":
            deployment = applied
        elif obj["kind"] == "StatefulSet":
            statefulset = applied
    _prune_optional_children(api, route, rendered, optional_children)
    conditions = _proxy_condition(conditions, deployment, generation)
    ollama = ollama_status.observe_ollama(api, route, statefulset, storage_message=storage_message)
    conditions = ollama_status.with_ollama_condition(conditions, ollama, generation)
    conditions = _ready(conditions, generation)
    if ollama is not None:
        status["ollama"] = ollama.status_field()
    else:
        status.pop("ollama", None)
    report(
        observedGeneration=generation,
        endpoint=rendered.endpoint,
        models=rendered.models,
        configHash=rendered.config_hash,
        masterKeySecret=_master_key_secret_name(route),
    )


def reconcile_by_name(
    namespace: str, name: str, optional_children: kopf.Index, logger: logging.Logger
) -> None:
    """Reconcile the route as it is now (for events on other objects than the route)."""
    api = client.CustomObjectsApi(state.api_client())
    try:
        route = api.get_namespaced_custom_object(GROUP, VERSION, namespace, ROUTE_PLURAL, name)
    except ApiException as error:
        if error.status == 404:
            return
        raise
    if route["metadata"].get("deletionTimestamp"):
        return
    try:
        reconcile(route, optional_children, logger)
    except (kopf.TemporaryError, kopf.PermanentError) as error:
        # Already reported in the route's status; kopf's own retry covers the rest.
        logger.info("route %s/%s not reconciled: %s", namespace, name, error)


def _update_proxy_available(namespace: str, route_name: str, deployment: dict) -> None:
    _refresh_status(
        namespace,
        route_name,
        lambda route, conditions, generation: (
            _proxy_condition(conditions, deployment, generation),
            {},
        ),
    )


def _update_ollama_ready(namespace: str, route_name: str, statefulset: dict | None) -> None:
    def refresh(route: dict, conditions: list[dict], generation: int | None):
        try:
            ollama = ollama_status.observe_ollama(state.api_client(), route, statefulset)
        except RenderError:
            return conditions, {}  # reported as ConfigValid=False by the reconcile
        conditions = ollama_status.with_ollama_condition(conditions, ollama, generation)
        return conditions, ({"ollama": ollama.status_field()} if ollama else {})

    _refresh_status(namespace, route_name, refresh)


def _refresh_status(namespace: str, route_name: str, refresh) -> None:
    """Recompute part of a route's status from a child's state, without a re-render."""
    api = client.CustomObjectsApi(state.api_client())
    with _locks[(namespace, route_name)]:
        try:
            route = api.get_namespaced_custom_object(
                GROUP, VERSION, namespace, ROUTE_PLURAL, route_name
            )
        except ApiException as error:
            if error.status == 404:
                return
            raise
        status = dict(route.get("status") or {})
        generation = status.get("observedGeneration")
        conditions, changes = refresh(route, list(status.get("conditions") or []), generation)
        conditions = _ready(conditions, generation)
        _write_status(state.api_client(), route, {**status, **changes, "conditions": conditions})


# -- helpers -----------------------------------------------------------------------


def referenced_secret_names(spec: dict) -> set[str]:
    names = set()
    for model in spec.get("models") or []:
        for target in model.get("targets") or []:
            for ref in ("apiKeySecretRef", "credentialsSecretRef"):
                if target.get(ref, {}).get("name"):
                    names.add(target[ref]["name"])
    auth = spec.get("auth") or {}
    if auth.get("masterKeySecretRef", {}).get("name"):
        names.add(auth["masterKeySecretRef"]["name"])
    for caller in auth.get("callers") or []:
        names.add(caller["keySecretRef"]["name"])
    redis = (spec.get("router") or {}).get("redis") or {}
    if redis.get("passwordSecretRef", {}).get("name"):
        names.add(redis["passwordSecretRef"]["name"])
    return names


def _master_key_secret_name(route: dict) -> str:
    ref = ((route.get("spec") or {}).get("auth") or {}).get("masterKeySecretRef") or {}
    return ref.get("name") or f"{route['metadata']['name']}-master-key"


def _missing_secrets(api: client.ApiClient, route: dict, rendered: RenderedRoute) -> list[str]:
    """Human-readable problems for referenced Secrets or keys that do not exist."""
    namespace = route["metadata"]["namespace"]
    core = client.CoreV1Api(api)
    found: dict[str, dict | None] = {}
    problems = []
    for name, field in rendered.secret_refs:
        if name not in found:
            try:
                found[name] = core.read_namespaced_secret(name, namespace).data or {}
            except ApiException as error:
                if error.status != 404:
                    raise
                found[name] = None
        key = _field_value(route, field).get("key")
        if found[name] is None:
            problems.append(f"Secret {namespace}/{name} not found ({field})")
        elif key is not None and key not in found[name]:
            problems.append(f"Secret {namespace}/{name} has no key {key!r} ({field})")
    return problems


def _field_value(obj: dict, path: str) -> dict:
    """The value at a field path such as spec.models[0].targets[1].apiKeySecretRef."""
    value: Any = obj
    for part in re.findall(r"[^.\[\]]+", path):
        value = value[int(part)] if part.isdigit() else value.get(part, {})
    return value if isinstance(value, dict) else {}


def _create_master_key_secret(
    api: client.ApiClient, secret: dict, owner: dict, logger: logging.Logger
) -> None:
    secret = _owned(secret, owner)
    secret["stringData"] = {key: f"sk-{secrets.token_urlsafe(32)}" for key in secret["stringData"]}
    if kube.create(api, secret) is not None:
        logger.info("generated master key Secret %s", secret["metadata"]["name"])


# Children that exist only for some specs (replicas > 1, autoscaling); when the spec stops
# asking for one, it is deleted. (apiVersion, kind, name suffix)
OPTIONAL_CHILDREN = (
    ("policy/v1", "PodDisruptionBudget", "-litellm"),
    ("autoscaling/v2", "HorizontalPodAutoscaler", "-litellm"),
    # The managed Ollama, when spec.ollama goes away or turns external. Its volume claims
    # are kept (retention policy Retain): models are large and slow to fetch again.
    ("apps/v1", "StatefulSet", "-ollama"),
    ("v1", "Service", "-ollama"),
    ("networking.k8s.io/v1", "NetworkPolicy", "-ollama"),
)


def _prune_optional_children(
    api: client.ApiClient, route: dict, rendered: RenderedRoute, existing: kopf.Index
) -> None:
    meta = route["metadata"]
    wanted = {(o["kind"], o["metadata"]["name"]) for o in rendered.objects}
    for api_version, kind, suffix in OPTIONAL_CHILDREN:
        name = meta["name"] + suffix
        owners = existing.get((meta["namespace"], kind, name), [])
        if (kind, name) not in wanted and any(meta["uid"] in uids for uids in owners):
            kube.delete_owned(api, api_version, kind, meta["namespace"], name, meta["uid"])


def _owned(obj: dict, owner: dict) -> dict:
    meta = {**obj["metadata"], "namespace": owner_namespace(obj, owner)}
    meta["ownerReferences"] = [owner]
    return {**obj, "metadata": meta}


def owner_namespace(obj: dict, owner: dict) -> str:
    return obj["metadata"].get("namespace") or owner.get("namespace", "")


def _proxy_condition(
    conditions: list[dict], deployment: dict | None, generation: int | None
) -> list[dict]:
    if deployment is None:
        return set_condition(
            conditions, "ProxyAvailable", False, "NoDeployment", "no proxy Deployment", generation
        )
    status = deployment.get("status") or {}
    available = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Available"), None
    )
    if available is None:
        return set_condition(
            conditions,
            "ProxyAvailable",
            None,
            "Pending",
            "the proxy Deployment reports no availability yet",
            generation,
        )
    ready, wanted = (
        status.get("readyReplicas", 0),
        (deployment.get("spec") or {}).get("replicas", 1),
    )
    return set_condition(
        conditions,
        "ProxyAvailable",
        available.get("status") == "True",
        available.get("reason") or "Unknown",
        f"{ready}/{wanted} proxy replicas ready",
        generation,
    )


def _ready(conditions: list[dict], generation: int | None) -> list[dict]:
    failing = [
        t for t in CONDITION_ORDER[1:] if condition_status(conditions, t) not in (None, "True")
    ]
    if failing:
        return ordered(
            set_condition(
                conditions,
                "Ready",
                False,
                f"{failing[0]}NotTrue",
                f"{', '.join(failing)} not True",
                generation,
            ),
            CONDITION_ORDER,
        )
    if condition_status(conditions, "ProxyAvailable") is None:
        return ordered(
            set_condition(
                conditions, "Ready", False, "Pending", "waiting for the proxy", generation
            ),
            CONDITION_ORDER,
        )
    return ordered(
        set_condition(conditions, "Ready", True, "Ready", "the gateway serves", generation),
        CONDITION_ORDER,
    )


def _write_status(api: client.ApiClient, route: dict, status: dict) -> None:
    """Patch the route's status, only when something in it changed."""
    current = route.get("status") or {}
    if _comparable(current) == _comparable(status):
        return
    meta = route["metadata"]
    try:
        client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
            GROUP, VERSION, meta["namespace"], ROUTE_PLURAL, meta["name"], {"status": status}
        )
    except ApiException as error:
        if error.status != 404:
            raise


def _comparable(status: dict) -> dict:
    return {k: v for k, v in status.items() if k != "kopf"}
