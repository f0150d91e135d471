"""The chart's dashboard and alert rules, answered by a real Prometheus.

Two routes serve traffic through the real litellm proxies (successes, a failover inside a
model's chain, a fallback to another model, failures; two callers, two tasks). A real
Prometheus (localcluster.prometheus) discovers the proxy pods through the API server and
scrapes them at their pod addresses, and scrapes the operator's own metrics. After two scrapes
every query of every panel of charts/llmroute/dashboards/llmroute.json, template variables
resolved as Grafana resolves them, must answer with the label sets the panel shows; and the
chart's budget alerts must fire for a quota past its limits.

With LLMROUTE_DASHBOARD_DATA=PATH the panels' series over the run are written to PATH, the
input of `python hack/dashboard-png.py` (docs/operations.md).
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest
from kubernetes import client

from built_tools import require_tools
from llmroute.api import GROUP, QUOTA_PLURAL, ROUTE_PLURAL, VERSION
from localcluster import Behaviour, FakeAnthropic, FakeOpenAI, ProcessRunner, wait_for
from localcluster import prometheus as local_prometheus
from localcluster.tools import REPO_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]

DASHBOARD = REPO_ROOT / "charts/llmroute/dashboards/llmroute.json"
CALLERS = {"billing": "summarize", "support": "triage"}  # caller -> the task it tags
# FakeOpenAI answers 10 prompt + 5 completion tokens: at 1000 / 2000 USD per million tokens
# a request costs 0.02 USD. Four requests to `quick` (two waves, two callers) spend the budget.
PRICING = {"inputPerMillionUSD": 1000, "outputPerMillionUSD": 2000}
BUDGET_USD = 0.08
SCRAPE_INTERVAL = "5s"
# What Grafana would put for $__rate_interval and $__range on a short dashboard range.
RATE_INTERVAL = "1m"
RANGE = "10m"


def target(provider: str, model: str, url: str, key: str) -> dict[str, Any]:
    return {
        "provider": provider,
        "model": model,
        "apiBase": url,
        "apiKeySecretRef": {"name": "provider-keys", "key": key},
        "pricing": PRICING,
    }


@dataclass
class Observed:
    namespace: str
    prometheus: local_prometheus.LocalPrometheus
    urls: dict[str, str]  # route -> proxy URL
    caller_keys: dict[str, str]
    quota: str
    started: float
    failures: list[str] = field(default_factory=list)


def _routes(ok: FakeOpenAI, broken: FakeOpenAI, broken_anthropic: FakeAnthropic) -> list[dict]:
    callers = [
        {"name": name, "keySecretRef": {"name": "caller-keys", "key": name}, "tags": [task]}
        for name, task in CALLERS.items()
    ]
    common = {"tasks": sorted(CALLERS.values()), "auth": {"callers": callers}}
    router = {"timeoutSeconds": 5, "cooldownSeconds": 1, "allowedFails": 100}
    alpha = {
        "models": [
            {
                # The first target fails: the request fails over to the second.
                "name": "smart",
                "targets": [
                    target("openai", "gpt-4", broken.url, "openai"),
                    target("openai", "gpt-4o-mini", ok.url, "openai"),
                ],
            },
            {
                # Its only target fails: the request falls back to the model `smart`.
                "name": "primary",
                "targets": [
                    target("anthropic", "claude-sonnet-4-5", broken_anthropic.url, "anthropic")
                ],
                "fallbacks": ["smart"],
            },
            {
                # Fails with nothing to fall back to: the client gets the error.
                "name": "doomed",
                "targets": [target("openai", "o1", broken.url, "openai")],
            },
        ],
        "router": router,
        **common,
    }
    beta = {
        "models": [
            {"name": "quick", "targets": [target("openai", "gpt-4o-mini", ok.url, "openai")]}
        ],
        "router": router,
        **common,
    }
    return [
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LLMRoute", "metadata": {"name": n}, "spec": s}
        for n, s in (("alpha", alpha), ("beta", beta))
    ]


@pytest.fixture(scope="module")
def observed(cluster, api, operator, tmp_path_factory) -> Iterator[Observed]:
    require_tools("prometheus")
    workdir = tmp_path_factory.mktemp("observability")
    fakes = [
        FakeOpenAI(name="fake-ok"),
        FakeOpenAI(name="fake-broken", behaviour=Behaviour.ERROR500),
        FakeAnthropic(name="fake-broken-anthropic", behaviour=Behaviour.ERROR500),
    ]
    for fake in fakes:
        fake.start()
    namespace = f"obs-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    core.create_namespace({"metadata": {"name": namespace}})
    caller_keys = {name: f"sk-caller-{name}-{uuid.uuid4().hex[:8]}" for name in CALLERS}
    for name, data in (
        ("provider-keys", {"openai": "sk-openai-obs", "anthropic": "sk-anthropic-obs"}),
        ("caller-keys", caller_keys),
    ):
        core.create_namespaced_secret(namespace, {"metadata": {"name": name}, "stringData": data})
    for route in _routes(*fakes):
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, ROUTE_PLURAL, route)
    quota = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelQuota",
        "metadata": {"name": "beta-budget"},
        "spec": {
            "routeRef": {"name": "beta"},
            "match": {"model": "gpt-4o-mini"},
            "budget": {"limitUSD": BUDGET_USD, "period": "daily", "softLimitPercent": 50},
            # Counted and alerted on, routing unchanged: the last requests still get through.
            "enforcement": "shadow",
        },
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, QUOTA_PLURAL, quota)
    runner = ProcessRunner(api_client=cluster.api_client(), namespace=namespace)
    runner.start()
    prometheus = local_prometheus.LocalPrometheus(
        cluster.kubeconfig,
        workdir / "prometheus",
        [operator.metrics_address],
        interval=SCRAPE_INTERVAL,
        rule_files=[local_prometheus.CHART_RULES],
    )
    try:
        urls = {}
        for route in ("alpha", "beta"):
            pod = wait_for(
                lambda route=route: next(
                    iter(
                        core.list_namespaced_pod(
                            namespace,
                            label_selector=f"llmroute.dev/route={route},"
                            "app.kubernetes.io/component=proxy",
                        ).items
                    ),
                    None,
                ),
                timeout=120,
                what=f"a proxy pod of {route}",
            )
            served = runner.wait_serving(pod.metadata.name, timeout=240, namespace=namespace)
            urls[route] = served.url
        prometheus.start()
        yield Observed(
            namespace=namespace,
            prometheus=prometheus,
            urls=urls,
            caller_keys=caller_keys,
            quota="beta-budget",
            started=time.time(),
        )
    finally:
        prometheus.stop()
        runner.stop()
        for fake in fakes:
            fake.stop()
        core.delete_namespace(namespace)


def _wave(observed: Observed) -> None:
    """Each caller, tagging its task: two successes after a failover, a fallback to another
    model and a failure on alpha, one request on beta."""
    for caller, task in CALLERS.items():
        extra = {"metadata": {"tags": [f"task:{task}"]}}
        for route, model, fails in (
            ("alpha", "smart", False),
            ("alpha", "smart", False),
            ("alpha", "primary", False),
            ("alpha", "doomed", True),
            ("beta", "quick", False),
        ):
            gateway = openai.OpenAI(
                base_url=f"{observed.urls[route]}/v1",
                api_key=observed.caller_keys[caller],
                max_retries=0,
                timeout=60,
            )
            messages = [{"role": "user", "content": "Hello"}]
            if fails:
                with pytest.raises(openai.APIStatusError):
                    gateway.chat.completions.create(
                        model=model, messages=messages, extra_body=extra
                    )
            else:
                reply = gateway.chat.completions.create(
                    model=model, messages=messages, extra_body=extra
                )
                assert reply.choices[0].message.content


def _every_target_scraped_after(observed: Observed, moment: float) -> None:
    """Both proxies and the operator up, each scraped after `moment`."""
    mine = f'up{{namespace="{observed.namespace}"}} or up{{job="{local_prometheus.OPERATOR_JOB}"}}'

    def scraped() -> bool:
        samples = observed.prometheus.query(f"timestamp({mine})")
        up = observed.prometheus.query(f"({mine}) == 1")
        return len(up) == len(samples) == len(observed.urls) + 1 and all(
            float(s["value"][1]) > moment for s in samples
        )

    wait_for(scraped, timeout=120, interval=1, what=f"every target scraped after {moment}")


@pytest.fixture(scope="module")
def scraped_traffic(observed: Observed) -> Observed:
    """Two waves of traffic, each followed by a scrape of every target: counters have two
    samples, and rates are above zero."""
    for _ in range(2):
        _wave(observed)
        _every_target_scraped_after(observed, time.time())
    return observed


# -- the dashboard --------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _variable(name: str) -> dict[str, Any]:
    (variable,) = [v for v in dashboard()["templating"]["list"] if v["name"] == name]
    return variable


def label_values(prometheus, definition: str) -> list[str]:
    """Grafana's label_values(metric, label) against the Prometheus HTTP API."""
    match = re.fullmatch(r"label_values\((.+), *([a-z_]+)\)", definition)
    assert match, definition
    return prometheus.api(f"label/{match[2]}/values", **{"match[]": match[1]})


