"""What ModelQuota states do to a route's routing, decided before any config is written.

Under the soft limit a target routes normally; over it, the target moves behind the targets
of its model that no quota limits; at the limit (Exhausted) traffic stops reaching it:
- action fallback: the target leaves its model. A model left without targets is served by its
  fallback chain: requests for it go to the first fallback model that still has targets
  (a LiteLLM model_group_alias), and other models' chains skip over it.
- action reject: the target leaves its model too, and a model left without targets answers
  429 (the gateway's auth hook rejects it before routing) instead of moving its traffic to
  other models: the budget owner asked for no spend elsewhere.
A model left without targets and without a fallback that has any also answers 429.
Quotas in shadow mode, and quotas scoped to a caller or a task, change nothing here.
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
    order: int | None  # LiteLLM `order`: lower numbers are tried first
    rpm: int | None  # cluster-wide limits, before the split across proxy processes
    tpm: int | None


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


def plan_routing(route: Route, effects: Sequence[QuotaEffect]) -> RoutingPlan:
    # Quotas scoped to a caller or task leave the shared routing alone: the gateway enforces
    # them per request (render/caller_budgets.py).
    enforced = [e for e in effects if e.enforced and e.route_wide]
    # A quota's rpm/tpm is one budget for all the targets it matches: split it evenly
    # (rounded up) so that together they never exceed it.
    matched_count = {
        id(e): sum(1 for m in route.models for t in m.targets if e.matches(m.name, t))
        for e in enforced
    }

    live: dict[str, tuple[PlannedTarget, ...]] = {}
    dead: dict[str, str | None] = {}  # model -> reject message, or None when it may fall back
    for model in route.models:
        normal: list[tuple[Target, int | None, int | None]] = []
        soft: list[tuple[Target, int | None, int | None]] = []
        reject_message: str | None = None
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
                soft.append((target, rpm, tpm))
            else:
                normal.append((target, rpm, tpm))
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


def _ordered(
    model: Model,
    normal: list[tuple[Target, int | None, int | None]],
    soft: list[tuple[Target, int | None, int | None]],
) -> tuple[PlannedTarget, ...]:
    if model.strategy == "priority":
        # The position in the chain is the priority; soft-limited targets go last.
        return tuple(
            PlannedTarget(t, position, rpm, tpm)
            for position, (t, rpm, tpm) in enumerate([*normal, *soft], start=1)
        )
    if normal and soft:
        # The model's strategy (cost, latency, ...) chooses among the unlimited targets;
        # LiteLLM reaches the soft-limited ones only when those fail.
        return tuple(
            [PlannedTarget(t, 1, rpm, tpm) for t, rpm, tpm in normal]
            + [PlannedTarget(t, 2, rpm, tpm) for t, rpm, tpm in soft]
        )
    return tuple(PlannedTarget(t, None, rpm, tpm) for t, rpm, tpm in [*normal, *soft])


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
