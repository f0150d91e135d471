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

    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=liveness or None,
        standalone=peering is None,
        peering_name=peering,
        priority=priority if priority is not None else random.SystemRandom().randint(1, 2**30),
    )
