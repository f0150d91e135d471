"""The cluster the `status` and `usage` commands read: options, connection, API errors.

The kubernetes client is imported inside each function: commands that never reach a cluster
(`--help`, `validate`, `render`) do not pay for it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import click

from .output import OUTPUT_FORMATS

IN_CLUSTER_NAMESPACE_FILE: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass
class Cluster:
    api: Any  # kubernetes.client.ApiClient
    namespace: str  # the context's namespace (kubectl's default for -n)
    in_cluster: bool


def cluster_options(command: Any) -> Any:
    """The options every cluster command takes: -n / -A, -o, --kubeconfig, --context."""
    command = click.option(
        "--context", help="The kubeconfig context to use (default: the current one)."
    )(command)
    command = click.option(
        "--kubeconfig",
        type=click.Path(exists=True, dir_okay=False),
        help="Kubeconfig file (default: $KUBECONFIG, ~/.kube/config; in a pod: its service "
        "account).",
    )(command)
    command = click.option(
        "-o",
        "--output",
        type=click.Choice(OUTPUT_FORMATS),
        default="table",
        show_default=True,
        help="Output format.",
    )(command)
    command = click.option(
        "-A", "--all-namespaces", is_flag=True, help="Every namespace (-n is then not allowed)."
    )(command)
    command = click.option(
        "-n", "--namespace", help="Namespace (default: the kubeconfig context's namespace)."
    )(command)
    return command


def connect(kubeconfig: str | None, context: str | None) -> Cluster:
    """An API client from the kubeconfig (--kubeconfig, $KUBECONFIG, ~/.kube/config), or the
    pod's service account when running in a cluster without one."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    in_cluster = (
        kubeconfig is None
        and context is None
        and not os.environ.get("KUBECONFIG")
        and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    )
    try:
        if in_cluster:
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            namespace = "default"
            with contextlib.suppress(OSError):
                namespace = IN_CLUSTER_NAMESPACE_FILE.read_text().strip() or namespace
            return Cluster(client.ApiClient(configuration), namespace, True)
        api = config.new_client_from_config(config_file=kubeconfig, context=context)
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
        chosen = next((c for c in contexts if c.get("name") == context), None) if context else None
        namespace = ((chosen or active or {}).get("context") or {}).get("namespace") or "default"
        return Cluster(api, namespace, False)
    except (ConfigException, OSError) as error:
        raise click.ClickException(
            f"no usable Kubernetes configuration ({error}); pass --kubeconfig, set KUBECONFIG, "
            "or run in a cluster"
        ) from None


def connect_scoped(
    kubeconfig: str | None, context: str | None, namespace: str | None, all_namespaces: bool
) -> tuple[Cluster, str | None]:
    """The cluster, and the namespace to read (None: all of them)."""
    if all_namespaces and namespace:
        raise click.UsageError("-n/--namespace and -A/--all-namespaces exclude each other")
    cluster = connect(kubeconfig, context)
    return cluster, None if all_namespaces else namespace or cluster.namespace


@contextlib.contextmanager
def api_errors(what: str) -> Iterator[None]:
    """API failures as one line for the user, not a traceback."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as error:
        if error.status == 404:
            raise click.ClickException(
                f"{what}: not found; are the llmroute CRDs installed? (kubectl get crd "
                "llmroutes.llmroute.dev)"
            ) from None
        if error.status in (401, 403):
            raise click.ClickException(
                f"{what}: the API server refused ({error.status} {error.reason}); your "
                "credentials lack the permission"
            ) from None
        raise click.ClickException(f"{what}: {error.status} {error.reason}") from None
    except HTTPError as error:
        raise click.ClickException(f"{what}: cannot reach the API server: {error}") from None


def list_objects(api: Any, plural: str, namespace: str | None) -> list[dict[str, Any]]:
    """The llmroute objects of a kind in a namespace (every namespace when None), sorted."""
    from kubernetes import client

    from ..api import GROUP, VERSION

    custom = client.CustomObjectsApi(api)
    if namespace is None:
        listed = custom.list_cluster_custom_object(GROUP, VERSION, plural)
    else:
        listed = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
    items = listed.get("items") or []
    return sorted(items, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))


def read_route(api: Any, namespace: str, name: str) -> dict[str, Any] | None:
    """The LLMRoute, or None when the API server answers 404; other failures are errors."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from ..api import GROUP, ROUTE_PLURAL, VERSION

    with api_errors(f"reading LLMRoute {namespace}/{name}"):
        try:
            return client.CustomObjectsApi(api).get_namespaced_custom_object(
                GROUP, VERSION, namespace, ROUTE_PLURAL, name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise


def route_missing(api: Any, namespace: str, name: str) -> bool:
    """Whether the API server answers 404 for the LLMRoute; other failures are errors."""
    return read_route(api, namespace, name) is None