def resolve_variables(observed: Observed) -> dict[str, list[str]]:
    """Each query variable's values, as Grafana's variable queries find them."""
    prometheus = observed.prometheus
    namespaces = label_values(prometheus, _variable("namespace")["definition"])
    assert observed.namespace in namespaces
    route_query = _variable("route")["definition"].replace("$namespace", observed.namespace)
    routes = label_values(prometheus, route_query)
    task_variable = _variable("task")
    metric = re.fullmatch(r"label_names\((.+)\)", task_variable["definition"])
    assert metric
    names = prometheus.api("labels", **{"match[]": metric[1]})
    regex = task_variable["regex"].strip("/")
    tasks = [m[1] for n in names if (m := re.fullmatch(regex, n))]
    return {"namespace": [observed.namespace], "route": routes, "task": tasks}


def substitute(expr: str, values: dict[str, str]) -> str:
    expr = expr.replace("$__rate_interval", RATE_INTERVAL).replace("$__range", RANGE)
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(f"${name}", values[name])
    assert "$" not in expr.replace('"$1"', ""), expr
    return expr


def panel_queries(observed: Observed) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(panel title, PromQL, target) for every target of every panel, a repeated panel once
    per value of its variable."""
    variables = resolve_variables(observed)
    values = {"namespace": observed.namespace, "route": "|".join(variables["route"])}
    for panel in dashboard()["panels"]:
        repeat = panel.get("repeat")
        for value in variables[repeat] if repeat else [None]:
            bound = {**values, **({repeat: value} if repeat else {})}
            title = substitute(panel["title"], bound)
            for query in panel["targets"]:
                yield title, substitute(query["expr"], bound), query


# The label values each panel must show (at least these), given the traffic of _wave.
EXPECTED: dict[str, dict[str, set[str]]] = {
    # A request that fell back from `primary` counts under the model that answered it.
    "Requests by model": {"requested_model": {"smart", "doomed", "quick"}},
    "Requests by provider": {"api_provider": {"openai"}},
    "Latency by model (p50, p95)": {"model_group": {"smart", "quick"}},
    "Failed requests by model": {"requested_model": {"doomed"}},
    "Upstream failures by provider": {"api_provider": {"openai", "anthropic"}},
    "Spend by model": {"requested_model": {"smart", "quick"}},
    "Spend by provider": {"api_provider": {"openai"}},
    "Spend in the time range by provider and model": {"api_provider": {"openai"}},
    "Spend vs budget per ModelQuota": {"quota": {"beta-budget"}},
    "Fallbacks taken per model": {"requested_model": {"primary"}, "fallback_model": {"smart"}},
    "Spend by caller": {"api_key_alias": set(CALLERS)},
    "Spend for task summarize": {"requested_model": {"smart", "quick"}},
    "Spend for task triage": {"requested_model": {"smart", "quick"}},
}


def test_template_variables_find_the_routes_and_tasks(scraped_traffic: Observed) -> None:
    variables = resolve_variables(scraped_traffic)
    assert {"alpha", "beta"} <= set(variables["route"])
    assert sorted(variables["task"]) == sorted(CALLERS.values())


def test_every_panel_answers_with_its_labels(scraped_traffic: Observed) -> None:
    answered: dict[str, list[dict[str, Any]]] = {}
    problems = []
    for title, expr, query in panel_queries(scraped_traffic):
        result = scraped_traffic.prometheus.query(expr)
        legend_labels = set(re.findall(r"\{\{(\w+)\}\}", query["legendFormat"]))
        if not result:
            problems.append(f"{title}: no series for {expr}")
            continue
        for series in result:
            if set(series["metric"]) != legend_labels:
                problems.append(f"{title}: labels {sorted(series['metric'])} for {expr}")
        answered.setdefault(title, []).extend(result)
    assert not problems, "\n".join(problems)
    assert set(answered) == set(EXPECTED), "every panel checked, no panel unchecked"
    for title, expected in EXPECTED.items():
        for label, values in expected.items():
            seen = {s["metric"].get(label) for s in answered[title]}
            assert values <= seen, f"{title}: {label} {sorted(values - seen)} missing"
    spent = {
        s["metric"]["quota"]: float(s["value"][1])
        for s in answered["Spend vs budget per ModelQuota"]
    }
    assert spent[scraped_traffic.quota] > 0
    _write_panel_data(scraped_traffic)


def _write_panel_data(observed: Observed) -> None:
    """The panels' series over the run, for hack/dashboard-png.py."""
    path = os.environ.get("LLMROUTE_DASHBOARD_DATA")
    if not path:
        return
    panels = []
    end = time.time()
    for title, expr, query in panel_queries(observed):
        data = observed.prometheus.api(
            "query_range", query=expr, start=str(observed.started), end=str(end), step="5"
        )
        panels.append({"title": title, "expr": expr, "legend": query["legendFormat"], **data})
    Path(path).write_text(json.dumps({"panels": panels}, indent=1))


