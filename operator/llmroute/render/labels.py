"""The labels every child object of a route carries."""

from typing import Any, Final

ROUTE_LABEL: Final = "llmroute.dev/route"
COMPONENT_LABEL: Final = "app.kubernetes.io/component"
MANAGED_BY: Final = {"app.kubernetes.io/managed-by": "llmroute"}
PROXY_COMPONENT: Final = "proxy"
OLLAMA_COMPONENT: Final = "ollama"
REDIS_COMPONENT: Final = "redis"
CONFIG_HASH_ANNOTATION: Final = "llmroute.dev/config-hash"
# On a workload: the replica count the route asks for. Absent when an autoscaler owns it.
REPLICAS_ANNOTATION: Final = "llmroute.dev/replicas"
# The operator's own pods carry this name; proxies admit them for metrics scraping.
OPERATOR_APP_NAME: Final = "llmroute-operator"
# Every namespace carries its name in this label (set by the API server).
NAMESPACE_NAME_LABEL: Final = "kubernetes.io/metadata.name"


def _labels(route: str, name: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": route,
        COMPONENT_LABEL: component,
        "app.kubernetes.io/part-of": "llmroute",
        **MANAGED_BY,
        ROUTE_LABEL: route,
    }


def _selector(route: str, name: str, component: str) -> dict[str, str]:
    # Deployment and StatefulSet selectors are immutable: keep them to labels that never change.
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": route,
        COMPONENT_LABEL: component,
    }


def proxy_labels(route: str) -> dict[str, str]:
    return _labels(route, "litellm", PROXY_COMPONENT)


def proxy_selector(route: str) -> dict[str, str]:
    return _selector(route, "litellm", PROXY_COMPONENT)


def ollama_labels(route: str) -> dict[str, str]:
    return _labels(route, "ollama", OLLAMA_COMPONENT)


def ollama_selector(route: str) -> dict[str, str]:
    return _selector(route, "ollama", OLLAMA_COMPONENT)


def redis_labels(route: str) -> dict[str, str]:
    return _labels(route, "redis", REDIS_COMPONENT)


def redis_selector(route: str) -> dict[str, str]:
    return _selector(route, "redis", REDIS_COMPONENT)


def component_selector(component: str) -> dict[str, str]:
    """The labels of every route's children of one component (proxy or ollama)."""
    return {**MANAGED_BY, COMPONENT_LABEL: component}


def proxy_pod_selector(route: str) -> str:
    """A label selector (the API's text form) for the proxy Pods of one route."""
    return f"{ROUTE_LABEL}={route},{COMPONENT_LABEL}={PROXY_COMPONENT}"


def operator_ingress(operator_namespace: str | None, port: int) -> list[dict[str, Any]]:
    """The NetworkPolicy ingress rule admitting the operator's pods on `port`, as a list.

    Empty when the operator's namespace is unknown: a rule for the operator's label in every
    namespace would admit any pod that copies the label (fail closed instead).
    """
    if not operator_namespace:
        return []
    peer = {
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: operator_namespace}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": OPERATOR_APP_NAME}},
    }
    return [{"from": [peer], "ports": [{"protocol": "TCP", "port": port}]}]
