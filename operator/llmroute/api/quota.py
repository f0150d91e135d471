"""The typed ModelQuota: its spec as the ledger reads it, and its effect on a route's routing.

Both are read from the object once, where it enters (the sync, the route's reconcile, the
CLI); defaults are the CRD's own and the enums (period, action, enforcement, state) are read
from the CRD schema, so Python never repeats them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from llmroute.api.periods import PERIODS
from llmroute.api.route import (
    Route,
    Target,
    deployment_ids,
    position_deployment_id,
    target_identity,
)
from llmroute.api.schema import schema_default, schema_enum

log = logging.getLogger(__name__)

ACTIONS: Final = schema_enum("ModelQuota", "spec.action")
ENFORCEMENTS: Final = schema_enum("ModelQuota", "spec.enforcement")
STATES: Final = schema_enum("ModelQuota", "status.state")
# The values by name, in the CRD's order (a test holds the order).
OK, SOFT_LIMITED, EXHAUSTED = STATES
FALLBACK, REJECT = ACTIONS
ENFORCE, SHADOW = ENFORCEMENTS

DEFAULT_PERIOD: Final = schema_default("ModelQuota", "spec.budget.period")
DEFAULT_SOFT_LIMIT_PERCENT: Final = schema_default("ModelQuota", "spec.budget.softLimitPercent")
DEFAULT_ACTION: Final = schema_default("ModelQuota", "spec.action")
DEFAULT_ENFORCEMENT: Final = schema_default("ModelQuota", "spec.enforcement")
# A quota never synced yet routes as one under budget.
INITIAL_STATE: Final = OK


class QuotaSpecError(ValueError):
    """The spec cannot be accounted; `field` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def matches(
    provider: str | None,
    model: str | None,
    model_name: str | None,
    *,
    target_model_name: str,
    target_provider: str,
    target_model: str,
) -> bool:
    """Whether a quota's match (unset fields match everything) selects a route's target."""
    return (
        (provider is None or provider == target_provider)
        and (model is None or model == target_model)
        and (model_name is None or model_name == target_model_name)
    )


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

    def matches(self, target: RouteTarget) -> bool:
        """Whether the route's target is one this quota governs."""
        return matches(
            self.provider,
            self.model,
            self.model_name,
            target_model_name=target.model_name,
            target_provider=target.provider,
            target_model=target.model,
        )


@dataclass(frozen=True)
class RouteTarget:
    """A target of a route, as a quota sees it: what its match compares, and its ids."""

    model_name: str
    index: int  # position in its model's targets
    provider: str
    model: str
    deployment_id: str  # model_info.id in the config (llmroute.api.route.deployment_ids)

    @property
    def position_id(self) -> str:
        """The id a proxy running a config of a release before stable ids gives it."""
        return position_deployment_id(self.model_name, self.index)


def route_targets(route: Route) -> tuple[RouteTarget, ...]:
    """Every target of a parsed route, in spec order."""
    return tuple(
        RouteTarget(model.name, target.index, target.provider, target.model, target.deployment_id)
        for model in route.models
        for target in model.targets
    )


def stored_route_targets(route: Mapping[str, Any]) -> tuple[RouteTarget, ...]:
    """Every target of a stored LLMRoute object, read leniently.

    A route whose spec no longer parses keeps serving its last good config, and that spend
    still counts: the ledger reads the targets of any route, valid or not, and skips only
    entries it cannot read at all. Ids are derived as parse_route derives them.
    """
    targets = []
    for model in (route.get("spec") or {}).get("models") or []:
        name = model.get("name") if isinstance(model, Mapping) else None
        if not isinstance(name, str):
            continue
        raw = [t for t in model.get("targets") or [] if isinstance(t, Mapping)]
        identities = [
            target_identity(str(t.get("provider")), str(t.get("model")), _str_or_none(t))
            for t in raw
        ]
        for index, (target, deployment) in enumerate(
            zip(raw, deployment_ids(name, identities), strict=True)
        ):
            targets.append(
                RouteTarget(name, index, target.get("provider"), target.get("model"), deployment)
            )
    return tuple(targets)


def _str_or_none(target: Mapping[str, Any]) -> str | None:
    api_base = target.get("apiBase")
    return api_base if isinstance(api_base, str) else None


def matched_deployments(targets: Iterable[RouteTarget], quota: QuotaSpec) -> frozenset[str]:
    """The deployment ids (LiteLLM model_info.id) of the route's targets that `quota` matches.

    The proxy's counters carry the id as label model_id, so a quota counts exactly its
    targets' spend; provider and model labels would not tell an openai-compatible target from
    an openai one (LiteLLM labels both "openai"). Each target's position id is matched too:
    proxies still running a config rendered before ids were stable (during the upgrade's
    rollout) count by position, which is right unless that same change reordered targets.
    """
    return frozenset(
        id_ for t in targets if quota.matches(t) for id_ in (t.deployment_id, t.position_id)
    )


@dataclass(frozen=True)
class QuotaEffect:
    """The part of a ModelQuota that shapes routing: its match, its state and its action.

    A set match field must equal the target's (provider, target model, model name); unset
    fields match everything. rpm/tpm, when set, cap the matched targets together.
    """

    provider: str | None = None
    model: str | None = None
    model_name: str | None = None
    state: str = INITIAL_STATE
    action: str = DEFAULT_ACTION
    enforcement: str = DEFAULT_ENFORCEMENT
    rpm: int | None = None
    tpm: int | None = None
    name: str = ""  # the ModelQuota's name, for messages

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"state must be one of {STATES}, not {self.state!r}")
        if self.action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, not {self.action!r}")
        if self.enforcement not in ENFORCEMENTS:
            raise ValueError(f"enforcement must be one of {ENFORCEMENTS}, not {self.enforcement!r}")

    @classmethod
    def from_quota(cls, quota: Mapping[str, Any]) -> QuotaEffect:
        """The effect of a ModelQuota object (spec and status as the API server returns them)."""
        spec = quota.get("spec") or {}
        match = spec.get("match") or {}
        status = quota.get("status") or {}
        return cls(
            provider=match.get("provider"),
            model=match.get("model"),
            model_name=match.get("modelName"),
            state=status.get("state") or INITIAL_STATE,
            action=spec.get("action") or DEFAULT_ACTION,
            enforcement=spec.get("enforcement") or DEFAULT_ENFORCEMENT,
            rpm=spec.get("rpm"),
            tpm=spec.get("tpm"),
            name=(quota.get("metadata") or {}).get("name", ""),
        )

    def matches(self, model_name: str, target: Target) -> bool:
        """Whether the quota selects a target of the route's model `model_name`."""
        return matches(
            self.provider,
            self.model,
            self.model_name,
            target_model_name=model_name,
            target_provider=target.provider,
            target_model=target.model,
        )

    @property
    def enforced(self) -> bool:
        return self.enforcement == ENFORCE


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
