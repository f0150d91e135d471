"""The labels every child object of a route carries."""

from typing import Final

ROUTE_LABEL: Final = "llmroute.dev/route"
CONFIG_HASH_ANNOTATION: Final = "llmroute.dev/config-hash"
# The operator's own pods carry this name; proxies admit them for metrics scraping.
OPERATOR_APP_NAME: Final = "llmroute-operator"


def _labels(route: str, name: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": route,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "llmroute",
        "app.kubernetes.io/managed-by": "llmroute",
        ROUTE_LABEL: route,
    }


def _selector(route: str, name: str, component: str) -> dict[str, str]:
    # Deployment and StatefulSet selectors are immutable: keep them to labels that never change.
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": route,
        "app.kubernetes.io/component": component,
    }


def proxy_labels(route: str) -> dict[str, str]:
    return _labels(route, "litellm", "proxy")


def proxy_selector(route: str) -> dict[str, str]:
    return _selector(route, "litellm", "proxy")


def ollama_labels(route: str) -> dict[str, str]:
    return _labels(route, "ollama", "ollama")


def ollama_selector(route: str) -> dict[str, str]:
    return _selector(route, "ollama", "ollama")
