"""Where the pinned binaries live: the control plane, Ollama and Prometheus (built by
hack/build-tools.sh)."""

from __future__ import annotations

import os
from pathlib import Path

HACK_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = HACK_DIR.parent
BUILD_COMMAND = "bash hack/build-tools.sh"

# Which version key in hack/versions.env each binary is built from.
_BINARY_VERSION_KEY = {
    "kube-apiserver": "KUBERNETES_VERSION",
    "kube-controller-manager": "KUBERNETES_VERSION",
    "kube-scheduler": "KUBERNETES_VERSION",
    "kube-proxy": "KUBERNETES_VERSION",
    "kubectl": "KUBERNETES_VERSION",
    "etcd": "ETCD_VERSION",
    "helm": "HELM_VERSION",
    "kwok": "KWOK_VERSION",
    "ollama": "OLLAMA_VERSION",
    "kube-router": "KUBE_ROUTER_VERSION",
    "prometheus": "PROMETHEUS_VERSION",
    "promtool": "PROMETHEUS_VERSION",
}
# Services and NetworkPolicies need these two and a pod network; without them the local
# cluster still runs, with pods only (see controlplane.LocalCluster).
NETWORK_TOOLS = ("kube-proxy", "kube-router")
# The local Prometheus and the alert rules' unit tests; the cluster runs without them.
PROMETHEUS_TOOLS = ("prometheus", "promtool")
CONTROL_PLANE_TOOLS = tuple(
    n for n in _BINARY_VERSION_KEY if n not in (*NETWORK_TOOLS, *PROMETHEUS_TOOLS)
)
_VERSION_DIR_PREFIX = {
    "KUBERNETES_VERSION": "kubernetes",
    "ETCD_VERSION": "etcd",
    "HELM_VERSION": "helm",
    "KWOK_VERSION": "kwok",
    "OLLAMA_VERSION": "ollama",
    "KUBE_ROUTER_VERSION": "kube-router",
    "PROMETHEUS_VERSION": "prometheus",
}


def versions() -> dict[str, str]:
    """The pinned versions from hack/versions.env."""
    pinned = {}
    for line in (HACK_DIR / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pinned[key.strip()] = value.strip()
    return pinned


def tools_dir() -> Path:
    return Path(os.environ.get("LLMROUTE_TOOLS_DIR", Path.home() / ".cache/llmroute/bin"))


def binary(name: str) -> Path:
    """Path of a pinned binary; it may not exist yet (see missing())."""
    key = _BINARY_VERSION_KEY[name]
    return tools_dir() / f"{_VERSION_DIR_PREFIX[key]}-{versions()[key]}" / name


def missing(names: tuple[str, ...] = CONTROL_PLANE_TOOLS) -> list[str]:
    return [name for name in names if not os.access(binary(name), os.X_OK)]


def gateway_api_crd_dir() -> Path:
    """The Gateway API's CRDs (standard channel) of the pinned version, fetched from its Go
    module by hack/build-tools.sh; it may not exist yet."""
    return tools_dir() / f"gateway-api-{versions()['GATEWAY_API_VERSION']}"


def kwok_stages() -> Path:
    """kwok's pod and node stages, copied from its module by hack/build-tools.sh."""
    return binary("kwok").parent / "stages.yaml"
