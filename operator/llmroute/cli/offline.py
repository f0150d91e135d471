"""`llmroute validate` and `llmroute render`: manifest files, without a cluster."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click

from .manifests import Document, from_several_files, load_documents, manifest_file_options
from .output import dump_yaml

if TYPE_CHECKING:
    from ..render.compose import ComposeProject


# -- validate ------------------------------------------------------------------------------------


@click.command()
@manifest_file_options
@click.option(
    "--check-litellm",
    is_flag=True,
    help="Also load each route's rendered config with the pinned litellm release, as the "
    "operator does before it applies anything (takes a few seconds: it imports litellm).",
)
@click.option(
    "--cluster",
    "use_cluster",
    is_flag=True,
    help="Look up a ModelQuota's route in the cluster (read-only) when the given files do not "
    "hold it. A quota without a namespace is looked up in the kubeconfig context's namespace, "
    "where kubectl apply would create it.",
)
@click.option(
    "--kubeconfig",
    type=click.Path(exists=True, dir_okay=False),
    help="With --cluster: kubeconfig file (default: $KUBECONFIG, ~/.kube/config).",
)
@click.option(
    "--context", help="With --cluster: the kubeconfig context (default: the current one)."
)
def validate(
    paths: tuple[str, ...],
    recursive: bool,
    check_litellm: bool,
    use_cluster: bool,
    kubeconfig: str | None,
    context: str | None,
) -> None:
    """Check LLMRoute and ModelQuota manifests, without a cluster unless --cluster.

    Each manifest is checked against the CRD schema with its defaults applied (types, enums,
    patterns, required and unknown fields), the CRD's cross-field rules, and, for an
    LLMRoute, everything the operator checks before it renders the gateway. Problems go to
    stderr, one line each, naming the field:

    \b
      LLMRoute/gateway: spec.models[0].fallbacks[0]: names no model of this route ("cheep")

    A ModelQuota must reference an LLMRoute of the same files (and namespace), match at
    least one of its targets, and name only callers and tasks the route declares (match.caller,
    match.tag): give the route's file too, or a directory (-f DIR, -R), or --cluster to read a
    route the files do not hold from the cluster.

    Exit status: 0 when every manifest is valid, 1 when any is not (or a file cannot be read
    as UTF-8 YAML, or --cluster cannot read the cluster), 2 for a usage error.
    """
    if not use_cluster and (kubeconfig or context):
        raise click.UsageError("--kubeconfig and --context go with --cluster")
    documents = load_documents(paths, recursive)
    several = from_several_files(documents)
    live_route = _cluster_routes(kubeconfig, context) if use_cluster else None
    failed = False
    for document in documents:
        with _quiet_litellm(check_litellm):
            problems = manifest_problems(document.body, check_litellm=check_litellm)
        if not problems and document.kind == "ModelQuota":
            problems = quota_reference_problems(document, documents, live_route)
        for problem in problems:
            click.echo(f"{document.label(several)}: {problem}", err=True)
        if not problems:
            click.echo(f"{document.label(several)}: valid")
        failed = failed or bool(problems)
    sys.exit(1 if failed else 0)


@contextlib.contextmanager
def _quiet_litellm(active: bool) -> Iterator[None]:
    """LiteLLM's warnings about a config it accepts would read like problems of the manifest.

    LiteLLM reads LITELLM_LOG when it is first imported; the variable is restored after.
    """
    previous = os.environ.get("LITELLM_LOG")
    if active and previous is None:
        os.environ["LITELLM_LOG"] = "ERROR"
    try:
        yield
    finally:
        if active and previous is None:
            os.environ.pop("LITELLM_LOG", None)


def manifest_problems(obj: Any, *, check_litellm: bool = False) -> list[str]:
    """What is wrong with one manifest, each as "field: message"; empty when it is valid."""
    from ..api.validation import validate as validate_object

    problems = [str(error) for error in validate_object(obj)]
    if problems or obj.get("kind") != "LLMRoute":
        return problems
    from ..api.route import SpecError, parse_route
    from ..render import check_litellm_config, render_route

    try:
        rendered = render_route(parse_route(obj))
    except SpecError as error:
        return [str(error)]
    if check_litellm:
        return [f"rendered LiteLLM config: {p}" for p in check_litellm_config(rendered.config)]
    return []


# Reads an LLMRoute from the cluster: (namespace or None for the context's, name) -> the
# route, or None when the cluster has none; and the namespace it looked in.
LiveRoute = Callable[[str | None, str], tuple[Mapping[str, Any] | None, str]]


def quota_reference_problems(
    quota: Document, documents: Sequence[Document], live_route: LiveRoute | None = None
) -> list[str]:
    """A valid ModelQuota's problems with the route it references: among `documents`, else
    (when given) from `live_route`, the cluster."""
    from ..api.quota import QuotaSpec, scope_problem, stored_route_scopes, stored_route_targets

    spec = QuotaSpec.from_quota(quota.body)
    namespace = _namespace_of(quota.body)
    routes = [
        d.body
        for d in documents
        if d.kind == "LLMRoute" and d.name == spec.route and _namespace_of(d.body) == namespace
    ]
    route = routes[0] if routes else None
    where = "in the given files (add its file with -f, or check the cluster with --cluster)"
    if route is None and live_route is not None:
        explicit = (quota.body.get("metadata") or {}).get("namespace")
        route, namespace = live_route(explicit, spec.route)
        where = "in the given files or in the cluster"
        if route is not None:
            where = "in the cluster"
    if route is None:
        return [
            f"spec.routeRef.name: no LLMRoute {json.dumps(spec.route)} in namespace "
            f"{json.dumps(namespace or 'default')} {where}"
        ]
    source = " (in the cluster)" if not routes else ""
    if not any(spec.matches(t) for t in stored_route_targets(route)):
        return [f"spec.match: matches no target of LLMRoute {json.dumps(spec.route)}{source}"]
    undeclared = scope_problem(spec, *stored_route_scopes(route))
    return [f"{undeclared}{source}"] if undeclared is not None else []


def _cluster_routes(kubeconfig: str | None, context: str | None) -> LiveRoute:
    """Reads LLMRoutes from the cluster of the kubeconfig; API failures are one-line errors."""
    from .cluster import connect, read_route

    cluster = connect(kubeconfig, context)

    def live_route(namespace: str | None, name: str) -> tuple[Mapping[str, Any] | None, str]:
        namespace = namespace or cluster.namespace
        return read_route(cluster.api, namespace, name), namespace

    return live_route


# A namespace's name is a DNS-1123 label.
_NAMESPACE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _namespace_name(value: str) -> str:
    if len(value) > 63 or not _NAMESPACE_NAME.fullmatch(value):
        raise click.BadParameter(
            f"{value!r} is not a valid namespace name (lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters)"
        )
    return value


def _namespace_of(body: Mapping[str, Any]) -> str | None:
    namespace = (body.get("metadata") or {}).get("namespace")
    return None if namespace in (None, "default") else namespace


# -- render --------------------------------------------------------------------------------------


@click.command()
@manifest_file_options
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["k8s", "compose"]),
    default="k8s",
    show_default=True,
    help="k8s: the Kubernetes objects the operator would apply. compose: a Compose file "
    "that runs the same gateway with docker compose.",
)
@click.option(
    "-n",
    "--namespace",
    default="default",
    show_default=True,
    callback=lambda _ctx, _param, value: _namespace_name(value),
    help="Namespace for routes that name none.",
)
@click.option("--route", "route_name", help="Render only the LLMRoute with this name.")
@click.option(
    "--operator-namespace",
    default=None,
    callback=lambda _ctx, _param, value: None if value is None else _namespace_name(value),
    help="The operator's namespace, whose operator pods the NetworkPolicies admit (to scrape "
    "/metrics, to read Ollama's models). Default: none, so no operator pod is admitted.",
)
def render(
    paths: tuple[str, ...],
    recursive: bool,
    output_format: str,
    namespace: str,
    route_name: str | None,
    operator_namespace: str | None,
) -> None:
    """Print what an LLMRoute becomes, without a cluster.

    --format k8s (default): the child objects the operator would apply, as a multi-document
    YAML stream: ConfigMap, NetworkPolicy, Service, Deployment, and a PodDisruptionBudget or
    HorizontalPodAutoscaler when the spec asks for them. The output holds no key: a route
    without spec.auth.masterKeySecretRef reads its master key from the Secret
    <route>-master-key, which the operator creates with a random key; it is not printed.

    --format compose: a Compose file (Docker Compose 2.23.1 or newer) that runs the route's
    LiteLLM proxy on this machine at http://127.0.0.1:4000 with the config the operator would
    render, plus a local Ollama with a named volume when the route has a managed one
    (spec.ollama). Keys come from environment variables, listed at the top of the file:

    \b
      llmroute render -f examples/smart-chain.yaml --format compose > compose.yaml
      export LLMROUTE_MASTER_KEY=sk-$(openssl rand -hex 24)
      export ANTHROPIC_API_KEY=... OPENAI_API_KEY=...
      docker compose -f compose.yaml up -d

    ModelQuotas in the same files shape the routes they reference (their rpm/tpm limits).
    Exit status: 0 on success, 1 when a route is invalid (the problems go to stderr, naming
    the field) or the files hold no LLMRoute, 2 for a usage error.
    """
    from ..api.quota import quota_effects
    from ..api.route import SpecError, parse_route
    from ..api.validation import validate as validate_object
    from ..render import render_route
    from ..render.compose import render_compose

    documents = load_documents(paths, recursive)
    several = from_several_files(documents)
    routes = [d for d in documents if d.kind == "LLMRoute"]
    if route_name is not None:
        routes = [d for d in routes if d.name == route_name]
    if not routes:
        names = ", ".join(sorted({d.source for d in documents}))
        wanted = f"LLMRoute {route_name!r}" if route_name else "LLMRoute"
        raise click.ClickException(
            f"no {wanted} in {names} (ModelQuotas render nothing of their own: render the "
            "route they reference, with the quotas in the same files)"
        )
    if output_format == "compose" and len(routes) > 1:
        found = ", ".join(str(d.name) for d in routes)
        raise click.ClickException(
            f"a Compose file holds one route; the files have {len(routes)} ({found}): "
            "choose one with --route NAME"
        )
    quotas = [d.body for d in documents if d.kind == "ModelQuota"]

    objects: list[dict[str, Any]] = []
    projects: list[tuple[dict[str, Any], ComposeProject]] = []
    failed = False
    for document in routes:
        body = document.body
        if isinstance(body.setdefault("metadata", {}), dict):
            body["metadata"].setdefault("namespace", namespace)
        errors = [str(e) for e in validate_object(body)]
        if not errors:
            effects = quota_effects(_quotas_of(body, quotas, namespace), str(document.name))
            try:
                route = parse_route(body)
                if output_format == "compose":
                    projects.append((body, render_compose(route, quotas=effects)))
                else:
                    # Without the generated master-key Secret: the operator creates it with a
                    # random key, and nothing printed here can become the gateway's key.
                    rendered = render_route(
                        route, quotas=effects, operator_namespace=operator_namespace
                    )
                    objects.extend(rendered.objects)
            except SpecError as error:
                errors = [str(error)]
        for error in errors:
            click.echo(f"{document.label(several)}: {error}", err=True)
        failed = failed or bool(errors)
    if failed:
        sys.exit(1)
    if output_format == "compose":
        body, project = projects[0]
        click.echo(_compose_header(body, project) + dump_yaml(project.document), nl=False)
    else:
        click.echo(dump_yaml(objects, many=True), nl=False)


def _quotas_of(
    route: Mapping[str, Any], quotas: Sequence[dict[str, Any]], namespace: str
) -> list[dict[str, Any]]:
    """The quotas of the route's namespace (a manifest without one is in -n's)."""
    route_namespace = route["metadata"]["namespace"]
    return [
        q
        for q in quotas
        if (q.get("metadata") or {}).get("namespace", namespace) == route_namespace
    ]


def _compose_header(route: Mapping[str, Any], project: ComposeProject) -> str:
    metadata = route.get("metadata") or {}
    width = max(len(v.name) for v in project.variables)
    lines = [
        f"# LLMRoute {metadata.get('namespace')}/{metadata.get('name')} as a Compose file "
        "(llmroute render --format compose).",
        "# Needs Docker Compose 2.23.1 or newer. Export these variables, then run",
        "# docker compose -f FILE up -d",
    ]
    for variable in project.variables:
        need = "" if variable.required else " (optional)"
        lines.append(f"#   {variable.name.ljust(width)}  {variable.used_for}{need}")
    lines += [
        "# LLMROUTE_MASTER_KEY is the gateway's own key; make one: sk-$(openssl rand -hex 24)",
        "# The gateway: http://127.0.0.1:4000/v1 (OpenAI API; the key as 'Authorization: Bearer').",
    ]
    return "\n".join(lines) + "\n"
