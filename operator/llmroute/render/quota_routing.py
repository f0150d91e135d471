"""The quota routing file (llmroute_quota.json): what the quotas' states do to each request.

The proxies' deployment filter (payloads/quota_routing.py, registered as a LiteLLM callback)
re-reads it while they run, so a quota changing state changes routing without a new config
and without restarting a proxy. It lists, for every model of the route, every target by its
deployment id (LiteLLM's model_info.id) with the routing level (`order`) the target takes
for each request, or null when its quota budget is exhausted and no request may reach it:

    {"models": {"smart": {"smart/openai/gpt-4o-mini": 1, "smart/openai/gpt-4": 2}}}

Models that quotas reject (429) are answered by the gateway's auth hook, from the auth policy
(render.auth_policy), before any routing.
"""

from __future__ import annotations

from typing import Any, Final

from llmroute.api.route import Route
from llmroute.render.quota_effects import RoutingPlan

QUOTA_ROUTING_FILE: Final = "llmroute_quota.json"


def render_quota_routing(route: Route, plan: RoutingPlan) -> dict[str, Any]:
    models: dict[str, dict[str, int | None]] = {}
    for model in route.models:
        levels = {p.target.deployment_id: p.order for p in plan.live.get(model.name, ())}
        models[model.name] = {t.deployment_id: levels.get(t.deployment_id) for t in model.targets}
    return {"models": models}
