"""The `llmroute` command: run the operator, work with LLMRoute files offline, and read the
state of the gateways in a cluster.

Offline: `render` (the objects the operator would apply, or a Compose file for a laptop) and
`validate` (schema and semantics, for CI). Against a cluster: `status` (routes and quotas)
and `usage` (spend and tokens by route, model, target, caller and task).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import random
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import click
import yaml

if TYPE_CHECKING:
    from .render.compose import ComposeProject

CONTEXT_SETTINGS: Final = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
OUTPUT_FORMATS: Final = ("table", "yaml", "json")
USAGE_DIMENSIONS: Final = ("route", "model", "target", "caller", "task")
IN_CLUSTER_NAMESPACE_FILE: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="llmroute")
def main() -> None:
    """llmroute: a governed, OpenAI-compatible LLM gateway for Kubernetes.

    \b
    Offline, on manifest files:
      llmroute validate -f route.yaml           check LLMRoutes and ModelQuotas
      llmroute render -f route.yaml             the objects the operator would apply
      llmroute render -f route.yaml --format compose > compose.yaml
                                                the same gateway for docker compose
    Against a cluster (kubeconfig, or in-cluster):
      llmroute status -A                        routes and budgets, with their conditions
      llmroute usage -n prod                    spend and tokens by model, caller, task
    The operator itself:
      llmroute run                              what the Helm chart's Deployment runs
    """


# -- run ---------------------------------------------------------------------------------------


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
    from . import handlers  # noqa: F401  (registers the handlers)

    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=liveness or None,
        standalone=peering is None,
        peering_name=peering,
        priority=priority if priority is not None else random.SystemRandom().randint(1, 2**30),
    )


# -- manifest files ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Document:
    source: str  # the file name, "-" for stdin
    index: int  # position in its file's YAML stream, from 0
    body: Any

    @property
    def kind(self) -> str | None:
        return self.body.get("kind") if isinstance(self.body, dict) else None

    @property
    def name(self) -> str | None:
        if not isinstance(self.body, dict):
            return None
        metadata = self.body.get("metadata")
        return metadata.get("name") if isinstance(metadata, dict) else None

    def label(self, several_files: bool) -> str:
        """How messages name the document: Kind/name, with the file when there are several."""
        if self.kind and self.name:
            what = f"{self.kind}/{self.name}"
        else:
            what = f"document {self.index + 1}" + (f" ({self.kind})" if self.kind else "")
        return f"{self.source}: {what}" if several_files or not (self.kind and self.name) else what


def load_documents(files: Sequence[IO[str]]) -> list[Document]:
    """Every non-empty document of the YAML streams; a file that is not YAML is an error."""
    documents = []
    for handle in files:
        source = "-" if handle.name == "<stdin>" else handle.name
        try:
            bodies = list(yaml.safe_load_all(handle.read()))
        except yaml.YAMLError as error:
            raise click.ClickException(f"{source}: not valid YAML: {error}") from None
        documents += [Document(source, i, body) for i, body in enumerate(bodies) if body]
    if not documents:
        names = ", ".join("-" if f.name == "<stdin>" else f.name for f in files)
        raise click.ClickException(f"no manifests in {names}")
    return documents


FILENAME_OPTION = click.option(
    "-f",
    "--filename",
    "files",
    type=click.File("r"),
    metavar="FILE",
    multiple=True,
    required=True,
    help="YAML file with LLMRoute / ModelQuota manifests (repeatable); - reads stdin.",
)


class _Dumper(yaml.SafeDumper):
    """YAML for people: multi-line strings (config.yaml, the auth module) as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(data: Any, *, many: bool = False) -> str:
    options = {"Dumper": _Dumper, "sort_keys": False, "allow_unicode": True, "width": 4096}
    return yaml.dump_all(data, **options) if many else yaml.dump(data, **options)


# -- validate ------------------------------------------------------------------------------------


