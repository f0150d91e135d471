"""ModelQuota handlers: keep the spend ledger in status, and the route's routing in step.

One operator-wide loop syncs each quota every SYNC_INTERVAL_SECONDS (llmroute.quota.sync does
the work), over a kopf index of the quotas: a kopf timer would put a finalizer on every quota
(llmroute.periodic says why that is avoided). A sync that moves the quota's state posts an
event and, when the quota is enforced, renders its route again so the routing follows the
budget: the route's ConfigMap gets the new quota routing file and auth policy, which the
running proxies re-read (the config, and so the pods, stay as they are). Creating, changing
or deleting a quota renders its route again too: its match, action and enforcement shape
those files, its rpm/tpm the config.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import defaultdict
from typing import Any, Final

import kopf

from llmroute import state
from llmroute.api import GROUP, QUOTA_PLURAL, VERSION
from llmroute.metrics import QUOTA_KIND, observed_reconcile
from llmroute.periodic import PeriodicWork
from llmroute.quota.sync import SyncOutcome, sync_quota
from llmroute.route.reconcile import reconcile_by_name

SYNC_INTERVAL_ENV: Final = "LLMROUTE_QUOTA_SYNC_SECONDS"
DEFAULT_SYNC_INTERVAL_SECONDS: Final = 15.0


def sync_interval() -> float:
    """Seconds between two syncs of a quota: $LLMROUTE_QUOTA_SYNC_SECONDS, else 15."""
    raw = os.environ.get(SYNC_INTERVAL_ENV, "")
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_SYNC_INTERVAL_SECONDS
    return value if value > 0 else DEFAULT_SYNC_INTERVAL_SECONDS


SYNC_INTERVAL_SECONDS: Final = sync_interval()

# The periodic sync and the change handlers may sync the same quota at once (kopf runs sync handlers
# in a thread pool); the conditional status write keeps the ledger exact regardless, the lock
# spares the lost round.
_locks: defaultdict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)


@kopf.index(GROUP, VERSION, QUOTA_PLURAL)
def quotas_to_sync(namespace: str, name: str, **_: Any) -> dict[tuple[str, str], bool]:
    """Every quota the operator sees, by (namespace, name): what the periodic sync walks."""
    return {(namespace, name): True}


@kopf.on.startup()
async def start_quota_sync(
    memo: kopf.Memo,
    quotas_to_sync: kopf.Index,
    optional_children: kopf.Index,
    logger: logging.Logger,
    **_: Any,
) -> None:
    @observed_reconcile(QUOTA_KIND)
    def work(key: tuple[str, str]) -> None:
        sync(key[0], key[1], optional_children, logger)

    memo.quota_sync = PeriodicWork(
        "quota sync", SYNC_INTERVAL_SECONDS, lambda: list(quotas_to_sync), work, logger
    )
    memo.quota_sync.start()


@kopf.on.cleanup()
async def stop_quota_sync(memo: kopf.Memo, **_: Any) -> None:
    if "quota_sync" in memo:
        await memo.quota_sync.stop()


@kopf.on.create(GROUP, VERSION, QUOTA_PLURAL)
@kopf.on.update(GROUP, VERSION, QUOTA_PLURAL, field="spec")
@observed_reconcile(QUOTA_KIND)
def quota_changed(
    name: str,
    namespace: str,
    old: kopf.BodyEssence | None,
    new: kopf.BodyEssence | None,
    optional_children: kopf.Index,
    logger: logging.Logger,
    **_: Any,
) -> None:
    """A new or changed quota: account it at once, and render the routes it touches."""
    outcome = sync(namespace, name, optional_children, logger, rerender=False)
    routes = {_route_name(old), _route_name(new)}
    if outcome is not None:
        routes.add(outcome.route_name)
    for route_name in sorted(r for r in routes if r):
        rerender_route(namespace, route_name, optional_children, logger)


@kopf.on.delete(GROUP, VERSION, QUOTA_PLURAL, optional=True)
def quota_deleted(
    name: str,
    namespace: str,
    spec: kopf.Spec,
    optional_children: kopf.Index,
    logger: logging.Logger,
    **_: Any,
) -> None:
    # optional=True: no finalizer; a quota that is gone simply stops shaping its route.
    route_name = (spec.get("routeRef") or {}).get("name")
    if route_name:
        logger.info("ModelQuota %s deleted; rendering LLMRoute %s again", name, route_name)
        rerender_route(namespace, route_name, optional_children, logger)


# -- work --------------------------------------------------------------------------


def _route_name(body: Any) -> str | None:
    if not body:
        return None
    return ((body.get("spec") or {}).get("routeRef") or {}).get("name")


def sync(
    namespace: str,
    name: str,
    optional_children: kopf.Index,
    logger: logging.Logger,
    *,
    rerender: bool = True,
) -> SyncOutcome | None:
    """Sync one quota; render its route when its state moved."""
    with _locks[(namespace, name)]:
        outcome = sync_quota(state.api_client(), namespace, name)
    if outcome is None or not outcome.written:
        return outcome
    result = outcome.result
    if result.event is not None:
        # The sync stored the event already, before the status (llmroute.quota.sync).
        logger.info("ModelQuota %s/%s: %s", namespace, name, result.event.message)
    if rerender and result.rerender_route and outcome.route_name:
        rerender_route(namespace, outcome.route_name, optional_children, logger)
    return outcome


def rerender_route(
    namespace: str, route_name: str, optional_children: kopf.Index, logger: logging.Logger
) -> None:
    """Reconcile an LLMRoute now, so the files its proxies re-read reflect the quota states."""
    reconcile_by_name(namespace, route_name, optional_children, logger)
