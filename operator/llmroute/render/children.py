"""The kinds of object a route owns: one table, from which the rest derives.

Each row says what the operator does with a kind: whether every route has one or only some
specs ask for it (optional), whether the operator deletes it when the spec stops asking
(prunable), and whether it is server-side applied and so watched for drift. The Kubernetes
client's URL plurals (llmroute.kube), the kopf watches, the index of optional children and
pruning (llmroute.handlers.route, llmroute.route.reconcile) are read from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from llmroute.render.expose import HTTP_ROUTE_API_VERSION
from llmroute.render.labels import OLLAMA_COMPONENT, PROXY_COMPONENT, REDIS_COMPONENT
from llmroute.render.names import MASTER_KEY_SUFFIX, OLLAMA_SUFFIX, PROXY_SUFFIX, REDIS_SUFFIX


@dataclass(frozen=True)
class ChildKind:
    api_version: str  # "v1", "apps/v1", ...
    kind: str
    plural: str  # the URL plural
    component: str | None  # the app.kubernetes.io/component label; None: not labelled by us
    suffix: str | None  # <route><suffix> is the object's name; None: named otherwise
    optional: bool  # only some specs ask for one
    prunable: bool  # deleted when the spec stops asking for it
    applied: bool  # server-side applied from the rendered state, so drift is restored

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    def name(self, route: str) -> str:
        if self.suffix is None:
            raise ValueError(f"{self.kind} children are not named after the route")
        return f"{route}{self.suffix}"


CHILD_KINDS: Final = (
    ChildKind("v1", "ConfigMap", "configmaps", PROXY_COMPONENT, PROXY_SUFFIX, False, False, True),
    # The proxy Service carries the route's own name: the endpoint reads <route>.<ns>.svc.
    ChildKind("v1", "Service", "services", PROXY_COMPONENT, "", False, False, True),
    ChildKind(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        "networkpolicies",
        PROXY_COMPONENT,
        PROXY_SUFFIX,
        False,
        False,
        True,
    ),
    ChildKind(
        "apps/v1", "Deployment", "deployments", PROXY_COMPONENT, PROXY_SUFFIX, False, False, True
    ),
    # Only for specs that run several replicas, or autoscale.
    ChildKind(
        "policy/v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        PROXY_COMPONENT,
        PROXY_SUFFIX,
        True,
        True,
        True,
    ),
    ChildKind(
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        PROXY_COMPONENT,
        PROXY_SUFFIX,
        True,
        True,
        True,
    ),
    # Generated once when the route references no master key, and never overwritten or pruned:
    # clients hold its key.
    ChildKind("v1", "Secret", "secrets", PROXY_COMPONENT, MASTER_KEY_SUFFIX, True, False, False),
    # The managed Ollama, gone when spec.ollama goes away or turns external.
    ChildKind(
        "apps/v1", "StatefulSet", "statefulsets", OLLAMA_COMPONENT, OLLAMA_SUFFIX, True, True, True
    ),
    ChildKind("v1", "Service", "services", OLLAMA_COMPONENT, OLLAMA_SUFFIX, True, True, True),
    ChildKind(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        "networkpolicies",
        OLLAMA_COMPONENT,
        OLLAMA_SUFFIX,
        True,
        True,
        True,
    ),
    # The managed Redis (spec.redis.managed), gone when spec.redis goes or turns external.
    ChildKind(
        "apps/v1", "StatefulSet", "statefulsets", REDIS_COMPONENT, REDIS_SUFFIX, True, True, True
    ),
    ChildKind("v1", "Service", "services", REDIS_COMPONENT, REDIS_SUFFIX, True, True, True),
    ChildKind(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        "networkpolicies",
        REDIS_COMPONENT,
        REDIS_SUFFIX,
        True,
        True,
        True,
    ),
    # Its password: generated once, never overwritten; deleted with the route (ownerReference).
    ChildKind("v1", "Secret", "secrets", REDIS_COMPONENT, REDIS_SUFFIX, True, False, False),
    # spec.expose: an HTTPRoute (Gateway API) or an Ingress, named after the route like its
    # Service. The HTTPRoute's kind exists only where the Gateway API CRDs are installed.
    ChildKind(
        HTTP_ROUTE_API_VERSION,
        "HTTPRoute",
        "httproutes",
        PROXY_COMPONENT,
        "",
        True,
        True,
        True,
    ),
    ChildKind(
        "networking.k8s.io/v1", "Ingress", "ingresses", PROXY_COMPONENT, "", True, True, True
    ),
    # The Ollama's model volumes: made by the StatefulSet controller from its claim template,
    # and retained when the Ollama goes (models are large and slow to fetch again).
    ChildKind(
        "v1", "PersistentVolumeClaim", "persistentvolumeclaims", None, None, True, False, False
    ),
)

# Workloads report on the route's status (ProxyAvailable, OllamaReady) as well as being
# restored; they have handlers of their own.
WORKLOAD_KINDS: Final = frozenset({"Deployment", "StatefulSet"})


def colliding_name_endings() -> tuple[str, ...]:
    """Route-name endings that would let two routes claim one child object.

    Route X's child of suffix s and route Y's child of suffix s' (same kind, s != s') share a
    name when X + s == Y + s', that is when Y == X + p with s == p + s'. Refusing route names
    that end in such a p (non-empty) leaves every child name to one route. With the table as it
    is: a Service named <route> and one named <route>-ollama, so "-ollama".
    """
    suffixes: dict[str, set[str]] = {}
    for child in CHILD_KINDS:
        if child.suffix is not None:
            suffixes.setdefault(child.kind, set()).add(child.suffix)
    endings = {
        longer[: len(longer) - len(shorter)]
        for kind_suffixes in suffixes.values()
        for longer in kind_suffixes
        for shorter in kind_suffixes
        if longer != shorter and longer.endswith(shorter)
    }
    return tuple(sorted(endings))


def prunable_children() -> tuple[ChildKind, ...]:
    return tuple(c for c in CHILD_KINDS if c.prunable)


def plurals() -> dict[tuple[str, str], str]:
    """(apiVersion, kind) -> URL plural, for every kind a route owns."""
    return {(c.api_version, c.kind): c.plural for c in CHILD_KINDS}


def drift_watched_resources() -> list[tuple[str, str, str]]:
    """(group, version, plural) of the applied kinds without a handler of their own, once each."""
    seen: dict[tuple[str, str, str], None] = {}
    for child in CHILD_KINDS:
        if child.applied and child.kind not in WORKLOAD_KINDS:
            seen.setdefault((child.group, child.version, child.plural), None)
    return list(seen)
