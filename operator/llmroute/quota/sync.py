"""One sync of a ModelQuota against the cluster: read, scrape, compute, write the status.

The status is written with the resourceVersion it was computed from (a conditional replace):
the totals and the per-replica baselines move together or not at all, so a sync that loses a
race with another writer counts nothing, and the next one counts its deltas then. That is
what makes the ledger exact across operator restarts and a second operator replica.

A state change is announced by an event stored before the status that records the change, and
named after the change (llmroute.quota.status.transition_event_object): whoever sees the new
state finds its event, and a sync that computes the change again stores nothing twice.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from llmroute.api import GROUP, QUOTA_PLURAL, ROUTE_PLURAL, VERSION
from llmroute.api.quota import (
    QuotaSpec,
    QuotaSpecError,
    stored_route_scopes,
    stored_route_targets,
)
from llmroute.quota.scrape import Fetch, scrape_route
from llmroute.quota.status import SyncResult, next_status, transition_event_object


@dataclass(frozen=True)
class SyncOutcome:
    quota: dict[str, Any]  # the object as read before the sync (its metadata, spec)
    route_name: str | None  # the route it references, when the spec names one
    result: SyncResult
    written: bool  # the new status is stored (False: nothing to write, or a lost race)


def _get(api: client.ApiClient, namespace: str, plural: str, name: str) -> dict[str, Any] | None:
    try:
        return client.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, name
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def write_status(api: client.ApiClient, quota: dict[str, Any], status: dict[str, Any]) -> bool:
    """Replace the quota's status if the object is still the one read; False otherwise."""
    metadata = quota["metadata"]
    try:
        client.CustomObjectsApi(api).replace_namespaced_custom_object_status(
            GROUP,
            VERSION,
            metadata["namespace"],
            QUOTA_PLURAL,
            metadata["name"],
            {**quota, "status": status},
        )
    except ApiException as error:
        if error.status in (404, 409):
            return False
        raise
    return True


def post_event(api: client.ApiClient, event: dict[str, Any]) -> None:
    """Store the event; one of its name stored already is the same announcement."""
    try:
        client.CoreV1Api(api).create_namespaced_event(event["metadata"]["namespace"], event)
    except ApiException as error:
        if error.status != 409:
            raise


def sync_quota(
    api: client.ApiClient,
    namespace: str,
    name: str,
    *,
    now: dt.datetime | None = None,
    fetch: Fetch | None = None,
) -> SyncOutcome | None:
    """Bring the quota's ledger up to date; None when the quota is gone or going."""
    now = now or dt.datetime.now(dt.UTC)
    quota = _get(api, namespace, QUOTA_PLURAL, name)
    if quota is None or quota["metadata"].get("deletionTimestamp"):
        return None
    try:
        spec: QuotaSpec | None = QuotaSpec.from_quota(quota)
    except QuotaSpecError:
        spec = None
    route_name = spec.route if spec is not None else None
    route = _get(api, namespace, ROUTE_PLURAL, route_name) if route_name else None
    metrics = scrape_route(api, namespace, route_name, fetch) if route is not None else []
    caller, tag = (spec.caller, spec.tag) if spec is not None else (None, None)
    result = next_status(
        quota,
        targets=stored_route_targets(route) if route is not None else None,
        scopes=stored_route_scopes(route) if route is not None else None,
        scrapes=[m.to_scrape(caller, tag) for m in metrics],
        now=now,
        errors={m.replica.uid: m.error for m in metrics if m.error},
    )
    written = False
    if result.write:
        event = transition_event_object(quota, result, now)
        if event is not None:
            # Raises when refused: the status then keeps the old state, and the next sync
            # computes the change, and announces it, again.
            post_event(api, event)
        written = write_status(api, quota, result.status)
    return SyncOutcome(quota=quota, route_name=route_name, result=result, written=written)