@main.command()
@FILENAME_OPTION
@click.option(
    "--check-litellm",
    is_flag=True,
    help="Also load each route's rendered config with the pinned litellm release, as the "
    "operator does before it applies anything (takes a few seconds: it imports litellm).",
)
def validate(files: tuple[IO[str], ...], check_litellm: bool) -> None:
    """Check LLMRoute and ModelQuota manifests without a cluster.

    Each manifest is checked against the CRD schema with its defaults applied (types, enums,
    patterns, required and unknown fields), the CRD's cross-field rules, and, for an
    LLMRoute, everything the operator checks before it renders the gateway. Problems go to
    stderr, one line each, naming the field:

    \b
      LLMRoute/gateway: spec.models[0].fallbacks[0]: names no model of this route ("cheep")

    Exit status: 0 when every manifest is valid, 1 when any is not (or a file cannot be read
    as YAML), 2 for a usage error.
    """
    documents = load_documents(files)
    several = len({d.source for d in documents}) > 1
    failed = False
    for document in documents:
        with _quiet_litellm(check_litellm):
            problems = manifest_problems(document.body, check_litellm=check_litellm)
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
    from .api.validation import validate as validate_object

    problems = [str(error) for error in validate_object(obj)]
    if problems or obj.get("kind") != "LLMRoute":
        return problems
    from .api.route import SpecError, parse_route
    from .render import check_litellm_config, render_route

    try:
        rendered = render_route(parse_route(obj))
    except SpecError as error:
        return [str(error)]
    if check_litellm:
        return [f"rendered LiteLLM config: {p}" for p in check_litellm_config(rendered.config)]
    return []


# -- render --------------------------------------------------------------------------------------


