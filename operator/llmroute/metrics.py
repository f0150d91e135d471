"""The operator's own metrics, served on /metrics when `llmroute run --metrics` is given.

Two kinds:
- counters and a histogram of the handlers' work (reconciles, failures, durations per kind),
  incremented by the `observed_reconcile` decorator around each handler;
- gauges that mirror what the operator wrote into the objects it owns (conditions of every
  LLMRoute, spend, limit, state and last sync of every ModelQuota), kept from the watch
  events the operator receives anyway (handlers/metrics.py), so a scrape costs no API call.

The names, labels and meaning of every series are listed in docs/operations.md; the chart's
alert rules (charts/llmroute/rules/) read them.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, ParamSpec, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from llmroute import __version__
from llmroute.api.periods import parse_time
from llmroute.api.quota import QuotaSpec, QuotaSpecError

ROUTE_KIND: Final = "LLMRoute"
QUOTA_KIND: Final = "ModelQuota"
CONDITION_STATUSES: Final = ("True", "False", "Unknown")
QUOTA_STATES: Final = ("Ok", "SoftLimited", "Exhausted")

# The operator's own registry: litellm, which the operator imports to check configs, must not
# add its series to the operator's.
REGISTRY: Final = CollectorRegistry(auto_describe=True)

RECONCILES: Final = Counter(
    "llmroute_reconciles",
    "Handler runs that reconcile an object, by kind of the object.",
    ["kind"],
    registry=REGISTRY,
)
RECONCILE_FAILURES: Final = Counter(
    "llmroute_reconcile_failures",
    "Handler runs that ended in an error (kopf retries them), by kind of the object.",
    ["kind"],
    registry=REGISTRY,
)
RECONCILE_DURATION: Final = Histogram(
    "llmroute_reconcile_duration_seconds",
    "Seconds a handler run took, by kind of the object.",
    ["kind"],
    # A route's reconcile takes ~0.1-0.5 s idle (server-side dry run and apply of each
    # child), several seconds with litellm's config check on a busy machine.
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)

P = ParamSpec("P")
R = TypeVar("R")


def observed_reconcile(kind: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Count a handler's runs, failures and duration under `kind`."""

    def decorate(handler: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(handler)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            start = time.monotonic()
            try:
                return handler(*args, **kwargs)
            except Exception:
                RECONCILE_FAILURES.labels(kind).inc()
                raise
            finally:
                RECONCILES.labels(kind).inc()
                RECONCILE_DURATION.labels(kind).observe(time.monotonic() - start)

        return run

    return decorate


# -- the objects' state -------------------------------------------------------------


@dataclass(frozen=True)
class QuotaSample:
    """What a ModelQuota says about its budget, as numbers."""

    route: str
    limit_usd: float
    soft_limit_ratio: float
    spent_usd: float
    state: str | None
    last_sync_seconds: float | None  # Unix time of status.lastSync
    conditions: Mapping[str, str]  # type -> status

    @classmethod
    def from_quota(cls, quota: Mapping[str, Any]) -> QuotaSample | None:
        """None for a quota whose spec the operator cannot read (it says so in its status)."""
        try:
            spec = QuotaSpec.from_quota(quota)
        except QuotaSpecError:
            return None
        status = quota.get("status") or {}
        spent = status.get("spentUSD")
        last_sync = status.get("lastSync")
        try:
            last_sync_seconds = parse_time(last_sync).timestamp() if last_sync else None
        except ValueError:
            last_sync_seconds = None
        return cls(
            route=spec.route,
            limit_usd=spec.limit_usd,
            soft_limit_ratio=spec.soft_limit_percent / 100,
            spent_usd=float(spent) if isinstance(spent, (int, float)) else 0.0,
            state=status.get("state"),
            last_sync_seconds=last_sync_seconds,
            conditions=_conditions(status),
        )


def _conditions(status: Mapping[str, Any]) -> dict[str, str]:
    return {
        c["type"]: c.get("status", "Unknown")
        for c in status.get("conditions") or []
        if isinstance(c, Mapping) and c.get("type")
    }


def _key(body: Mapping[str, Any]) -> tuple[str, str]:
    meta = body.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


class ObjectState(Collector):
    """The last seen state of every LLMRoute and ModelQuota, as gauges."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routes: dict[tuple[str, str], dict[str, str]] = {}
        self._quotas: dict[tuple[str, str], QuotaSample] = {}

    def route_seen(self, body: Mapping[str, Any]) -> None:
        with self._lock:
            self._routes[_key(body)] = _conditions(body.get("status") or {})

    def route_gone(self, body: Mapping[str, Any]) -> None:
        with self._lock:
            self._routes.pop(_key(body), None)

    def quota_seen(self, body: Mapping[str, Any]) -> None:
        sample = QuotaSample.from_quota(body)
        with self._lock:
            if sample is None:
                self._quotas.pop(_key(body), None)
            else:
                self._quotas[_key(body)] = sample

    def quota_gone(self, body: Mapping[str, Any]) -> None:
        with self._lock:
            self._quotas.pop(_key(body), None)

    def collect(self) -> Iterator[GaugeMetricFamily | InfoMetricFamily]:
        with self._lock:
            routes = dict(self._routes)
            quotas = dict(self._quotas)
        info = InfoMetricFamily("llmroute_operator", "The running operator.")
        info.add_metric([], {"version": __version__})
        yield info
        yield from _route_families(routes)
        yield from _quota_families(quotas)


def _route_families(routes: Mapping[tuple[str, str], Mapping[str, str]]) -> Iterator:
    condition = GaugeMetricFamily(
        "llmroute_route_condition",
        "1 for the status a condition of an LLMRoute has, 0 for the other two.",
        labels=["namespace", "route", "condition", "status"],
    )
    for (namespace, name), conditions in sorted(routes.items()):
        for type_, status in sorted(conditions.items()):
            for candidate in CONDITION_STATUSES:
                condition.add_metric(
                    [namespace, name, type_, candidate], 1.0 if status == candidate else 0.0
                )
    yield condition


def _quota_families(quotas: Mapping[tuple[str, str], QuotaSample]) -> Iterator:
    labels = ["namespace", "quota", "route"]
    spend = GaugeMetricFamily(
        "llmroute_quota_spend_usd",
        "US dollars a ModelQuota counted in its current period (status.spentUSD).",
        labels=labels,
    )
    limit = GaugeMetricFamily(
        "llmroute_quota_limit_usd",
        "The budget of a ModelQuota (spec.budget.limitUSD).",
        labels=labels,
    )
    soft = GaugeMetricFamily(
        "llmroute_quota_soft_limit_ratio",
        "The soft limit of a ModelQuota as a fraction of its budget (softLimitPercent / 100).",
        labels=labels,
    )
    state = GaugeMetricFamily(
        "llmroute_quota_state",
        "1 for the state a ModelQuota is in (Ok, SoftLimited, Exhausted), 0 for the others.",
        labels=[*labels, "state"],
    )
    last_sync = GaugeMetricFamily(
        "llmroute_quota_last_sync_timestamp_seconds",
        "Unix time of the last sync that read the proxies' counters (status.lastSync).",
        labels=labels,
    )
    condition = GaugeMetricFamily(
        "llmroute_quota_condition",
        "1 for the status a condition of a ModelQuota has, 0 for the other two.",
        labels=[*labels, "condition", "status"],
    )
    for (namespace, name), sample in sorted(quotas.items()):
        values = [namespace, name, sample.route]
        spend.add_metric(values, sample.spent_usd)
        limit.add_metric(values, sample.limit_usd)
        soft.add_metric(values, sample.soft_limit_ratio)
        if sample.state is not None:
            for candidate in QUOTA_STATES:
                state.add_metric([*values, candidate], 1.0 if sample.state == candidate else 0.0)
        if sample.last_sync_seconds is not None:
            last_sync.add_metric(values, sample.last_sync_seconds)
        for type_, status in sorted(sample.conditions.items()):
            for candidate in CONDITION_STATUSES:
                condition.add_metric(
                    [*values, type_, candidate], 1.0 if status == candidate else 0.0
                )
    yield from (spend, limit, soft, state, last_sync, condition)


OBJECTS: Final = ObjectState()
REGISTRY.register(OBJECTS)


def parse_listen_address(address: str) -> tuple[str, int]:
    """'HOST:PORT' (or ':PORT', all interfaces) -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not HOST:PORT: {address!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def serve(address: str) -> None:
    """Serve REGISTRY on http://address/metrics in a daemon thread."""
    from prometheus_client import start_http_server

    host, port = parse_listen_address(address)
    start_http_server(port, addr=host, registry=REGISTRY)
