"""An LLMRoute's reconcile: fetch inputs, render, apply, prune, write status. The I/O of a route.

The route is validated and parsed once, here, where it enters; everything inward takes the
typed Route. What the status says is decided by llmroute.route.status (pure).
"""

from __future__ import annotations

import base64
import logging
import secrets
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from llmroute import kube, reasons, state
from llmroute.api import GROUP, ROUTE_PLURAL, VERSION
from llmroute.api.api_base_policy import api_base_errors
from llmroute.api.route import Route, SpecError, parse_route
from llmroute.api.validation import validate
from llmroute.conditions import set_condition
from llmroute.payloads.gateway_auth import usable_key
from llmroute.quota import quota_effects_for_route
from llmroute.render import RenderedRoute, check_litellm_config, render_route
from llmroute.render.children import prunable_children
from llmroute.render.labels import COMPONENT_LABEL, OLLAMA_COMPONENT
from llmroute.render.names import MASTER_KEY_SECRET_KEY, REDIS_PASSWORD_SECRET_KEY
from llmroute.render.proxy import master_key_ref
from llmroute.route import ollama as ollama_status
from llmroute.route.exposure import (
    UNSERVED_RETRY_DELAY,
    exposed_condition,
    without_unserved_exposure,
)
from llmroute.route.status import (
    Refusal,
    applied_condition,
    limits_condition,
    missing_secret_keys,
    operator_access_condition,
    proxy_condition,
    refusal_condition,
    status_changed,
    status_patch,
    with_ready,
)

# Seconds before kopf retries a route whose referenced Secret is missing; a Secret event
# reconciles it at once, so this is only the safety net.
SECRET_RETRY_DELAY = 30
# Seconds before kopf retries a route whose objects the API server refused for a reason other
# than the spec (RBAC, a quota, a server error): slow enough not to hammer the API server
# with a request that will fail the same way, soon enough to heal once the cause is gone. A
# refusal of the spec itself is not retried: it waits for the spec to change.
APPLY_RETRY_DELAY = 60

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
            "ConfigValid",
            reasons.INVALID_SPEC,
            message,
            kopf.PermanentError(f"invalid spec: {message}"),
        )
    try:
        parsed = parse_route(route)
    except SpecError as error:
        refuse(
            "ConfigValid",
            reasons.INVALID_SPEC,
            str(error),
            kopf.PermanentError(f"invalid spec: {error}"),
        )
    refused_bases = api_base_errors(parsed, state.api_base_policy())
    if refused_bases:
        message = "; ".join(str(e) for e in refused_bases)
        refuse(
            "ConfigValid",
            reasons.API_BASE_NOT_ALLOWED,
            message,
            kopf.PermanentError(f"apiBase not allowed: {message}"),
        )
    operator_namespace = state.operator_namespace()
    rendered = render_route(
        parsed,
        quotas=quota_effects_for_route(api, parsed.namespace, parsed.name),
        operator_namespace=operator_namespace,
    )
    problems = check_litellm_config(rendered.config)
    if problems:
        message = "; ".join(problems[:5])
        refuse(
            "ConfigValid",
            reasons.LITELLM_REJECTED,
            message,
            kopf.PermanentError(f"litellm rejects the rendered config: {message}"),
        )
    conditions = set_condition(
        conditions,
        "ConfigValid",
        True,
        reasons.VALID,
        "the spec renders a valid LiteLLM config",
        generation,
    )
    conditions = operator_access_condition(conditions, operator_namespace, generation)
    if rendered.limit_division is not None:
        conditions = limits_condition(conditions, rendered.limit_division, generation)

    # An HTTPRoute where the Gateway API is not installed is left out (and said so in
    # Exposed); the rest of the route is applied.
    rendered, unserved_exposure = without_unserved_exposure(api, rendered)

    missing = _missing_secrets(api, parsed.namespace, rendered)
    if missing:
        message = "; ".join(missing)
        refuse(
            "SecretsResolved",
            reasons.SECRET_NOT_FOUND,
            message,
            kopf.TemporaryError(message, delay=SECRET_RETRY_DELAY),
        )
    conditions = set_condition(
        conditions,
        "SecretsResolved",
        True,
        reasons.FOUND,
        "every referenced Secret key exists",
        generation,
    )

    owner = kube.owner_reference(route)
    claimed = _claimed_by_others(api, rendered, owner)
    if claimed:
        message = "; ".join(claimed)
        refuse(
            "ConfigValid",
            reasons.CHILD_NAME_TAKEN,
            message,
            kopf.TemporaryError(message, delay=SECRET_RETRY_DELAY),
        )

    objects, storage_message, refusals = _prepare_objects(api, parsed.namespace, rendered, owner)
    # Every object is dry-run before any is applied: the objects are applied one by one, and
    # the proxies read the ConfigMap's auth policy live, so a refusal half-way would leave a
    # route half-changed. On a refusal the last good objects stay as they are.
    refusals = refusals or _dry_run(api, objects)
    if refusals:
        condition, reason, message = refusal_condition(refusals)
        if condition == "ConfigValid":
            refuse(
                condition,
                reason,
                message,
                kopf.PermanentError(f"the API server refuses the rendered objects: {message}"),
            )
        refuse(condition, reason, message, kopf.TemporaryError(message, delay=APPLY_RETRY_DELAY))

    deployment = statefulset = None
    autoscaled_from = parsed.proxy.autoscaling.min_replicas
    try:
        if rendered.generated_secret is not None:
            _create_master_key_secret(api, rendered.generated_secret, owner, logger)
        if rendered.generated_redis_secret is not None:
            _create_redis_password_secret(api, rendered.generated_redis_secret, owner, logger)
        for obj in objects:
            applied = _apply(api, obj, autoscaled_from=autoscaled_from)
            if obj["kind"] == "Deployment":
                deployment = applied
            elif _is_ollama_statefulset(obj):
                statefulset = applied
    except _Refused as refused:
        # Passed the dry-run, refused now (a race, a quota, a permission taken away): what is
        # applied stays, the status says which object failed, kopf retries after a while.
        message = str(refused.refusal)
        retry = kopf.TemporaryError(message, delay=APPLY_RETRY_DELAY)
        refuse("Applied", reasons.APPLY_FAILED, message, retry)
    refusals = _prune_optional_children(api, route, rendered, optional_children)
    conditions = applied_condition(conditions, refusals, generation)
    conditions = proxy_condition(conditions, deployment, generation)
    ollama = ollama_status.observe_ollama(api, parsed, statefulset, storage_message=storage_message)
    conditions = ollama_status.with_ollama_condition(conditions, ollama, generation)
    conditions = exposed_condition(conditions, parsed, unserved_exposure, generation)
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
    if refusals:
        message = "; ".join(map(str, refusals))
        raise kopf.TemporaryError(message, delay=APPLY_RETRY_DELAY)
    if unserved_exposure is not None:
        raise kopf.TemporaryError(
            f"spec.expose: this cluster does not serve {unserved_exposure}",
            delay=UNSERVED_RETRY_DELAY,
        )


