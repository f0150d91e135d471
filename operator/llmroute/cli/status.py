"""`llmroute status`: LLMRoutes and ModelQuotas in a cluster, with what keeps them from Ready."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import click

from .cluster import api_errors, cluster_options, connect_scoped, list_objects
from .output import echo_output
from .tables import age, format_table, money


def _conditions(status: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """The status's conditions by type, each with `fields`."""
    return {
        c.get("type"): {field: c.get(field) for field in fields}
        for c in status.get("conditions") or ()
        if isinstance(c, Mapping)
    }


def route_status(route: Mapping[str, Any], now: dt.datetime) -> dict[str, Any]:
    """What `status` shows of one LLMRoute (JSON-ready)."""
    metadata = route.get("metadata") or {}
    status = route.get("status") or {}
    conditions = _conditions(status, ("status", "reason", "message", "lastTransitionTime"))
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


def quota_status(quota: Mapping[str, Any], now: dt.datetime) -> dict[str, Any]:
    """What `status` shows of one ModelQuota (JSON-ready), the CRD's defaults filled in."""
    from ..api.quota import (
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
        "conditions": _conditions(status, ("status", "reason", "message")),
        "age": age(metadata.get("creationTimestamp"), now),
    }


def _quota_match(match: Mapping[str, Any]) -> str:
    from ..api.quota import SCOPE_MATCH_FIELDS, TARGET_MATCH_FIELDS

    parts = [
        f"{field}={match[field]}"
        for field in (*TARGET_MATCH_FIELDS, *SCOPE_MATCH_FIELDS)
        if field in match
    ]
    return ",".join(parts) or "-"


def _condition_cell(row: Mapping[str, Any], type_: str) -> str:
    return (row["conditions"].get(type_) or {}).get("status") or "-"


def _percent(value: object) -> str:
    return f"{value:g}%" if isinstance(value, (int, float)) else "-"


def _routes_table(routes: Sequence[Mapping[str, Any]], all_namespaces: bool) -> str:
    header = ["NAME", "READY", "CONFIGVALID", "PROXYAVAILABLE", "ENDPOINT", "MODELS", "AGE"]
    cells = [
        [
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
    return _table_in_namespaces(header, cells, routes, all_namespaces)


def _quotas_table(quotas: Sequence[Mapping[str, Any]], all_namespaces: bool) -> str:
    header = [
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
            str(q["name"]),
            str(q["route"]),
            _quota_match(q["match"]),
            money(q["spentUSD"]),
            f"{money(q['limitUSD'])}/{q['period']}",
            _percent(q["percentUsed"]),
            q["state"] or "-",
            str(q["enforcement"]),
            q["periodEnd"] or "-",
        ]
        for q in quotas
    ]
    return _table_in_namespaces(header, cells, quotas, all_namespaces)


def _table_in_namespaces(
    header: list[str],
    cells: list[list[str]],
    rows: Sequence[Mapping[str, Any]],
    all_namespaces: bool,
) -> str:
    """The table, with a NAMESPACE column first when it spans namespaces (kubectl's -A)."""
    if all_namespaces:
        header = ["NAMESPACE", *header]
        cells = [[str(row["namespace"]), *line] for row, line in zip(rows, cells, strict=True)]
    return format_table(header, cells)


def _not_ready(
    routes: Sequence[Mapping[str, Any]], quotas: Sequence[Mapping[str, Any]], all_namespaces: bool
) -> list[str]:
    """One line for each condition that keeps a route from Ready, and each failing quota's."""
    from ..route.status import READY_INPUTS

    def name_of(row: Mapping[str, Any]) -> str:
        return f"{row['namespace']}/{row['name']}" if all_namespaces else str(row["name"])

    problems = []
    for route in routes:
        if route["ready"] == "True":
            continue
        failing = [
            (type_, c)
            for type_, c in route["conditions"].items()
            if type_ in ("Ready", *READY_INPUTS) and c.get("status") != "True"
        ]
        # Ready=False only sums up the others; on its own (waiting for the proxy) it says why.
        failing = [f for f in failing if f[0] != "Ready"] or failing
        if not failing:
            problems.append(f"{name_of(route)}: no status yet (is the operator running?)")
        for type_, condition in failing:
            problems.append(
                f"{name_of(route)}: {type_}={condition.get('status')} ({condition.get('reason')}): "
                f"{condition.get('message')}"
            )
    for quota in quotas:
        for type_, condition in quota["conditions"].items():
            if condition.get("status") != "True":
                problems.append(
                    f"quota {name_of(quota)}: {type_}={condition.get('status')} "
                    f"({condition.get('reason')}): {condition.get('message')}"
                )
    return problems


def status_tables(
    routes: Sequence[Mapping[str, Any]], quotas: Sequence[Mapping[str, Any]], all_namespaces: bool
) -> str:
    """The table output of `status`: routes, then quotas, then what keeps routes from Ready."""
    parts = [_routes_table(routes, all_namespaces) if routes else "No LLMRoutes found."]
    if quotas:
        parts.append(_quotas_table(quotas, all_namespaces))
    problems = _not_ready(routes, quotas, all_namespaces)
    if problems:
        parts.append("\n".join(problems))
    return "\n\n".join(parts)


@click.command()
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
    from ..api import QUOTA_PLURAL, ROUTE_PLURAL

    cluster, scope = connect_scoped(kubeconfig, context, namespace, all_namespaces)
    where = f"namespace {scope}" if scope else "all namespaces"
    with api_errors(f"listing LLMRoutes in {where}"):
        routes = list_objects(cluster.api, ROUTE_PLURAL, scope)
    with api_errors(f"listing ModelQuotas in {where}"):
        quotas = list_objects(cluster.api, QUOTA_PLURAL, scope)
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
    echo_output(
        {"routes": route_rows, "quotas": quota_rows},
        output,
        status_tables(route_rows, quota_rows, all_namespaces),
    )
