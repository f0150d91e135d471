"""Proxy sizing: worker processes per pod, and how many LiteLLM processes share a limit."""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

from llmroute.api.pod_fields import parse_quantity
from llmroute.api.route import Route

# A LiteLLM process (a worker, or the supervisor of several) held 336-352 MiB RSS under load
# (docs/benchmarks.md); the rest is room for request buffers.
MEMORY_PER_PROCESS_BYTES: Final = 400 * 1024 * 1024


def _resource(resources: Mapping[str, Any], name: str) -> Decimal | None:
    for section in ("limits", "requests"):
        block = resources.get(section) or {}
        if isinstance(block, Mapping) and name in block:
            return parse_quantity(block[name])
    return None


def proxy_workers(route: Route) -> int:
    """Worker processes per proxy pod.

    spec.proxy.workers when set; otherwise one per whole CPU of the container's limit (its
    request when no limit is set), at least one, and no more than its memory holds. LiteLLM's
    own default is one worker whatever the pod's CPU: on 2 CPUs at concurrency 50, 1 / 2 / 4
    workers served 49 / 97 / 81 requests/s (docs/benchmarks.md).
    """
    if route.proxy.workers > 0:
        return route.proxy.workers
    cpu = _resource(route.proxy.resources, "cpu")
    workers = max(1, math.floor(cpu)) if cpu is not None else 1
    memory = _resource(route.proxy.resources, "memory")
    if memory is not None:
        processes = math.floor(memory / MEMORY_PER_PROCESS_BYTES)
        # Several workers run under a supervisor process that holds as much as a worker.
        workers = min(workers, processes - 1 if processes >= 3 else 1)
    return workers


def proxy_replicas_for_limits(route: Route) -> int:
    """The most proxy pods that can run at once, as far as the spec tells.

    With autoscaling that is maxReplicas: dividing by it keeps limits safe at any scale
    without re-rendering (and rolling the pods) on every scaling step.
    """
    if route.proxy.autoscaling.enabled:
        return route.proxy.autoscaling.max_replicas
    return max(1, route.proxy.replicas)


def limit_processes(route: Route) -> int:
    """How many LiteLLM processes count rpm/tpm on their own.

    With Redis the router shares its counters, so one limit holds for all. Without it every
    worker of every replica keeps its own in-memory counter.
    """
    if route.router.redis is not None:
        return 1
    return proxy_replicas_for_limits(route) * proxy_workers(route)
