"""What the gateway enforces per request for quotas scoped to a caller or a task.

A ModelQuota whose match names a caller (spec.auth.callers) or a task (spec.tasks) limits
only that caller's or task's spend, so it cannot change the routing every caller shares.
The gateway's auth hook enforces it instead, per request: once such a quota is Exhausted
(and enforced), the hook answers 429, with a message naming the quota, to the requests of
that caller (and/or carrying that task's tag) for the models the quota covers: the models
with a target its provider / model / modelName select (all models when it names none).

The entries travel in the auth policy file (render/auth_policy.py) under LIVE_POLICY_KEY,
outside the config hash: the operator updates the ConfigMap, kubelet refreshes the mounted
file, and the hook re-reads it, so a budget running out restarts no proxy.

At the soft limit nothing changes for the caller: the quota's state, condition and event
say so. Moving one caller's requests to cheaper targets would need a per-request choice of
deployments, which the auth hook cannot make.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from llmroute.api.quota import EXHAUSTED, QuotaEffect
from llmroute.api.route import Route

# The auth policy's key for these entries; render_route leaves it out of the config hash.
LIVE_POLICY_KEY: Final = "exhaustedBudgets"


def _scope(effect: QuotaEffect) -> str:
    parts = []
    if effect.caller is not None:
        parts.append(f"caller {effect.caller!r}")
    if effect.tag is not None:
        parts.append(f"task {effect.tag!r}")
    return " and ".join(parts)


def covered_models(route: Route, effect: QuotaEffect) -> list[str]:
    """The route's models (spec order) with at least one target the quota selects."""
    return [m.name for m in route.models if any(effect.matches(m.name, t) for t in m.targets)]


def render_exhausted_budgets(route: Route, quotas: Sequence[QuotaEffect]) -> list[dict[str, Any]]:
    """The auth policy's entries for the enforced, exhausted quotas scoped to a caller or task,
    ordered by quota name; shadow-mode quotas and route-wide ones add none."""
    entries = []
    for effect in sorted(quotas, key=lambda e: e.name):
        if effect.route_wide or not effect.enforced or effect.state != EXHAUSTED:
            continue
        models = covered_models(route, effect)
        if not models:
            continue
        entries.append(
            {
                "quota": effect.name,
                "caller": effect.caller,  # null: any caller (and the master key)
                "tag": effect.tag,  # null: with or without a task
                "models": models,
                "message": (
                    f"the budget of ModelQuota {effect.name!r} for {_scope(effect)} is "
                    f"exhausted; requests for {', '.join(repr(m) for m in models)} are "
                    "refused until the next budget period"
                ),
            }
        )
    return entries
