"""Names of a route's child objects, and the addresses derived from them."""

import hashlib
import re
from typing import Final

PROXY_PORT: Final = 4000
OLLAMA_PORT: Final = 11434


def proxy_name(route: str) -> str:
    """ConfigMap, Deployment, NetworkPolicy, PodDisruptionBudget and HPA of the proxy."""
    return f"{route}-litellm"


def service_name(route: str) -> str:
    """The proxy Service is named after the route, so the endpoint reads <route>.<ns>.svc."""
    return route


def master_key_secret_name(route: str) -> str:
    return f"{route}-master-key"


def ollama_name(route: str) -> str:
    """StatefulSet, Service and NetworkPolicy of the route's managed Ollama."""
    return f"{route}-ollama"


def endpoint(route: str, namespace: str) -> str:
    return f"http://{service_name(route)}.{namespace}.svc:{PROXY_PORT}"


def managed_ollama_url(route: str, namespace: str) -> str:
    return f"http://{ollama_name(route)}.{namespace}.svc:{OLLAMA_PORT}"


def dns_label(prefix: str, name: str) -> str:
    """A DNS-1123 label `<prefix>-<name>`, shortened with a hash suffix when it would exceed 63."""
    cleaned = re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-")
    label = f"{prefix}-{cleaned}" if cleaned else prefix
    if len(label) <= 63 and cleaned == name:
        return label
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{label[:54].rstrip('-')}-{digest}"
