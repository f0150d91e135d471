"""The ModelQuota spec as the ledger reads it, and the route targets a quota applies to."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from llmroute.quota.periods import DEFAULT_PERIOD, PERIODS
from llmroute.render.litellm_config import deployment_id

DEFAULT_SOFT_LIMIT_PERCENT: Final = 80
DEFAULT_ACTION: Final = "fallback"
DEFAULT_ENFORCEMENT: Final = "enforce"
ACTIONS: Final = ("fallback", "reject")
ENFORCEMENTS: Final = ("enforce", "shadow")


class QuotaSpecError(ValueError):
    """The spec cannot be accounted; `field` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class QuotaSpec:
    route: str
    provider: str | None
    model: str | None
    model_name: str | None
    limit_usd: float
    period: str
    soft_limit_percent: int
    action: str
    enforcement: str

    @classmethod
    def from_quota(cls, quota: Mapping[str, Any]) -> QuotaSpec:
        """The spec of a ModelQuota object, defaults applied (the CRD's own defaults)."""
        spec = quota.get("spec") or {}
        route = (spec.get("routeRef") or {}).get("name")
        if not isinstance(route, str) or not route:
            raise QuotaSpecError("spec.routeRef.name", "is required")
        match = spec.get("match") or {}
        provider, model, model_name = (match.get(k) for k in ("provider", "model", "modelName"))
        if provider is None and model is None and model_name is None:
            raise QuotaSpecError("spec.match", "needs at least one of provider, model, modelName")
        budget = spec.get("budget") or {}
        limit = budget.get("limitUSD")
        if (
            isinstance(limit, bool)
            or not isinstance(limit, (int, float))
            or not math.isfinite(limit)
            or limit <= 0
        ):
            raise QuotaSpecError("spec.budget.limitUSD", "must be a number above 0")
        period = budget.get("period") or DEFAULT_PERIOD
        if period not in PERIODS:
            raise QuotaSpecError("spec.budget.period", f"must be one of {', '.join(PERIODS)}")
        soft = budget.get("softLimitPercent", DEFAULT_SOFT_LIMIT_PERCENT)
        if isinstance(soft, bool) or not isinstance(soft, int) or not 1 <= soft <= 99:
            raise QuotaSpecError("spec.budget.softLimitPercent", "must be an integer from 1 to 99")
        action = spec.get("action") or DEFAULT_ACTION
        if action not in ACTIONS:
            raise QuotaSpecError("spec.action", f"must be one of {', '.join(ACTIONS)}")
        enforcement = spec.get("enforcement") or DEFAULT_ENFORCEMENT
        if enforcement not in ENFORCEMENTS:
            raise QuotaSpecError("spec.enforcement", f"must be one of {', '.join(ENFORCEMENTS)}")
        return cls(
            route=route,
            provider=provider,
            model=model,
            model_name=model_name,
            limit_usd=float(limit),
            period=period,
            soft_limit_percent=soft,
            action=action,
            enforcement=enforcement,
        )

    def matches(self, model_name: str, target: Mapping[str, Any]) -> bool:
        """Whether a target of the route's model `model_name` is one this quota governs."""
        return (
            (self.provider is None or self.provider == target.get("provider"))
            and (self.model is None or self.model == target.get("model"))
            and (self.model_name is None or self.model_name == model_name)
        )


def matched_deployments(route: Mapping[str, Any], quota: QuotaSpec) -> frozenset[str]:
    """The deployment ids (LiteLLM model_info.id) of the route's targets that `quota` matches.

    The proxy's counters carry the id as label model_id, so a quota counts exactly its
    targets' spend; provider and model labels would not tell an openai-compatible target from
    an openai one (LiteLLM labels both "openai").
    """
    ids = set()
    for model in (route.get("spec") or {}).get("models") or []:
        name = model.get("name")
        if not isinstance(name, str):
            continue
        for index, target in enumerate(model.get("targets") or []):
            if isinstance(target, Mapping) and quota.matches(name, target):
                ids.add(deployment_id(name, index))
    return frozenset(ids)
