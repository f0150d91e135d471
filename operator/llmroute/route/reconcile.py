"""An LLMRoute's reconcile: fetch inputs, render, apply, prune, write status. The I/O of a route.

The route is validated and parsed once, here, where it enters; everything inward takes the
typed Route. What the status says is decided by llmroute.route.status (pure).
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from llmroute import kube, state
from llmroute.api import GROUP, ROUTE_PLURAL, VERSION
from llmroute.api.route import Route, SpecError, parse_route
from llmroute.api.validation import validate
from llmroute.conditions import set_condition
from llmroute.quota import quota_effects_for_route
from llmroute.render import RenderedRoute, check_litellm_config, render_route
from llmroute.render.children import prunable_children
from llmroute.render.proxy import master_key_ref
from llmroute.route import ollama as ollama_status
from llmroute.route.status import (
    limits_condition,
    proxy_condition,
    status_changed,
    with_ready,
)

# Seconds before kopf retries a route whose referenced Secret is missing; a Secret event
# reconciles it at once, so this is only the safety net.
SECRET_RETRY_DELAY = 30

_locks: defaultdict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)

# Recomputes part of a route's status: (route, parsed or None, conditions, generation) ->
# (conditions, other status fields to set).
StatusRefresh = Callable[
    [dict, Route | None, list[dict], int | None], tuple[list[dict], dict[str, Any]]
]


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
            {
                **status,
                "observedGeneration": generation,
                "conditions": with_ready(failed, generation),
            },
        )
        raise error

    errors = validate(route)
    if errors:
        message = "; ".join(str(e) for e in errors[:5])
        refuse(
            "ConfigValid", "InvalidSpec", message, kopf.PermanentError(f"invalid spec: {message}")
        )
    try:
        parsed = parse_route(route)
    except SpecError as error:
        refuse(
            "ConfigValid", "InvalidSpec", str(error), kopf.PermanentError(f"invalid spec: {error}")
        )
    rendered = render_route(
        parsed,
        quotas=quota_effects_for_route(api, parsed.namespace, parsed.name),
        operator_namespace=state.operator_namespace(),
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
    if rendered.limit_division is not None:
        conditions = limits_condition(conditions, rendered.limit_division, generation)

    missing = _missing_secrets(api, parsed.namespace, rendered)
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
                api, "apps/v1", "StatefulSet", parsed.namespace, obj["metadata"]["name"]
            )
            obj, storage_message = ollama_status.keep_claim_templates(obj, existing)
        if obj["kind"] == "Deployment" and "replicas" not in obj["spec"]:
            # An autoscaler owns the count: hand it over, never reset it.
            applied = kube.apply_releasing_replicas(
                api, _owned(obj, owner), parsed.proxy.autoscaling.min_replicas
            )
        else:
            applied = kube.apply(api, _owned(obj, owner))
        if obj["kind"] == "Deployment":
            deployment = applied
        elif obj["kind"] == "StatefulSet":
            statefulset = applied
    _prune_optional_children(api, route, rendered, optional_children)
    conditions = proxy_condition(conditions, deployment, generation)
    ollama = ollama_status.observe_ollama(api, parsed, statefulset, storage_message=storage_message)
    conditions = ollama_status.with_ollama_condition(conditions, ollama, generation)
    conditions = with_ready(conditions, generation)
    if ollama is not None:
        status["ollama"] = ollama.status_field()
    else:
        status.pop("ollama", None)
    report(
        observedGeneration=generation,
        endpoint=rendered.endpoint,
        models=rendered.models,
        configHash=rendered.config_hash,
        masterKeySecret=master_key_ref(parsed, None).name,
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


def update_proxy_available(namespace: str, route_name: str, deployment: dict) -> None:
    """ProxyAvailable (and Ready) from the proxy Deployment, without a re-render."""
    _refresh_status(
        namespace,
        route_name,
        lambda route, parsed, conditions, generation: (
            proxy_condition(conditions, deployment, generation),
            {},
        ),
    )


def update_ollama_ready(namespace: str, route_name: str, statefulset: dict | None) -> None:
    """OllamaReady (and Ready) from the Ollama's StatefulSet and models, without a re-render."""

    def refresh(
        route: dict, parsed: Route | None, conditions: list[dict], generation: int | None
    ) -> tuple[list[dict], dict[str, Any]]:
        if parsed is None:
            return conditions, {}  # reported as ConfigValid=False by the reconcile
        ollama = ollama_status.observe_ollama(state.api_client(), parsed, statefulset)
        conditions = ollama_status.with_ollama_condition(conditions, ollama, generation)
        return conditions, ({"ollama": ollama.status_field()} if ollama else {})

    _refresh_status(namespace, route_name, refresh)