class _Refused(Exception):
    """An API request about one of the route's objects failed; carries what the status says."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(str(refusal))
        self.refusal = refusal


def _refusal(verb: str, obj_kind: str, name: str, error: ApiException) -> Refusal:
    return Refusal(verb, obj_kind, name, error.status or 0, kube.api_message(error))


def _prepare_objects(
    api: client.ApiClient, namespace: str, rendered: RenderedRoute, owner: dict
) -> tuple[list[dict], str | None, list[Refusal]]:
    """The rendered objects as they are applied: owned, the Ollama's volume claims kept."""
    objects, storage_message = [], None
    for obj in rendered.objects:
        if _is_ollama_statefulset(obj):
            name = obj["metadata"]["name"]
            try:
                existing = kube.get(api, "apps/v1", "StatefulSet", namespace, name)
            except ApiException as error:
                return [], None, [_refusal("read", "StatefulSet", name, error)]
            obj, storage_message = ollama_status.keep_claim_templates(obj, existing)
        objects.append(_owned(obj, owner))
    return objects, storage_message, []


def _dry_run(api: client.ApiClient, objects: list[dict]) -> list[Refusal]:
    """The API server's refusals of `objects`, each judged as its real apply would be."""
    refusals = []
    for obj in objects:
        try:
            kube.apply(api, obj, dry_run=True)
        except ApiException as error:
            refusals.append(_refusal("apply", obj["kind"], obj["metadata"]["name"], error))
    return refusals


def _apply(api: client.ApiClient, obj: dict, autoscaled_from: int) -> dict:
    try:
        if obj["kind"] == "Deployment" and "replicas" not in obj["spec"]:
            # An autoscaler owns the count: hand it over, never reset it.
            return kube.apply_releasing_replicas(api, obj, autoscaled_from)
        return kube.apply(api, obj)
    except ApiException as error:
        raise _Refused(_refusal("apply", obj["kind"], obj["metadata"]["name"], error)) from error


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
        return conditions, {"ollama": ollama.status_field() if ollama else None}

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
    for ref in rendered.secret_refs:
        if ref.name not in found:
            try:
                found[ref.name] = core.read_namespaced_secret(ref.name, namespace).data or {}
            except ApiException as error:
                if error.status != 404:
                    raise
                found[ref.name] = None
    return missing_secret_keys(rendered.secret_refs, namespace, found)


