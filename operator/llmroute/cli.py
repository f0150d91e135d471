"""The `llmroute` command: run the operator, and work with LLMRoute files offline."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import yaml


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llmroute")
def main() -> None:
    """llmroute: a governed, OpenAI-compatible LLM gateway for Kubernetes."""


@main.command()
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
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def run(
    namespaces: tuple[str, ...],
    kubeconfig: str | None,
    liveness: str,
    peering: str | None,
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
    from . import handlers  # noqa: F401  (registers the handlers)

    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=liveness or None,
        standalone=peering is None,
        peering_name=peering,
    )


def _load_documents(path: str) -> list[dict]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    return [doc for doc in yaml.safe_load_all(text) if doc]


@main.command()
@click.option("-f", "--filename", required=True, help="YAML file with LLMRoute(s); - for stdin.")
def validate(filename: str) -> None:
    """Check LLMRoute / ModelQuota manifests without a cluster (schema and semantics)."""
    from .api.validation import validate as validate_object

    failed = False
    for doc in _load_documents(filename):
        name = f"{doc.get('kind', '?')}/{(doc.get('metadata') or {}).get('name', '?')}"
        errors = validate_object(doc)
        for error in errors:
            click.echo(f"{name}: {error}", err=True)
        failed = failed or bool(errors)
        if not errors:
            click.echo(f"{name}: valid")
    sys.exit(1 if failed else 0)


@main.command()
@click.option("-f", "--filename", required=True, help="YAML file with LLMRoute(s); - for stdin.")
@click.option(
    "-n",
    "--namespace",
    default="default",
    show_default=True,
    help="Namespace for routes that name none.",
)
def render(filename: str, namespace: str) -> None:
    """Print the objects the operator would apply for the LLMRoute(s) in a file."""
    from .api.validation import validate as validate_object
    from .render import render_route

    out = []
    failed = False
    for doc in _load_documents(filename):
        if doc.get("kind") != "LLMRoute":
            continue
        doc.setdefault("metadata", {}).setdefault("namespace", namespace)
        errors = validate_object(doc)
        if errors:
            failed = True
            for error in errors:
                click.echo(f"LLMRoute/{doc['metadata'].get('name', '?')}: {error}", err=True)
            continue
        rendered = render_route(doc)
        if rendered.generated_secret is not None:
            out.append(rendered.generated_secret)
        out.extend(rendered.objects)
    if failed:
        sys.exit(1)
    click.echo(yaml.safe_dump_all(out, sort_keys=False), nl=False)