def _refresh_status(namespace: str, route_name: str, refresh: StatusRefresh) -> None:
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
        try:
            parsed: Route | None = parse_route(route)
        except SpecError:
            parsed = None
        status = dict(route.get("status") or {})
        generation = status.get("observedGeneration")
        conditions, changes = refresh(
            route, parsed, list(status.get("conditions") or []), generation
        )
        conditions = with_ready(conditions, generation)
        _write_status(state.api_client(), route, {**status, **changes, "conditions": conditions})


def referenced_secret_names(route: Mapping[str, Any]) -> set[str]:
    """The Secrets a stored route references; none while its spec does not parse (it is
    refused before any Secret is read, and reconciled again when the spec changes)."""
    try:
        parsed = parse_route(route)
    except SpecError:
        return set()
    return {ref.name for ref in parsed.secret_references()}


def _missing_secrets(api: client.ApiClient, namespace: str, rendered: RenderedRoute) -> list[str]:
    """Human-readable problems for referenced Secrets or keys that do not exist."""
    core = client.CoreV1Api(api)
    found: dict[str, dict | None] = {}
    problems = []
    for ref in rendered.secret_refs:
        if ref.name not in found:
            try:
                found[ref.name] = core.read_namespaced_secret(ref.name, namespace).data or {}
            except ApiException as error:
                if error.status != 404:
                    raise
                found[ref.name] = None
        data = found[ref.name]
        if data is None:
            problems.append(f"Secret {namespace}/{ref.name} not found ({ref.field})")
        elif ref.key is not None and ref.key not in data:
            problems.append(f"Secret {namespace}/{ref.name} has no key {ref.key!r} ({ref.field})")
    return problems


def _create_master_key_secret(
    api: client.ApiClient, secret: dict, owner: dict, logger: logging.Logger
) -> None:
    secret = _owned(secret, owner)
    secret["stringData"] = {key: f"sk-{secrets.token_urlsafe(32)}" for key in secret["stringData"]}
    if kube.create(api, secret) is not None:
        logger.info("generated master key Secret %s", secret["metadata"]["name"])


def _prune_optional_children(
    api: client.ApiClient, route: dict, rendered: RenderedRoute, existing: kopf.Index
) -> None:
    """Delete the children the spec stopped asking for (replicas, autoscaling, the Ollama).

    The managed Ollama's volume claims are kept (retention policy Retain): models are large
    and slow to fetch again.
    """
    meta = route["metadata"]
    wanted = {(o["kind"], o["metadata"]["name"]) for o in rendered.objects}
    for child in prunable_children():
        name = child.name(meta["name"])
        owners = existing.get((meta["namespace"], child.kind, name), [])
        if (child.kind, name) not in wanted and any(meta["uid"] in uids for uids in owners):
            kube.delete_owned(
                api, child.api_version, child.kind, meta["namespace"], name, meta["uid"]
            )


def _owned(obj: dict, owner: dict) -> dict:
    meta = {**obj["metadata"], "namespace": owner_namespace(obj, owner)}
    meta["ownerReferences"] = [owner]
    return {**obj, "metadata": meta}


def owner_namespace(obj: dict, owner: dict) -> str:
    return obj["metadata"].get("namespace") or owner.get("namespace", "")


def _write_status(api: client.ApiClient, route: dict, status: dict) -> None:
    """Patch the route's status, only when something in it changed."""
    if not status_changed(route.get("status") or {}, status):
        return
    meta = route["metadata"]
    try:
        client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
            GROUP, VERSION, meta["namespace"], ROUTE_PLURAL, meta["name"], {"status": status}
        )
    except ApiException as error:
        if error.status != 404:
            raise
