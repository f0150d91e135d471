"""Usage per route, model, target, caller and task, from the proxies' counters.

The rows behind `llmroute usage` (llmroute.cli.usage sums and prints them): what the
running proxy replicas counted since they started (LiteLLM keeps no history without a
database); the spend of a budget period is in each ModelQuota's status. Callers are the
route's declared callers (the gateway labels a request with its caller's name; "_master" is
the master key), tasks the declared tasks whose tag the request carried, so every label is
bounded by the spec.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from llmroute.api import GROUP, ROUTE_PLURAL, VERSION
from llmroute.api.quota import stored_route_targets
from llmroute.quota.counters import (
    CALLER_LABEL,
    MODEL_ID_LABEL,
    MODEL_NAME_LABEL,
    PROVIDER_LABEL,
    PROVIDER_MODEL_LABEL,
    TASK_LABEL_PREFIX,
    CounterSample,
    Usage,
    add_sample,
    counter_samples,
)
from llmroute.quota.scrape import Fetch, ReplicaMetrics, scrape_route


@dataclass(frozen=True)
class UsageRow:
    namespace: str
    route: str
    model: str  # the route's model name (what clients sent)
    target: str  # "<provider>/<model>" of the spec's target; LiteLLM's labels when unknown
    deployment: str  # the deployment id, "<model name>/<provider>/<model>" (deployment_ids)
    caller: str  # a declared caller, "_master" for the master key, "" when unknown
    task: str  # the declared tasks the requests were tagged with, comma-separated; "" none
    usage: Usage

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "route": self.route,
            "model": self.model,
            "target": self.target,
            "deployment": self.deployment,
            "caller": self.caller,
            "task": self.task,
            **self.usage.to_json(),
        }


@dataclass(frozen=True)
class UsageReport:
    rows: list[UsageRow]
    # replicas that did not answer: (namespace, route, pod, why)
    unanswered: list[tuple[str, str, str, str]] = field(default_factory=list)
    answered: int = 0  # replicas whose counters were read


def _targets(route: Mapping[str, Any]) -> dict[str, str]:
    """Deployment id -> "<provider>/<model>" for every target of the route's spec, in order."""
    return {t.deployment_id: f"{t.provider}/{t.model}" for t in stored_route_targets(route)}


def _caller(labels: Mapping[str, str]) -> str:
    caller = labels.get(CALLER_LABEL, "")
    # LiteLLM writes a missing alias as the text "None".
    return "" if caller == "None" else caller


def _tasks_of(labels: Mapping[str, str], tasks: Sequence[str] | None) -> str:
    if tasks is None:
        tasks = sorted(
            name.removeprefix(TASK_LABEL_PREFIX)
            for name in labels
            if name.startswith(TASK_LABEL_PREFIX)
        )
    return ",".join(t for t in tasks if labels.get(f"{TASK_LABEL_PREFIX}{t}") == "true")


def usage_rows(
    replicas: Iterable[Iterable[CounterSample]],
    *,
    namespace: str,
    route: str,
    targets: Mapping[str, str] | None = None,
    tasks: Sequence[str] | None = None,
) -> list[UsageRow]:
    """Rows of usage, summed over the replicas, one per model, target, caller and task.

    replicas: the usage counter samples of each replica of the route.
    targets: deployment id -> target description (from the spec); LiteLLM's provider and
        model labels describe targets the spec does not name.
    tasks: the route's declared tasks; None reads them from the tag_task_* labels.
    """
    totals: defaultdict[tuple[str, str, str, str, str], Usage] = defaultdict(Usage)
    for samples in replicas:
        for sample in samples:
            labels = sample.labels
            deployment = labels.get(MODEL_ID_LABEL, "")
            target = (targets or {}).get(deployment) or (
                f"{labels.get(PROVIDER_LABEL, '')}/{labels.get(PROVIDER_MODEL_LABEL, '')}"
            )
            key = (
                labels.get(MODEL_NAME_LABEL, ""),
                target,
                deployment,
                _caller(labels),
                _tasks_of(labels, tasks),
            )
            totals[key] = add_sample(totals[key], sample)
    rows = [
        UsageRow(namespace, route, model, target, deployment, caller, task, usage)
        for (model, target, deployment, caller, task), usage in totals.items()
    ]
    # Targets in the order the spec lists them; deployments it does not name after them.
    position = {deployment: i for i, deployment in enumerate(targets or {})}
    return sorted(
        rows,
        key=lambda r: (
            r.model,
            position.get(r.deployment, len(position)),
            r.deployment,
            r.caller,
            r.task,
        ),
    )


def route_usage(route: Mapping[str, Any], metrics: Sequence[ReplicaMetrics]) -> list[UsageRow]:
    """The usage rows of one LLMRoute object from what its replicas answered."""
    metadata = route.get("metadata") or {}
    declared = (route.get("spec") or {}).get("tasks")
    return usage_rows(
        (counter_samples(m.families) for m in metrics if m.families is not None),
        namespace=str(metadata.get("namespace") or ""),
        route=str(metadata.get("name") or ""),
        targets=_targets(route),
        tasks=list(declared) if isinstance(declared, list) else None,
    )


def gather_usage(
    api: client.ApiClient,
    namespace: str | None = None,
    route_name: str | None = None,
    *,
    fetch: Fetch | None = None,
) -> UsageReport:
    """Usage of the routes in `namespace` (every namespace when None), or of one route.

    fetch: how to read a replica (default: its pod IP, as the operator does in the cluster;
        llmroute.quota.scrape.ApiServerFetch reads through the API server from outside).
    """
    custom = client.CustomObjectsApi(api)
    if route_name is not None:
        if namespace is None:
            raise ValueError("a route name needs a namespace")
        try:
            routes = [
                custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, ROUTE_PLURAL, route_name
                )
            ]
        except ApiException as error:
            if error.status == 404:
                return UsageReport(rows=[])
            raise
    elif namespace is not None:
        routes = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, ROUTE_PLURAL)[
            "items"
        ]
    else:
        routes = custom.list_cluster_custom_object(GROUP, VERSION, ROUTE_PLURAL)["items"]
    rows: list[UsageRow] = []
    unanswered: list[tuple[str, str, str, str]] = []
    answered = 0
    for route in sorted(
        routes, key=lambda r: (r["metadata"].get("namespace", ""), r["metadata"]["name"])
    ):
        route_namespace, name = route["metadata"]["namespace"], route["metadata"]["name"]
        metrics = scrape_route(api, route_namespace, name, fetch)
        rows += route_usage(route, metrics)
        unanswered += [
            (route_namespace, name, m.replica.name, m.error or "no answer")
            for m in metrics
            if m.families is None
        ]
        answered += sum(1 for m in metrics if m.families is not None)
    return UsageReport(rows=rows, unanswered=unanswered, answered=answered)
