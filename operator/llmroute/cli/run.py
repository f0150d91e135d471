"""`llmroute run`: the operator itself, what the Helm chart's Deployment runs."""

from __future__ import annotations

import os
import random

import click


@click.command()
@click.option(
    "-n",
    "--namespace",
    "namespaces",
    multiple=True,
    help="Watch only this namespace (repeatable). Default: the whole cluster.",
)
@click.option(
    "--kubeconfig",
    type=click.Path(exists=True, dir_okay=False),
    help="Kubeconfig to use outside a cluster (default: in-cluster, then $KUBECONFIG).",
)
@click.option(
    "--liveness",
    default="http://0.0.0.0:8080/healthz",
    show_default=True,
    help="Liveness endpoint URL; empty to disable.",
)
@click.option(
    "--metrics",
    "metrics_address",
    default="",
    help="Serve the operator's own Prometheus metrics at http://HOST:PORT/metrics "
    "(the chart: 0.0.0.0:8081). Default: not served.",
)
@click.option(
    "--peering",
    default=None,
    help="kopf peering name for high availability (only one replica is active). "
    "Default: standalone.",
)
@click.option(
    "--priority",
    type=int,
    default=None,
    help="Peering priority: the highest active replica runs. Default: random, so that "
    "replicas never tie (kopf pauses every replica of equal priority).",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def run(
    namespaces: tuple[str, ...],
    kubeconfig: str | None,
    liveness: str,
    metrics_address: str,
    peering: str | None,
    priority: int | None,
    verbose: bool,
) -> None:
    """Run the operator until SIGTERM or SIGINT."""
    import logging

    if kubeconfig:
        # Before kopf and the kubernetes client are imported: they read it at import time.
        os.environ["KUBECONFIG"] = kubeconfig
    import kopf

    from ..metrics import parse_listen_address, serve

    if metrics_address:
        try:
            parse_listen_address(metrics_address)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--metrics") from None

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from .. import handlers  # noqa: F401  (registers the handlers)
    from ..state import api_base_policy

    try:
        api_base_policy()  # a malformed allow-list stops the start, not every reconcile
    except ValueError as error:
        raise click.UsageError(str(error)) from None

    if metrics_address:
        serve(metrics_address)

    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=liveness or None,
        standalone=peering is None,
        peering_name=peering,
        priority=priority if priority is not None else random.SystemRandom().randint(1, 2**30),
    )