# -- the operator's own metrics and the alert rules ------------------------------------


def test_operator_metrics_reach_prometheus(scraped_traffic: Observed) -> None:
    prometheus = scraped_traffic.prometheus
    selector = f'namespace="{scraped_traffic.namespace}"'
    ready = prometheus.query(f'llmroute_route_condition{{{selector}, condition="Ready"}} == 1')
    assert {(s["metric"]["route"], s["metric"]["status"]) for s in ready} == {
        ("alpha", "True"),
        ("beta", "True"),
    }
    kinds = {s["metric"]["kind"] for s in prometheus.query("llmroute_reconciles_total > 0")}
    assert {"LLMRoute", "ModelQuota"} <= kinds
    assert prometheus.query("llmroute_reconcile_duration_seconds_count > 0")


def test_budget_alerts_fire_for_a_spent_quota(scraped_traffic: Observed, api) -> None:
    custom = client.CustomObjectsApi(api)
    wait_for(
        lambda: (
            custom.get_namespaced_custom_object(
                GROUP, VERSION, scraped_traffic.namespace, QUOTA_PLURAL, scraped_traffic.quota
            )
            .get("status", {})
            .get("spentUSD", 0)
            >= BUDGET_USD - 1e-9
        ),
        timeout=120,
        interval=1,
        what="the quota's ledger holding the whole budget",
    )

    def firing() -> set[str]:
        return {
            a["labels"]["alertname"]
            for a in scraped_traffic.prometheus.alerts()
            if a["state"] == "firing"
            and a["labels"].get("quota") == scraped_traffic.quota
            and a["labels"].get("namespace") == scraped_traffic.namespace
        }

    wait_for(
        lambda: {"LLMRouteBudgetSoftLimit", "LLMRouteBudgetNearlyExhausted"} <= firing(),
        timeout=120,
        interval=1,
        what="the budget alerts firing",
    )
