"""LLMRoute handlers: which events reconcile a route, or refresh its status. Wiring only.

The work is in llmroute.route.reconcile; the kinds watched, indexed and pruned come from the
table of child kinds (llmroute.render.children).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import kopf

from llmroute import kube
from llmroute.api import GROUP, ROUTE_PLURAL, VERSION
from llmroute.metrics import ROUTE_KIND, observed_reconcile
from llmroute.periodic import PeriodicWork
from llmroute.render import warm_up_config_check
from llmroute.render.children import drift_watched_resources, prunable_children
from llmroute.render.labels import (
    MANAGED_BY,
    OLLAMA_COMPONENT,
    PROXY_COMPONENT,
    REDIS_COMPONENT,
    ROUTE_LABEL,
    component_selector,
)
from llmroute.route.reconcile import (
    reconcile,
    reconcile_by_name,
    referenced_secret_names,
    update_ollama_ready,
    update_proxy_available,
)

# Model presence, crash loops and external Ollamas change without any event the operator
# watches; a loop re-reads them. Only routes with an Ollama pay for it.
OLLAMA_REFRESH_SECONDS = 60


@kopf.on.startup()
def load_config_check(logger: logging.Logger, **_: Any) -> None:
    # Importing litellm costs seconds of CPU (docs/benchmarks.md); paid before the watches
    # start, it no longer holds up the first routes to arrive, all waiting on one import.
    warm_up_config_check()
    logger.info("litellm loaded for config checks")


@kopf.on.resume(GROUP, VERSION, ROUTE_PLURAL)
@kopf.on.create(GROUP, VERSION, ROUTE_PLURAL)
@kopf.on.update(GROUP, VERSION, ROUTE_PLURAL)
@observed_reconcile(ROUTE_KIND)
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
    return {(namespace, secret): name for secret in referenced_secret_names(body)}


@kopf.on.event(
    "",
    "v1",
    "secrets",
    when=lambda body, routes_by_secret, **_: bool(
        routes_by_secret.get((body["metadata"].get("namespace"), body["metadata"]["name"]))
    ),
)
@observed_reconcile(ROUTE_KIND)
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


@kopf.on.event("apps", "v1", "deployments", labels=component_selector(PROXY_COMPONENT))
def proxy_deployment_changed(
    type: str | None,
    body: kopf.Body,
    optional_children: kopf.Index,
    logger: logging.Logger,
    **_: Any,
) -> None:
    _workload_changed(type, body, optional_children, logger, update_proxy_available)


@kopf.on.event("apps", "v1", "statefulsets", labels=component_selector(OLLAMA_COMPONENT))
def ollama_statefulset_changed(
    type: str | None,
    body: kopf.Body,
    optional_children: kopf.Index,
    logger: logging.Logger,
    **_: Any,
) -> None:
    _workload_changed(type, body, optional_children, logger, update_ollama_ready)


def _workload_changed(
    type: str | None,
    body: kopf.Body,
    optional_children: kopf.Index,
    logger: logging.Logger,
    update: Callable[[str, str, dict], None],
) -> None:
    """A Deployment or StatefulSet of a route: restore it when it drifted, else report it."""
    route_name = body["metadata"].get("labels", {}).get(ROUTE_LABEL)
    if not route_name:
        return
    namespace = body["metadata"]["namespace"]
    if type == "DELETED" or kube.edited_by_others(body) or kube.scaled_by_others(body):
        reconcile_by_name(namespace, route_name, optional_children, logger)
    else:
        update(namespace, route_name, dict(body))


@kopf.index(GROUP, VERSION, ROUTE_PLURAL, when=lambda spec, **_: bool(spec.get("ollama")))
def routes_with_ollama(namespace: str, name: str, **_: Any) -> dict[tuple[str, str], bool]:
    """The routes with an Ollama, by (namespace, name); a route leaves it with spec.ollama."""
    return {(namespace, name): True}


@kopf.on.startup()
async def start_ollama_refresh(
    memo: kopf.Memo, routes_with_ollama: kopf.Index, logger: logging.Logger, **_: Any
) -> None:
    # One loop for all routes, not a kopf timer per route: a timer puts a finalizer on its
    # object (llmroute.periodic).
    def work(key: tuple[str, str]) -> None:
        update_ollama_ready(key[0], key[1], None)

    memo.ollama_refresh = PeriodicWork(
        "Ollama refresh", OLLAMA_REFRESH_SECONDS, lambda: list(routes_with_ollama), work, logger
    )
    memo.ollama_refresh.start()


@kopf.on.cleanup()
async def stop_ollama_refresh(memo: kopf.Memo, **_: Any) -> None:
    if "ollama_refresh" in memo:
        await memo.ollama_refresh.stop()


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


for _group, _version, _plural in drift_watched_resources():
    kopf.on.event(_group, _version, _plural, labels=MANAGED_BY)(_restore_on_change)
# The managed Redis reports no condition of its own: its StatefulSet is only restored.
kopf.on.event("apps", "v1", "statefulsets", labels=component_selector(REDIS_COMPONENT))(
    _restore_on_change
)


def _index_optional_child(body: kopf.Body, param: str, **_: Any) -> dict[tuple, tuple[str, ...]]:
    """(namespace, kind, name) of an optional child that exists -> the uids of its owners."""
    meta = body["metadata"]
    owners = tuple(ref.get("uid", "") for ref in meta.get("ownerReferences") or [])
    return {(meta["namespace"], param, meta["name"]): owners}


# Pruning looks up which optional children exist here rather than GETting every optional
# kind of every route it reconciles (five requests a reconcile, docs/benchmarks.md). kopf
# lists the indexed kinds before it calls any handler, so the index is complete from the start.
for _child in prunable_children():
    kopf.index(
        _child.group,
        _child.version,
        _child.plural,
        id="optional_children",
        param=_child.kind,
        labels=component_selector(_child.component or ""),
    )(_index_optional_child)
