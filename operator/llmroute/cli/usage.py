"""`llmroute usage`: spend and tokens from the proxies' counters, by the dimensions asked for."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import click

from .cluster import api_errors, cluster_options, connect_scoped, list_objects, route_missing
from .output import echo_output
from .tables import format_table, money

if TYPE_CHECKING:
    from ..quota.usage import UsageRow

USAGE_DIMENSIONS: Final = ("route", "model", "target", "caller", "task")
FIGURES: Final = ("requests", "inputTokens", "outputTokens", "spendUSD")


def _columns(by: Sequence[str]) -> list[str]:
    """The key columns for the `by` dimensions, in USAGE_DIMENSIONS order (a route's name
    is unique only with its namespace)."""
    return [
        k for d in USAGE_DIMENSIONS if d in by for k in (["namespace", d] if d == "route" else [d])
    ]


def _column_values(row: UsageRow) -> dict[str, str]:
    return {
        "namespace": row.namespace,
        "route": row.route,
        "model": row.model,
        "target": row.target,
        "caller": row.caller,
        "task": row.task,
    }


def group_usage(rows: Sequence[UsageRow], by: Sequence[str]) -> list[dict[str, Any]]:
    """Usage rows summed over everything but the `by` dimensions (route includes namespace)."""
    from ..quota.counters import Usage

    keys = _columns(by)
    totals: dict[tuple[str, ...], Usage] = {}
    for row in rows:
        values = _column_values(row)
        key = tuple(values[k] for k in keys)
        totals[key] = totals.get(key, Usage()) + row.usage
    return [
        {**dict(zip(keys, key, strict=True)), **usage.to_json()} for key, usage in totals.items()
    ]


def usage_table(grouped: Sequence[Mapping[str, Any]], by: Sequence[str]) -> str:
    """The table output of `usage`, with a TOTAL line under more than one row."""
    keys = _columns(by)
    header = [k.upper() for k in keys] + ["REQUESTS", "INPUT TOKENS", "OUTPUT TOKENS", "SPEND USD"]

    def figures(item: Mapping[str, Any]) -> list[str]:
        return [
            str(item["requests"]),
            str(item["inputTokens"]),
            str(item["outputTokens"]),
            money(item["spendUSD"], micro=True),
        ]

    cells = [[str(item[k]) or "-" for k in keys] + figures(item) for item in grouped]
    if len(grouped) > 1:
        total = {field: sum(item[field] for item in grouped) for field in FIGURES}
        cells.append(["TOTAL"] + [""] * (len(keys) - 1) + figures(total))
    return format_table(header, cells)


@click.command()
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
    from ..quota.scrape import ApiServerFetch, direct_fetch
    from ..quota.usage import gather_usage

    dimensions = [d.strip() for d in by.split(",") if d.strip()]
    unknown = sorted(set(dimensions) - set(USAGE_DIMENSIONS))
    if unknown or not dimensions:
        raise click.BadParameter(
            f"choose from {', '.join(USAGE_DIMENSIONS)} (got {by!r})", param_hint="--by"
        )
    if route_name is not None and all_namespaces:
        raise click.UsageError("--route needs a namespace: use -n, not -A")
    cluster, scope = connect_scoped(kubeconfig, context, namespace, all_namespaces)
    direct = via == "direct" or (via == "auto" and cluster.in_cluster)

    from ..api import ROUTE_PLURAL

    where = f"namespace {scope}" if scope else "all namespaces"
    if scope is None:
        with api_errors(f"listing LLMRoutes in {where}"):
            namespaces = sorted(
                {r["metadata"]["namespace"] for r in list_objects(cluster.api, ROUTE_PLURAL, None)}
            )
    else:
        namespaces = [scope]
    if route_name is not None and route_missing(cluster.api, namespaces[0], route_name):
        raise click.ClickException(f"LLMRoute {route_name!r} not found in {where}")
    rows: list[UsageRow] = []
    unanswered: list[tuple[str, str, str, str]] = []
    answered = 0
    for ns in namespaces:
        fetch = direct_fetch if direct else ApiServerFetch(cluster.api, ns)
        with api_errors(f"reading usage in namespace {ns}"):
            report = gather_usage(cluster.api, ns, route_name, fetch=fetch)
        rows += report.rows
        unanswered += report.unanswered
        answered += report.answered
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
    echo_output(data, output, table)
    if unanswered and not answered:
        # Nothing was read: "no usage" would be a claim the command cannot make.
        raise click.ClickException(f"no proxy replica answered ({len(unanswered)} asked)")
