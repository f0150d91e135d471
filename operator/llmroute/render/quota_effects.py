"""What ModelQuotas do to a route's routing: the part fixed by specs, and the part that moves.

The LiteLLM config holds only what specs decide (declared_order, target_limits), so a quota
changing state never changes it and never restarts a proxy. What states decide (plan_routing)
reaches the running proxies as a file they re-read (render.quota_routing): the proxies'
deployment filter (payloads/quota_routing.py) and auth hook apply it to each request.

Under the soft limit a target routes normally; over it, the target moves behind the targets
of its model that no quota limits; at the limit (Exhausted) traffic stops reaching it:
- action fallback: the target leaves its model. A model left without targets is served by its
  fallback chain: requests for it go to the first fallback model that still has targets
  (a LiteLLM model_group_alias), and other models' chains skip over it.
- action reject: the target leaves its model too, and a model left without targets answers
  429 (the gateway's auth hook rejects it before routing) instead of moving its traffic to
  other models: the budget owner asked for no spend elsewhere.
A model left without targets and without a fallback that has any also answers 429.
Quotas in shadow mode, and quotas scoped to a caller or a task (the gateway enforces those
per request: render/caller_budgets.py), change nothing here.

LiteLLM tries a model's targets by `order` levels, lowest first, moving to the next level when
a level fails; the levels it knows are those declared in the config. declared_order declares
enough of them for every plan: priority has one per target, the other strategies two (the
targets no quota limits, then the soft-limited ones), and the filter puts each request's
targets on the levels the plan gives them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from llmroute.api.quota import EXHAUSTED, REJECT, SOFT_LIMITED, QuotaEffect
from llmroute.api.route import Model, Route, Target


@dataclass(frozen=True)
class PlannedTarget:
    target: Target
    order: int  # the routing level, LiteLLM `order`: lower numbers are tried first


@dataclass(frozen=True)
class RoutingPlan:
    # models that still have targets, in spec order, each with its targets in routing order
    live: dict[str, tuple[PlannedTarget, ...]]
    # models without targets that their fallback chain serves: name -> the chain
    drained: dict[str, tuple[str, ...]]
    # models that answer 429: name -> the message clients get
    rejected: dict[str, str]
    # every model that routes anywhere (live or drained): name -> its fallback chain
    fallbacks: dict[str, tuple[str, ...]]


def _cap(limit: int | None, quota_caps: list[int]) -> int | None:
    caps = [c for c in (limit, *quota_caps) if c is not None]
    return min(caps) if caps else None


def declared_order(model: Model, target: Target) -> int | None:
    """The target's `order` in the config: the levels the quota filter may route on.

    priority: the target's position, one level per target, as the chain is written. Other
    strategies with several targets: two levels (the first target on 1, the rest on 2, only
    so that LiteLLM knows both exist); the filter puts every target the plan keeps on level 1,
    or the soft-limited ones on 2, for each request. One target: no level.
    """
    if model.strategy == "priority":
        return target.index + 1
    if len(model.targets) < 2:
        return None
    return 1 if target.index == 0 else 2


def target_limits(
    route: Route, effects: Sequence[QuotaEffect]
) -> dict[str, tuple[int | None, int | None]]:
    """Each target's cluster-wide (rpm, tpm), by deployment id: its own, capped by the quotas.

    A quota's rpm/tpm is one budget for all the targets it matches: split it evenly (rounded
    up) so that together they never exceed it. Decided by the specs alone (a quota's state
    does not enter), so a quota changing state leaves the config as it is.
    """
    enforced = [e for e in effects if e.enforced and e.route_wide]
    matched_count = {
        id(e): sum(1 for m in route.models for t in m.targets if e.matches(m.name, t))
        for e in enforced
    }
    limits: dict[str, tuple[int | None, int | None]] = {}
    for model in route.models:
        for target in model.targets:
            matched = [e for e in enforced if e.matches(model.name, target)]
            rpm = _cap(
                target.rpm,
                [math.ceil(e.rpm / matched_count[id(e)]) for e in matched if e.rpm is not None],
            )
            tpm = _cap(
                target.tpm,
                [math.ceil(e.tpm / matched_count[id(e)]) for e in matched if e.tpm is not None],
            )
            limits[target.deployment_id] = (rpm, tpm)
    return limits


def plan_routing(route: Route, effects: Sequence[QuotaEffect]) -> RoutingPlan:
    enforced = [e for e in effects if e.enforced and e.route_wide]
    live: dict[str, tuple[PlannedTarget, ...]] = {}
    dead: dict[str, str | None] = {}  # model -> reject message, or None when it may fall back
    for model in route.models:
        normal: list[Target] = []
        soft: list[Target] = []
        reject_message: str | None = None
        for target in model.targets:
            matched = [e for e in enforced if e.matches(model.name, target)]
            exhausted = [e for e in matched if e.state == EXHAUSTED]
            rejecting = [e for e in exhausted if e.action == REJECT]
            if rejecting and reject_message is None:
                quota = f"ModelQuota {rejecting[0].name!r}" if rejecting[0].name else "its quota"
                reject_message = (
                    f"model {model.name!r} is unavailable: the budget of {quota} is exhausted"
                )
            if exhausted:
                continue
            if any(e.state == SOFT_LIMITED for e in matched):
                soft.append(target)
            else:
                normal.append(target)
        if not normal and not soft:
            dead[model.name] = reject_message
            continue
        live[model.name] = _ordered(model, normal, soft)

    chains = _chains(route, live, dead)
    drained: dict[str, tuple[str, ...]] = {}
    rejected: dict[str, str] = {}
    for model in route.models:
        if model.name not in dead:
            continue
        message = dead[model.name]
        if message is not None:
            rejected[model.name] = message
        elif chains[model.name]:
            drained[model.name] = chains[model.name]
        else:
            rejected[model.name] = (
                f"model {model.name!r} is unavailable: the quota budgets of all its targets "
                "are exhausted and no fallback model has a target left"
            )
    fallbacks = {name: chain for name, chain in chains.items() if name not in rejected}
    return RoutingPlan(live=live, drained=drained, rejected=rejected, fallbacks=fallbacks)


def _ordered(model: Model, normal: list[Target], soft: list[Target]) -> tuple[PlannedTarget, ...]:
    if model.strategy == "priority":
        # The position in the chain is the priority; soft-limited targets go last.
        return tuple(
            PlannedTarget(t, position) for position, t in enumerate([*normal, *soft], start=1)
        )
    if normal and soft:
        # The model's strategy (cost, latency, ...) chooses among the unlimited targets;
        # LiteLLM reaches the soft-limited ones only when those fail.
        return tuple([PlannedTarget(t, 1) for t in normal] + [PlannedTarget(t, 2) for t in soft])
    # One level: the strategy chooses among all of them. Level 1 also for a target the config
    # gives no order (the only target of its model): in the routing file, no level means
    # exhausted.
    return tuple(PlannedTarget(t, 1) for t in normal + soft)


def _chains(
    route: Route,
    live: Mapping[str, object],
    dead: Mapping[str, str | None],
) -> dict[str, tuple[str, ...]]:
    """Each model's fallback chain with dead models resolved.

    A model that may fall back but has no targets is replaced by its own chain; a rejecting
    model is left out, so no fallback spends from a budget that said reject.
    """

    def expand(name: str, seen: frozenset[str]) -> list[str]:
        out: list[str] = []
        for fallback in route.model(name).fallbacks:
            if fallback in seen:
                continue
            if fallback in live:
                out.append(fallback)
            elif dead.get(fallback, "") is None:
                out.extend(expand(fallback, seen | {fallback}))
        return out

    chains: dict[str, tuple[str, ...]] = {}
    for model in route.models:
        expanded = expand(model.name, frozenset({model.name}))
        chains[model.name] = tuple(dict.fromkeys(n for n in expanded if n != model.name))
    return chains
