"""Process-wide state of the running operator: its API client."""

from __future__ import annotations

import functools
import os

from kubernetes import client, config

from llmroute.api.api_base_policy import ApiBasePolicy


@functools.cache
def api_client() -> client.ApiClient:
    """One API client for the operator's lifetime (in-cluster, else the kubeconfig)."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(
            config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
        )
    # kopf runs sync handlers in a thread pool; the pool of connections follows it.
    configuration.connection_pool_maxsize = 16
    return client.ApiClient(configuration)


def operator_namespace() -> str | None:
    """The operator's own namespace (set by the chart from the downward API)."""
    return os.environ.get("POD_NAMESPACE") or None


@functools.cache
def api_base_policy() -> ApiBasePolicy:
    """The cluster admin's apiBase host allow-list (set by the chart; fixed for the process)."""
    return ApiBasePolicy.from_environment()
