"""Proxy sizing: worker processes per pod, and how many LiteLLM processes share a limit."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class LimitProcesses:
    """The LiteLLM processes that count rpm/tpm each on their own, as far as the spec tells."""

    fewest: int  # the processes that run at the fewest replicas: what a limit is divided by
    most: int  # the processes that may run at once (autoscaled to maxReplicas)
    replicas: tuple[int, int]  # fewest and most proxy replicas
    workers: int  # worker processes per replica
    shared: bool  # the processes share their counters (spec.redis)


def limit_processes(route: Route) -> LimitProcesses:
    """How many LiteLLM processes count rpm/tpm on their own.

    With Redis the router shares its counters, so one limit holds for all. Without it every
    worker of every replica keeps its own in-memory counter, and a limit is divided by the
    processes of the replicas that always run: spec.proxy.replicas without autoscaling (the
    route owns the count, and hand scaling is undone), minReplicas with it. Dividing by the
    replicas the autoscaler runs at the moment would re-render the config, and roll every
    pod, at each of its steps; dividing by maxReplicas would starve the usual, smaller
    deployment (rpm 100 over 5 possible replicas allowed 20 with the one running). So a
    scaled-up gateway allows more than the limit, and the LimitsExact condition says how much.
    """
    workers = proxy_workers(route)
    scaling = route.proxy.autoscaling
    if scaling.enabled:
        replicas = (scaling.min_replicas, scaling.max_replicas)
    else:
        replicas = (max(1, route.proxy.replicas),) * 2
    if route.redis is not None:
        return LimitProcesses(1, 1, replicas, workers, shared=True)
    return LimitProcesses(replicas[0] * workers, replicas[1] * workers, replicas, workers, False)


def divide_limit(limit: int, processes: int) -> int:
    """One process's share of a cluster-wide limit, rounded up (never 0: a share of 0 would
    refuse every request)."""
    return max(1, math.ceil(limit / processes))


@dataclass(frozen=True)
class LimitShare:
    """A target's rpm or tpm as the proxy processes enforce it."""

    deployment: str  # the target's deployment id
    kind: str  # "rpm" or "tpm"
    limit: int  # the cluster-wide limit (the target's, capped by its quotas)
    per_process: int  # what each LiteLLM process allows

    def totals(self, processes: LimitProcesses) -> tuple[int, int]:
        """What all processes together allow, at the fewest and at the most replicas."""
        return self.per_process * processes.fewest, self.per_process * processes.most


@dataclass(frozen=True)
class LimitDivision:
    processes: LimitProcesses
    shares: tuple[LimitShare, ...]  # every rpm/tpm limit of the config, in config order

    @property
    def exact(self) -> bool:
        """Whether every limit holds as written: none is divided over several processes."""
        return not self.shares or self.processes.most <= 1
