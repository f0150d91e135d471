"""Names of a route's child objects, and the addresses derived from them.

The name suffixes and the ports are declared here once; the table of child kinds
(llmroute.render.children) and every renderer name children through these functions.
"""

import hashlib
import re
from typing import Final

PROXY_PORT: Final = 4000
OLLAMA_PORT: Final = 11434
REDIS_PORT: Final = 6379

PROXY_SUFFIX: Final = "-litellm"
OLLAMA_SUFFIX: Final = "-ollama"
MASTER_KEY_SUFFIX: Final = "-master-key"
REDIS_SUFFIX: Final = "-redis"
# The key inside the generated "<route>-redis" Secret.
REDIS_PASSWORD_SECRET_KEY: Final = "password"
# The key inside the generated "<route>-master-key" Secret.
MASTER_KEY_SECRET_KEY: Final = "masterKey"


def proxy_name(route: str) -> str:
    """ConfigMap, Deployment, NetworkPolicy, PodDisruptionBudget and HPA of the proxy."""
    return f"{route}{PROXY_SUFFIX}"


def service_name(route: str) -> str:
    """The proxy Service is named after the route, so the endpoint reads <route>.<ns>.svc."""
    return route


def exposure_name(route: str) -> str:
    """The HTTPRoute or Ingress of spec.expose carries the route's name, as its Service does."""
    return route


def master_key_secret_name(route: str) -> str:
    """The Secret the operator generates when the route references no master key."""
    return f"{route}{MASTER_KEY_SUFFIX}"


def ollama_name(route: str) -> str:
    """StatefulSet, Service and NetworkPolicy of the route's managed Ollama."""
    return f"{route}{OLLAMA_SUFFIX}"


def redis_name(route: str) -> str:
    """StatefulSet, Service, NetworkPolicy and password Secret of the route's managed Redis."""
    return f"{route}{REDIS_SUFFIX}"


def managed_redis_host(route: str, namespace: str) -> str:
    return f"{redis_name(route)}.{namespace}.svc"


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
