"""An LLMRoute's status conditions: pure functions of what the reconcile observed.

The reconcile (llmroute.route.reconcile) applies the children and hands over what it saw: the
proxy Deployment, the Ollama's state. These functions decide the conditions, and Ready from
the others; they touch no cluster and are unit-tested on their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from llmroute.conditions import condition_status, ordered, set_condition
from llmroute.render.sizing import LimitDivision

# The route's condition types, in the order status lists them.
CONDITION_ORDER: Final = (
    "Ready",
    "ConfigValid",
    "SecretsResolved",
    "ProxyAvailable",
    "OllamaReady",
    "LimitsExact",
)
# The conditions Ready sums up. LimitsExact only informs: approximate limits still serve.
READY_REQUIRES: Final = ("ConfigValid", "SecretsResolved", "ProxyAvailable", "OllamaReady")
# Limits named one by one in the LimitsExact message; the rest are counted.
LIMITS_LISTED: Final = 5


def proxy_condition(
    conditions: list[dict], deployment: Mapping[str, Any] | None, generation: int | None
) -> list[dict]:
    """ProxyAvailable from the proxy Deployment (as applied, or as an event brought it)."""
    if deployment is None:
        return set_condition(
            conditions, "ProxyAvailable", False, "NoDeployment", "no proxy Deployment", generation
        )
    status = deployment.get("status") or {}
    available = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Available"), None
    )
    if available is None:
        return set_condition(
            conditions,
            "ProxyAvailable",
            None,
            "Pending",
            "the proxy Deployment reports no availability yet",
            generation,
        )
    ready, wanted = (
        status.get("readyReplicas", 0),
        (deployment.get("spec") or {}).get("replicas", 1),
    )
    return set_condition(
        conditions,
        "ProxyAvailable",
        available.get("status") == "True",
        available.get("reason") or "Unknown",
        f"{ready}/{wanted} proxy replicas ready",
        generation,
    )


def limits_condition(
    conditions: list[dict], division: LimitDivision, generation: int | None
) -> list[dict]:
    """LimitsExact: whether the rpm/tpm limits hold as written, and if not, by how much not.

    Without Redis each LiteLLM process counts a limit on its own and gets a share of it
    (llmroute.render.sizing.limit_processes): with more processes running than the share
    was divided by, or shares rounded up, together they allow more than the limit; and a
    process refuses at its share even while others have room, so under uneven load fewer
    requests than the limit pass.
    """
    processes = division.processes
    if not division.shares:
        return set_condition(
            conditions,
            "LimitsExact",
            True,
            "NoLimits",
            "no target has an rpm/tpm limit",
            generation,
        )
    if division.exact:
        how = (
            "the proxies share their counters in Redis"
            if processes.shared
            else "one LiteLLM process counts them"
        )
        return set_condition(
            conditions,
            "LimitsExact",
            True,
            "Shared" if processes.shared else "SingleProcess",
            f"rpm/tpm limits hold for the whole gateway: {how}",
            generation,
        )
    fewest, most = processes.replicas
    running = (
        f"{processes.fewest} processes ({fewest} replicas x {processes.workers} workers)"
        if fewest == most
        else f"{processes.fewest} processes at minReplicas ({fewest} x {processes.workers} "
        f"workers), up to {processes.most} at maxReplicas ({most})"
    )
    details = []
    for share in division.shares[:LIMITS_LISTED]:
        low, high = share.totals(processes)
        total = f"{low}" if low == high else f"{low}-{high}"
        details.append(
            f"{share.deployment} {share.kind} {share.limit}: {share.per_process} per process, "
            f"{total} in total"
        )
    more = len(division.shares) - LIMITS_LISTED
    if more > 0:
        details.append(f"and {more} more")
    return set_condition(
        conditions,
        "LimitsExact",
        False,
        "DividedAcrossProcesses",
        "without spec.router.redis each LiteLLM process counts rpm/tpm on its own; limits "
        f"are divided over {running}: {'; '.join(details)}. A process refuses at its share "
        "even while others have room, so under uneven load fewer requests than the limit pass",
        generation,
    )


def with_ready(conditions: list[dict], generation: int | None) -> list[dict]:
    """`conditions` with Ready set from the others, in CONDITION_ORDER."""
    failing = [t for t in READY_REQUIRES if condition_status(conditions, t) not in (None, "True")]
    if failing:
        return ordered(
            set_condition(
                conditions,
                "Ready",
                False,
                f"{failing[0]}NotTrue",
                f"{', '.join(failing)} not True",
                generation,
            ),
            CONDITION_ORDER,
        )
    if condition_status(conditions, "ProxyAvailable") is None:
        return ordered(
            set_condition(
                conditions, "Ready", False, "Pending", "waiting for the proxy", generation
            ),
            CONDITION_ORDER,
        )
    return ordered(
        set_condition(conditions, "Ready", True, "Ready", "the gateway serves", generation),
        CONDITION_ORDER,
    )


def status_changed(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether writing `wanted` changes the stored status (kopf's own bookkeeping aside)."""
    return _comparable(current) != _comparable(wanted)


def _comparable(status: Mapping[str, Any]) -> dict:
    return {k: v for k, v in status.items() if k != "kopf"}
