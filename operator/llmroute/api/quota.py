"""The typed ModelQuota: its spec as the ledger reads it, and its effect on a route's routing.

Both are read from the object once, where it enters (the sync, the route's reconcile, the
CLI); defaults are the CRD's own and the enums (period, action, enforcement, state) are read
from the CRD schema, so Python never repeats them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Iterable, Mapping
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
# Why a quota scoped to a caller or task must reject (the CRD's CEL rule says the same).
SCOPED_ACTION_MESSAGE: Final = (
    "a quota with match.caller or match.tag is enforced at the gateway, which refuses the "
    "caller's or task's requests with 429 once the budget is spent: set action: reject"
)
SCOPED_LIMITS_MESSAGE: Final = (
    "rpm and tpm limit the matched targets for every caller; a quota with match.caller or "
    "match.tag cannot set them"
)
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


# The match fields that select targets of the route; caller and tag narrow the spend counted
# on those targets to one caller's or one task's requests.
TARGET_MATCH_FIELDS: Final = ("provider", "model", "modelName")
SCOPE_MATCH_FIELDS: Final = ("caller", "tag")


def ledger_key(deployment_id: str, caller: str | None = None, tag: str | None = None) -> str:
    """The key under which the ledger keeps a deployment's counters for a quota.

    A route-wide quota counts a deployment's whole spend, under its id; a quota scoped to a
    caller or a task counts only that caller's or task's series, under the id with the scope
    appended ("smart/openai/gpt-4|caller=alice|task=summarize"). "|" is in no deployment id,
    caller or task name, so keys never collide.
    """
    key = deployment_id
    if caller is not None:
        key += f"|caller={caller}"
    if tag is not None:
        key += f"|task={tag}"
    return key


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
    caller: str | None = None  # a caller of the route's spec.auth.callers
    tag: str | None = None  # a task of the route's spec.tasks

    @property
    def scoped(self) -> bool:
        """Whether the quota counts one caller's or task's spend (enforced at the gateway)."""
        return self.caller is not None or self.tag is not None

    @classmethod
    def from_quota(cls, quota: Mapping[str, Any]) -> QuotaSpec:
        """The spec of a ModelQuota object, defaults applied (the CRD's own defaults)."""
        spec = quota.get("spec") or {}
        route = (spec.get("routeRef") or {}).get("name")
        if not isinstance(route, str) or not route:
            raise QuotaSpecError("spec.routeRef.name", "is required")
        match = spec.get("match") or {}
        provider, model, model_name = (match.get(k) for k in TARGET_MATCH_FIELDS)
        caller, tag = (match.get(k) for k in SCOPE_MATCH_FIELDS)
        if all(match.get(k) is None for k in (*TARGET_MATCH_FIELDS, *SCOPE_MATCH_FIELDS)):
            raise QuotaSpecError(
                "spec.match", "needs at least one of provider, model, modelName, caller, tag"
            )
        for field_name, value in (("caller", caller), ("tag", tag)):
            if value is not None and (not isinstance(value, str) or not value):
                raise QuotaSpecError(f"spec.match.{field_name}", "must be a non-empty string")
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
        if (caller is not None or tag is not None) and action != REJECT:
            raise QuotaSpecError("spec.action", SCOPED_ACTION_MESSAGE)
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
            caller=caller,
            tag=tag,
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


def stored_route_scopes(route: Mapping[str, Any]) -> tuple[frozenset[str], frozenset[str]]:
    """The caller names (spec.auth.callers) and tasks (spec.tasks) of a stored LLMRoute,
    read leniently like its targets."""
    spec = route.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    auth = spec.get("auth")
    callers = auth.get("callers") if isinstance(auth, Mapping) else None
    tasks = spec.get("tasks")
    return (
        frozenset(
            c["name"]
            for c in (callers if isinstance(callers, list) else ())
            if isinstance(c, Mapping) and isinstance(c.get("name"), str)
        ),
        frozenset(t for t in (tasks if isinstance(tasks, list) else ()) if isinstance(t, str)),
    )


def scope_problem(
    quota: QuotaSpec, callers: Collection[str], tasks: Collection[str]
) -> QuotaSpecError | None:
    """What is wrong with the quota's caller and tag given the route's declared callers and
    tasks: spend is attributed only to declared ones, so any other would count nothing."""
    if quota.caller is not None and quota.caller not in callers:
        declared = ", ".join(sorted(callers)) or "none"
        return QuotaSpecError(
            "spec.match.caller",
            f"names no caller of LLMRoute {quota.route!r} ({quota.caller!r}; "
            f"spec.auth.callers declares: {declared})",
        )
    if quota.tag is not None and quota.tag not in tasks:
        declared = ", ".join(sorted(tasks)) or "none"
        return QuotaSpecError(
            "spec.match.tag",
            f"names no task of LLMRoute {quota.route!r} ({quota.tag!r}; "
            f"spec.tasks declares: {declared})",
        )
    return None


def _str_or_none(target: Mapping[str, Any]) -> str | None:
    api_base = target.get("apiBase")
    return api_base if isinstance(api_base, str) else None


def matched_deployments(targets: Iterable[RouteTarget], quota: QuotaSpec) -> frozenset[str]:
    """The ledger keys (ledger_key) of the route's targets that `quota` matches: their
    deployment ids (LiteLLM model_info.id), with the quota's caller and tag when it has them.

    The proxy's counters carry the id as label model_id, so a quota counts exactly its
    targets' spend; provider and model labels would not tell an openai-compatible target from
    an openai one (LiteLLM labels both "openai"). Each target's position id is matched too:
    proxies still running a config rendered before ids were stable (during the upgrade's
    rollout) count by position, which is right unless that same change reordered targets.
    """
    return frozenset(
        ledger_key(id_, quota.caller, quota.tag)
        for t in targets
        if quota.matches(t)
        for id_ in (t.deployment_id, t.position_id)
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
    caller: str | None = None  # set: the quota limits this caller's requests only
    tag: str | None = None  # set: the quota limits the requests of this task only

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
            caller=match.get("caller"),
            tag=match.get("tag"),
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

    @property
    def route_wide(self) -> bool:
        """Whether the quota shapes the routing of every request; one scoped to a caller or a
        task is enforced at the gateway, per request, instead (render/caller_budgets.py)."""
        return self.caller is None and self.tag is None


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
