"""What the ModelQuotas of a route do to its routing: the renderer's `quotas` input."""

from __future__ import annotations

from kubernetes import client

from llmroute.api import GROUP, QUOTA_PLURAL, VERSION
from llmroute.api.quota import QuotaEffect, quota_effects


def quota_effects_for_route(
    api: client.ApiClient, namespace: str, route_name: str
) -> list[QuotaEffect]:
    """The effects of the ModelQuotas in `namespace` that reference the route `route_name`."""
    listed = client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, QUOTA_PLURAL
    )
    return quota_effects(listed.get("items") or [], route_name)
