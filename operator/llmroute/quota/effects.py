"""What the ModelQuotas of a route do to its routing: the renderer's `quotas` input."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes import client

from llmroute.api import GROUP, QUOTA_PLURAL, VERSION
from llmroute.api.quota import QuotaEffect

log = logging.getLogger(__name__)


def references_route(quota: Mapping[str, Any], route_name: str) -> bool:
    spec = quota.get("spec") or {}
    return (spec.get("routeRef") or {}).get("name") == route_name


def quota_effects(quotas: Iterable[Mapping[str, Any]], route_name: str) -> list[QuotaEffect]:
    """The effects of the quotas that reference `route_name`, ordered by quota name.

    A quota being deleted has no effect any more. One whose status or spec cannot be read
    (stored before a schema change, edited by hand) is left out with a log line: a broken
    quota must not stop its route from rendering.
    """
    effects = []
    for quota in sorted(quotas, key=lambda q: (q.get("metadata") or {}).get("name", "")):
        metadata = quota.get("metadata") or {}
        if not references_route(quota, route_name) or metadata.get("deletionTimestamp"):
            continue
        try:
            effects.append(QuotaEffect.from_quota(quota))
        except (TypeError, ValueError) as error:
            log.warning("ModelQuota %s ignored: %s", metadata.get("name"), error)
    return effects


def quota_effects_for_route(
    api: client.ApiClient, namespace: str, route_name: str
) -> list[QuotaEffect]:
    """The effects of the ModelQuotas in `namespace` that reference the route `route_name`."""
    listed = client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, QUOTA_PLURAL
    )
    return quota_effects(listed.get("items") or [], route_name)
