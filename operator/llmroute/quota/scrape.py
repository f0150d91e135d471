"""Reading the proxies' counters: find a route's proxy replicas, GET each one's /metrics.

Replicas are found by listing the route's proxy Pods (status.podIP, phase, readiness), the
way Prometheus's pod discovery finds targets, not through the Service's EndpointSlices: those
leave out pods that are not Ready (a replica on its way out still holds the spend of its last
requests), and some clusters give pods addresses that EndpointSlices cannot carry.

Only this module does I/O; what it returns feeds the pure ledger (llmroute.quota.ledger) and
usage table (llmroute.quota.usage).
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client.metrics_core import Metric

from llmroute.api.periods import parse_time
from llmroute.quota.counters import (
    counter_samples,
    parse_metrics,
    process_start_seconds,
    usage_by_deployment,
)
from llmroute.quota.ledger import ReplicaScrape
from llmroute.render.labels import proxy_pod_selector
from llmroute.render.names import PROXY_PORT
from llmroute.render.proxy import PROXY_CONTAINER

# LiteLLM serves the exposition at /metrics/ (and redirects /metrics there).
METRICS_PATH: Final = "/metrics/"
SCRAPE_TIMEOUT_SECONDS: Final = 3.0
MAX_PARALLEL_SCRAPES: Final = 8
# An exposition larger than this is not LiteLLM's: refuse it rather than hold it in memory.
MAX_METRICS_BYTES: Final = 32 * 1024 * 1024


@dataclass(frozen=True)
class ProxyReplica:
    """A proxy Pod of a route, as far as scraping it is concerned."""

    name: str
    uid: str
    ip: str | None  # None until the pod has an address
    running: bool
    ready: bool
    started: dt.datetime | None  # when its proxy container (else the pod) started
    restarts: int  # restart count of the proxy container

    @property
    def url(self) -> str | None:
        if self.ip is None or not self.running:
            return None
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"http://{host}:{PROXY_PORT}{METRICS_PATH}"


@dataclass(frozen=True)
class ReplicaMetrics:
    """What one replica answered: its metric families, or why there are none."""

    replica: ProxyReplica
    families: tuple[Metric, ...] | None
    error: str | None = None

    def to_scrape(self, caller: str | None = None, tag: str | None = None) -> ReplicaScrape:
        """The replica as the ledger of a quota sees it (scoped to `caller` / `tag` if set)."""
        deployments = None
        process_start = None
        if self.families is not None:
            deployments = usage_by_deployment(
                counter_samples(self.families), caller=caller, tag=tag
            )
            process_start = process_start_seconds(self.families)
        return ReplicaScrape(
            uid=self.replica.uid,
            pod=self.replica.name,
            deployments=deployments,
            started=self.replica.started,
            restarts=self.replica.restarts,
            process_start=process_start,
        )


def _time(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


def replica_from_pod(pod: Mapping[str, Any]) -> ProxyReplica | None:
    """A proxy Pod (as the API returns it, a dict) as a replica; None when it is over."""
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    phase = status.get("phase")
    if phase in ("Succeeded", "Failed") or not metadata.get("uid"):
        return None
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    container = next(
        (c for c in status.get("containerStatuses") or [] if c.get("name") == PROXY_CONTAINER),
        {},
    )
    running_since = ((container.get("state") or {}).get("running") or {}).get("startedAt")
    return ProxyReplica(
        name=str(metadata.get("name") or ""),
        uid=str(metadata["uid"]),
        ip=status.get("podIP") or None,
        running=phase == "Running",
        ready=ready,
        started=_time(running_since) or _time(status.get("startTime")),
        restarts=int(container.get("restartCount") or 0),
    )


def replicas_from_pods(pods: Iterable[Mapping[str, Any]]) -> list[ProxyReplica]:
    replicas = (replica_from_pod(pod) for pod in pods)
    return sorted((r for r in replicas if r is not None), key=lambda r: r.name)


def list_proxy_replicas(
    api: client.ApiClient, namespace: str, route_name: str
) -> list[ProxyReplica]:
    """The proxy replicas of a route that exist now."""
    response = client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector=proxy_pod_selector(route_name), _preload_content=False
    )
    return replicas_from_pods(json.loads(response.data).get("items") or [])


# Pod addresses are reached directly: an HTTP proxy from the environment would not route them.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch_metrics(url: str, timeout: float = SCRAPE_TIMEOUT_SECONDS) -> str:
    """GET a Prometheus exposition (redirects followed); raises OSError or ValueError."""
    request = urllib.request.Request(url, headers={"Accept": "text/plain"})
    with _opener.open(request, timeout=timeout) as response:
        body = response.read(MAX_METRICS_BYTES + 1)
    if len(body) > MAX_METRICS_BYTES:
        raise ValueError(f"exposition larger than {MAX_METRICS_BYTES} bytes")
    return body.decode("utf-8", errors="replace")


# How a replica's exposition is read: directly at its pod IP (the operator, in the cluster), or
# through the API server's pod proxy (a client outside the cluster network).
Fetch = Callable[[ProxyReplica], str]


def direct_fetch(replica: ProxyReplica) -> str:
    if replica.url is None:
        raise ValueError("not running" if replica.ip else "no pod IP yet")
    return fetch_metrics(replica.url)


class ApiServerFetch:
    """Reads /metrics through the API server (pods/proxy), for clients outside the cluster.

    Needs RBAC `get` on `pods/proxy`, and a NetworkPolicy that lets the API server reach the
    proxy port (the route's policy admits only the operator's pods).
    """

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.namespace = namespace

    def __call__(self, replica: ProxyReplica) -> str:
        if not replica.running:
            raise ValueError("not running")
        path = (
            f"/api/v1/namespaces/{self.namespace}/pods/{replica.name}:{PROXY_PORT}"
            f"/proxy{METRICS_PATH}"
        )
        request = self.api.param_serialize(
            method="GET",
            resource_path=path,
            header_params={"Accept": "text/plain"},
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*request, _request_timeout=SCRAPE_TIMEOUT_SECONDS)
        response.read()
        if not 200 <= response.status < 300:
            raise ApiException(http_resp=response)
        body = response.data
        if len(body) > MAX_METRICS_BYTES:
            raise ValueError(f"exposition larger than {MAX_METRICS_BYTES} bytes")
        return body.decode("utf-8", errors="replace")


def _scrape_one(replica: ProxyReplica, fetch: Fetch) -> ReplicaMetrics:
    try:
        families = tuple(parse_metrics(fetch(replica)))
    except Exception as error:  # any failure is "no answer this time"
        return ReplicaMetrics(replica, None, describe_failure(error))
    return ReplicaMetrics(replica, families)


def describe_failure(error: Exception) -> str:
    """One line for a failed read: the API server's own message, never its headers and body
    dump (what str() of the client's exception holds)."""
    if isinstance(error, ApiException):
        text = f"HTTP {error.status} {error.reason}"
        try:
            message = json.loads(error.body or "").get("message")
        except (ValueError, AttributeError):
            message = None
        if message:
            text += f": {message}"
    else:
        text = f"{type(error).__name__}: {error}"
    return " ".join(text.split())[:200]


def scrape_replicas(
    replicas: Sequence[ProxyReplica], fetch: Fetch = direct_fetch
) -> list[ReplicaMetrics]:
    """Every replica's metrics (in parallel, each within the fetch's timeout)."""
    if not replicas:
        return []
    workers = min(MAX_PARALLEL_SCRAPES, len(replicas))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llmroute-scrape") as pool:
        return list(pool.map(lambda r: _scrape_one(r, fetch), replicas))


def scrape_route(
    api: client.ApiClient, namespace: str, route_name: str, fetch: Fetch | None = None
) -> list[ReplicaMetrics]:
    """List a route's proxy replicas and read each one's /metrics."""
    return scrape_replicas(list_proxy_replicas(api, namespace, route_name), fetch or direct_fetch)