def _claimed_by_others(api: client.ApiClient, rendered: RenderedRoute, owner: dict) -> list[str]:
    """The children that exist already under another owner: never adopted or overwritten."""
    problems = []
    generated = [
        s for s in (rendered.generated_secret, rendered.generated_redis_secret) if s is not None
    ]
    for obj in [*rendered.objects, *generated]:
        meta = obj["metadata"]
        existing = kube.get(api, obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        other = kube.foreign_owner(existing, owner)
        if other is not None:
            problems.append(
                f"{obj['kind']} {meta['namespace']}/{meta['name']} belongs to "
                f"{other.get('kind')} {other.get('name')}: it is left alone; rename this route "
                "or remove that object"
            )
    return problems


def _create_master_key_secret(
    api: client.ApiClient, secret: dict, owner: dict, logger: logging.Logger
) -> None:
    """Create the generated master-key Secret with a random key. One that exists is never
    written (the operator may create Secrets, not change them); when it holds no usable key
    (empty, or the placeholder older `llmroute render` printed) the gateway accepts no master
    key, and the log says how to get one."""
    secret = _owned(secret, owner)
    name, namespace = secret["metadata"]["name"], secret["metadata"]["namespace"]
    key = f"sk-{secrets.token_urlsafe(32)}"
    try:
        created = kube.create(api, {**secret, "stringData": {MASTER_KEY_SECRET_KEY: key}})
        if created is not None:
            logger.info("generated master key Secret %s", name)
            return
        existing = client.CoreV1Api(api).read_namespaced_secret(name, namespace)
    except ApiException as error:
        # The API's message names the Secret, never its data.
        raise _Refused(_refusal("create", "Secret", name, error)) from error
    encoded = (existing.data or {}).get(MASTER_KEY_SECRET_KEY) or ""
    current = base64.b64decode(encoded).decode("utf-8", errors="replace").strip()
    if not usable_key(current):
        logger.warning(
            "master key Secret %s holds no usable key %r, so the gateway accepts no master key; "
            "delete the Secret and the operator creates it with a random key when it next "
            "reconciles the route",
            name,
            MASTER_KEY_SECRET_KEY,
        )


def _is_ollama_statefulset(obj: dict) -> bool:
    """The managed Ollama's StatefulSet (the managed Redis's is another)."""
    labels = obj["metadata"].get("labels") or {}
    return obj["kind"] == "StatefulSet" and labels.get(COMPONENT_LABEL) == OLLAMA_COMPONENT


def _create_redis_password_secret(
    api: client.ApiClient, secret: dict, owner: dict, logger: logging.Logger
) -> None:
    """Create the managed Redis's password Secret with a random password, once. One that
    exists is never written: the running Redis and proxies hold its password."""
    secret = _owned(secret, owner)
    name = secret["metadata"]["name"]
    password = secrets.token_urlsafe(32)
    try:
        if kube.create(api, {**secret, "stringData": {REDIS_PASSWORD_SECRET_KEY: password}}):
            logger.info("generated Redis password Secret %s", name)
    except ApiException as error:
        # The API's message names the Secret, never its data.
        raise _Refused(_refusal("create", "Secret", name, error)) from error


def _prune_optional_children(
    api: client.ApiClient, route: dict, rendered: RenderedRoute, existing: kopf.Index
) -> list[Refusal]:
    """Delete the children the spec stopped asking for (replicas, autoscaling, the Ollama);
    the deletes the API refused.

    The managed Ollama's volume claims are kept (retention policy Retain): models are large
    and slow to fetch again. A refused delete does not stop the others.
    """
    meta = route["metadata"]
    wanted = {(o["kind"], o["metadata"]["name"]) for o in rendered.objects}
    refusals = []
    for child in prunable_children():
        name = child.name(meta["name"])
        owners = existing.get((meta["namespace"], child.kind, name), [])
        if (child.kind, name) not in wanted and any(meta["uid"] in uids for uids in owners):
            try:
                kube.delete_owned(
                    api, child.api_version, child.kind, meta["namespace"], name, meta["uid"]
                )
            except ApiException as error:
                refusals.append(_refusal("delete", child.kind, name, error))
    return refusals


def _owned(obj: dict, owner: dict) -> dict:
    meta = {**obj["metadata"], "namespace": owner_namespace(obj, owner)}
    meta["ownerReferences"] = [owner]
    return {**obj, "metadata": meta}


def owner_namespace(obj: dict, owner: dict) -> str:
    return obj["metadata"].get("namespace") or owner.get("namespace", "")


def _write_status(api: client.ApiClient, route: dict, status: dict) -> None:
    """Patch the route's status, only when something in it changed; a field `status` no
    longer has is removed."""
    current = route.get("status") or {}
    if not status_changed(current, status):
        return
    meta = route["metadata"]
    try:
        client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            meta["namespace"],
            ROUTE_PLURAL,
            meta["name"],
            {"status": status_patch(current, status)},
        )
    except ApiException as error:
        if error.status != 404:
            raise