@main.command()
@FILENAME_OPTION
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
    help="Namespace for routes that name none.",
)
@click.option("--route", "route_name", help="Render only the LLMRoute with this name.")
def render(
    files: tuple[IO[str], ...], output_format: str, namespace: str, route_name: str | None
) -> None:
    """Print what an LLMRoute becomes, without a cluster.

    --format k8s (default): the child objects the operator would apply, as a multi-document
    YAML stream: ConfigMap, NetworkPolicy, Service, Deployment, and a PodDisruptionBudget or
    HorizontalPodAutoscaler when the spec asks for them. A route without
    spec.auth.masterKeySecretRef gets the Secret <route>-master-key first; its value here is
    a placeholder: the operator writes a random key when it creates the Secret.

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
    from .api.route import SpecError, parse_route
    from .api.validation import validate as validate_object
    from .quota.effects import quota_effects
    from .render import render_route
    from .render.compose import render_compose

    documents = load_documents(files)
    several = len({d.source for d in documents}) > 1
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
                    rendered = render_route(route, quotas=effects)
                    if rendered.generated_secret is not None:
                        objects.append(rendered.generated_secret)
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


# -- the cluster ---------------------------------------------------------------------------------


@dataclass
class Cluster:
    api: Any  # kubernetes.client.ApiClient
    namespace: str  # the context's namespace (kubectl's default for -n)
    in_cluster: bool


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


def cluster_options(command: Any) -> Any:
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


def _connect_scoped(
    kubeconfig: str | None, context: str | None, namespace: str | None, all_namespaces: bool
) -> tuple[Cluster, str | None]:
    """The cluster, and the namespace to read (None: all of them)."""
    if all_namespaces and namespace:
        raise click.UsageError("-n/--namespace and -A/--all-namespaces exclude each other")
    cluster = connect(kubeconfig, context)
    return cluster, None if all_namespaces else namespace or cluster.namespace


def _list(api: Any, plural: str, namespace: str | None) -> list[dict[str, Any]]:
    from kubernetes import client

    from .api import GROUP, VERSION

    custom = client.CustomObjectsApi(api)
    if namespace is None:
        listed = custom.list_cluster_custom_object(GROUP, VERSION, plural)
    else:
        listed = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
    items = listed.get("items") or []
    return sorted(items, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))


def _print(data: Mapping[str, Any], output: str, table: str) -> None:
    if output == "json":
        click.echo(json.dumps(data, indent=2))
    elif output == "yaml":
        click.echo(dump_yaml(dict(data)), nl=False)
    else:
        click.echo(table)


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned as kubectl aligns them: left-justified, three spaces apart."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    return "\n".join(
        "   ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip()
        for line in [header, *rows]
    )


def age(timestamp: str | None, now: dt.datetime) -> str:
    """kubectl's AGE: 45s, 12m, 5h, 3d."""
    if not timestamp:
        return "<unknown>"
    try:
        created = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    seconds = max(0, int((now - created).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 120 * 60:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


# -- status --------------------------------------------------------------------------------------


def route_status(route: Mapping[str, Any], now: dt.datetime) -> dict[str, Any]:
    """What `status` shows of one LLMRoute (JSON-ready)."""
    metadata = route.get("metadata") or {}
    status = route.get("status") or {}
    conditions = {
        c.get("type"): {
            "status": c.get("status"),
            "reason": c.get("reason"),
            "message": c.get("message"),
            "lastTransitionTime": c.get("lastTransitionTime"),
        }
        for c in status.get("conditions") or ()
        if isinstance(c, Mapping)
    }
    return {
        "namespace": metadata.get("namespace"),
        "name": metadata.get("name"),
        "ready": (conditions.get("Ready") or {}).get("status") or "Unknown",
        "endpoint": status.get("endpoint"),
        "models": list(status.get("models") or []),
        "conditions": conditions,
        "generation": metadata.get("generation"),
        "observedGeneration": status.get("observedGeneration"),
        "masterKeySecret": status.get("masterKeySecret"),
        "age": age(metadata.get("creationTimestamp"), now),
    }


def _quota_match(match: Mapping[str, Any]) -> str:
    parts = [
        f"{field}={match[field]}" for field in ("provider", "model", "modelName") if field in match
    ]
    return ",".join(parts) or "-"


def quota_status(quota: Mapping[str, Any], now: dt.datetime) -> dict[str, Any]:
    """What `status` shows of one ModelQuota (JSON-ready)."""
    from .api.quota import (
        DEFAULT_ACTION,
        DEFAULT_ENFORCEMENT,
        DEFAULT_PERIOD,
        DEFAULT_SOFT_LIMIT_PERCENT,
    )

    metadata = quota.get("metadata") or {}
    spec = quota.get("spec") or {}
    status = quota.get("status") or {}
    budget = spec.get("budget") or {}
    return {
        "namespace": metadata.get("namespace"),
        "name": metadata.get("name"),
        "route": (spec.get("routeRef") or {}).get("name"),
        "match": dict(spec.get("match") or {}),
        "limitUSD": budget.get("limitUSD"),
        "period": budget.get("period") or DEFAULT_PERIOD,
        "softLimitPercent": budget.get("softLimitPercent", DEFAULT_SOFT_LIMIT_PERCENT),
        "action": spec.get("action") or DEFAULT_ACTION,
        "enforcement": spec.get("enforcement") or DEFAULT_ENFORCEMENT,
        "spentUSD": status.get("spentUSD"),
        "percentUsed": status.get("percentUsed"),
        "state": status.get("state"),
        "requests": status.get("requests"),
        "inputTokens": status.get("inputTokens"),
        "outputTokens": status.get("outputTokens"),
        "periodStart": status.get("periodStart"),
        "periodEnd": status.get("periodEnd"),
        "lastSync": status.get("lastSync"),
        "conditions": {
            c.get("type"): {
                "status": c.get("status"),
                "reason": c.get("reason"),
                "message": c.get("message"),
            }
            for c in status.get("conditions") or ()
            if isinstance(c, Mapping)
        },
        "age": age(metadata.get("creationTimestamp"), now),
    }


def _money(value: object) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"


def _condition_cell(row: Mapping[str, Any], type_: str) -> str:
    return (row["conditions"].get(type_) or {}).get("status") or "-"


def status_tables(
    routes: Sequence[Mapping[str, Any]], quotas: Sequence[Mapping[str, Any]], all_namespaces: bool
) -> str:
    """The table output of `status`: routes, then quotas, then what keeps routes from Ready."""
    from .route.status import CONDITION_ORDER

    ns_header = ["NAMESPACE"] if all_namespaces else []

    def ns(row: Mapping[str, Any]) -> list[str]:
        return [str(row["namespace"])] if all_namespaces else []

    parts = []
    if routes:
        header = [
            *ns_header,
            "NAME",
            "READY",
            "CONFIGVALID",
            "PROXYAVAILABLE",
            "ENDPOINT",
            "MODELS",
            "AGE",
        ]
        cells = [
            [
                *ns(r),
                str(r["name"]),
                str(r["ready"]),
                _condition_cell(r, "ConfigValid"),
                _condition_cell(r, "ProxyAvailable"),
                r["endpoint"] or "-",
                ",".join(r["models"]) or "-",
                r["age"],
            ]
            for r in routes
        ]
        parts.append(format_table(header, cells))
    else:
        parts.append("No LLMRoutes found.")
    if quotas:
        header = [
            *ns_header,
            "QUOTA",
            "ROUTE",
            "MATCH",
            "SPENT",
            "LIMIT",
            "USED%",
            "STATE",
            "ENFORCEMENT",
            "PERIOD ENDS",
        ]
        cells = [
            [
                *ns(q),
                str(q["name"]),
                str(q["route"]),
                _quota_match(q["match"]),
                _money(q["spentUSD"]),
                f"{_money(q['limitUSD'])}/{q['period']}",
                f"{q['percentUsed']:g}%" if isinstance(q["percentUsed"], (int, float)) else "-",
                q["state"] or "-",
                str(q["enforcement"]),
                q["periodEnd"] or "-",
            ]
            for q in quotas
        ]
        parts.append(format_table(header, cells))
    problems = []
    for route in routes:
        if route["ready"] == "True":
            continue
        name = f"{route['namespace']}/{route['name']}" if all_namespaces else route["name"]
        failing = [
            (type_, c)
            for type_, c in route["conditions"].items()
            if type_ in CONDITION_ORDER and c.get("status") != "True"
        ]
        # Ready=False only sums up the others; on its own (waiting for the proxy) it says why.
        failing = [f for f in failing if f[0] != "Ready"] or failing
        if not failing:
            problems.append(f"{name}: no status yet (is the operator running?)")
        for type_, condition in failing:
            problems.append(
                f"{name}: {type_}={condition.get('status')} ({condition.get('reason')}): "
                f"{condition.get('message')}"
            )
    for quota in quotas:
        for type_, condition in quota["conditions"].items():
            if condition.get("status") != "True":
                name = f"{quota['namespace']}/{quota['name']}" if all_namespaces else quota["name"]
                problems.append(
                    f"quota {name}: {type_}={condition.get('status')} "
                    f"({condition.get('reason')}): {condition.get('message')}"
                )
    if problems:
        parts.append("\n".join(problems))
    return "\n\n".join(parts)


@main.command()
@click.argument("route_name", metavar="[ROUTE]", required=False)
@cluster_options
def status(
    route_name: str | None,
    namespace: str | None,
    all_namespaces: bool,
    output: str,
    kubeconfig: str | None,
    context: str | None,
) -> None:
    """Show LLMRoutes and ModelQuotas with their state.

    For each route: Ready, ConfigValid and ProxyAvailable, the endpoint and the model names;
    for each quota: spend, limit and period, percent used, state (Ok, SoftLimited,
    Exhausted) and enforcement. Below the tables, the conditions that keep a route from
    Ready, with their reasons and messages. ROUTE limits the output to one route and the
    quotas that reference it.

    \b
      llmroute status -n prod
      llmroute status gateway -o json | jq '.routes[0].conditions.Ready'
    """
    from .api import QUOTA_PLURAL, ROUTE_PLURAL

    cluster, scope = _connect_scoped(kubeconfig, context, namespace, all_namespaces)
    where = f"namespace {scope}" if scope else "all namespaces"
    with api_errors(f"listing LLMRoutes in {where}"):
        routes = _list(cluster.api, ROUTE_PLURAL, scope)
    with api_errors(f"listing ModelQuotas in {where}"):
        quotas = _list(cluster.api, QUOTA_PLURAL, scope)
    if route_name is not None:
        routes = [r for r in routes if r["metadata"]["name"] == route_name]
        quotas = [
            q
            for q in quotas
            if ((q.get("spec") or {}).get("routeRef") or {}).get("name") == route_name
        ]
        if not routes:
            raise click.ClickException(f"LLMRoute {route_name!r} not found in {where}")
    now = dt.datetime.now(dt.UTC)
    route_rows = [route_status(r, now) for r in routes]
    quota_rows = [quota_status(q, now) for q in quotas]
    _print(
        {"routes": route_rows, "quotas": quota_rows},
        output,
        status_tables(route_rows, quota_rows, all_namespaces),
    )


# -- usage ---------------------------------------------------------------------------------------


def _dimension_values(row: Any) -> dict[str, str]:
    return {
        "namespace": row.namespace,
        "route": row.route,
        "model": row.model,
        "target": row.target,
        "caller": row.caller,
        "task": row.task,
    }


def group_usage(rows: Sequence[Any], by: Sequence[str]) -> list[dict[str, Any]]:
    """Usage rows summed over everything but the `by` dimensions (route includes namespace)."""
    from .quota.counters import Usage

    keys = [
        k for d in USAGE_DIMENSIONS if d in by for k in (["namespace", d] if d == "route" else [d])
    ]
    totals: dict[tuple[str, ...], Usage] = {}
    for row in rows:
        values = _dimension_values(row)
        key = tuple(values[k] for k in keys)
        totals[key] = totals.get(key, Usage()) + row.usage
    return [
        {**dict(zip(keys, key, strict=True)), **usage.to_json()} for key, usage in totals.items()
    ]


def usage_table(grouped: Sequence[Mapping[str, Any]], by: Sequence[str]) -> str:
    keys = [
        k for d in USAGE_DIMENSIONS if d in by for k in (["namespace", d] if d == "route" else [d])
    ]
    header = [k.upper() for k in keys] + ["REQUESTS", "INPUT TOKENS", "OUTPUT TOKENS", "SPEND USD"]

    def figures(item: Mapping[str, Any]) -> list[str]:
        return [
            str(item["requests"]),
            str(item["inputTokens"]),
            str(item["outputTokens"]),
            f"{item['spendUSD']:.6f}",
        ]

    cells = [[str(item[k]) or "-" for k in keys] + figures(item) for item in grouped]
    if len(grouped) > 1:
        total = {
            field: sum(item[field] for item in grouped)
            for field in ("requests", "inputTokens", "outputTokens", "spendUSD")
        }
        cells.append(["TOTAL"] + [""] * (len(keys) - 1) + figures(total))
    return format_table(header, cells)


@main.command()
@click.option("--route", "route_name", help="Only this LLMRoute (in the namespace of -n).")
@click.option(
    "--by",
    default=",".join(USAGE_DIMENSIONS),
    show_default=True,
    help="Comma-separated dimensions to break usage down by; the others are summed over. "
    "'route' includes the namespace.",
)
@click.option(
    "--via",
    type=click.Choice(["auto", "apiserver", "direct"]),
    default="auto",
    show_default=True,
    help="How to read the proxies' /metrics: through the API server's pod proxy (outside the "
    "cluster), or directly at the pod IPs (in the cluster). auto: direct in a pod, else "
    "apiserver.",
)
@cluster_options
def usage(
    route_name: str | None,
    by: str,
    via: str,
    namespace: str | None,
    all_namespaces: bool,
    output: str,
    kubeconfig: str | None,
    context: str | None,
) -> None:
    """Show spend and tokens by route, model, target, caller and task.

    Reads every proxy replica's counters (LiteLLM's /metrics) and sums them. The figures
    count from each replica's start: a restarted proxy starts again from zero. For the spend
    of a budget period, which survives restarts, see the quotas in `llmroute status`.

    CALLER is a caller of spec.auth.callers, or _master for the master key; TASK the declared
    tasks (spec.tasks) the requests were tagged with.

    \b
      llmroute usage -n prod
      llmroute usage -n prod --route gateway --by model,caller
      llmroute usage -A --by caller -o json

    Reading through the API server needs RBAC `get` on `pods/proxy` and a NetworkPolicy that
    lets the API server reach port 4000 of the proxies.
    """
    from .quota.scrape import ApiServerFetch, direct_fetch
    from .quota.usage import gather_usage

    dimensions = [d.strip() for d in by.split(",") if d.strip()]
    unknown = sorted(set(dimensions) - set(USAGE_DIMENSIONS))
    if unknown or not dimensions:
        raise click.BadParameter(
            f"choose from {', '.join(USAGE_DIMENSIONS)} (got {by!r})", param_hint="--by"
        )
    if route_name is not None and all_namespaces:
        raise click.UsageError("--route needs a namespace: use -n, not -A")
    cluster, scope = _connect_scoped(kubeconfig, context, namespace, all_namespaces)
    direct = via == "direct" or (via == "auto" and cluster.in_cluster)

    from .api import ROUTE_PLURAL

    where = f"namespace {scope}" if scope else "all namespaces"
    if scope is None:
        with api_errors(f"listing LLMRoutes in {where}"):
            namespaces = sorted(
                {r["metadata"]["namespace"] for r in _list(cluster.api, ROUTE_PLURAL, None)}
            )
    else:
        namespaces = [scope]
    if route_name is not None and _route_missing(cluster.api, namespaces[0], route_name):
        raise click.ClickException(f"LLMRoute {route_name!r} not found in {where}")
    rows: list[Any] = []
    unanswered: list[tuple[str, str, str, str]] = []
    for ns in namespaces:
        fetch = direct_fetch if direct else ApiServerFetch(cluster.api, ns)
        with api_errors(f"reading usage in namespace {ns}"):
            report = gather_usage(cluster.api, ns, route_name, fetch=fetch)
        rows += report.rows
        unanswered += report.unanswered
    for ns, route, pod, why in unanswered:
        click.echo(f"warning: {ns}/{route}: replica {pod} did not answer: {why}", err=True)
    if unanswered and not direct:
        click.echo(
            "hint: through the API server this needs RBAC get on pods/proxy and a NetworkPolicy "
            "that admits the API server to port 4000; in the cluster use --via direct",
            err=True,
        )
    grouped = group_usage(rows, dimensions)
    data = {
        "rows": grouped,
        "unanswered": [
            {"namespace": ns, "route": route, "pod": pod, "error": why}
            for ns, route, pod, why in unanswered
        ],
    }
    table = usage_table(grouped, dimensions) if grouped else "No usage recorded."
    _print(data, output, table)


def _route_missing(api: Any, namespace: str, name: str) -> bool:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from .api import GROUP, ROUTE_PLURAL, VERSION

    with api_errors(f"reading LLMRoute {namespace}/{name}"):
        try:
            client.CustomObjectsApi(api).get_namespaced_custom_object(
                GROUP, VERSION, namespace, ROUTE_PLURAL, name
            )
        except ApiException as error:
            if error.status == 404:
                return True
            raise
    return False
