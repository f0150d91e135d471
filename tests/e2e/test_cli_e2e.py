"""`llmroute status` and `llmroute usage` against the real control plane.

The operator runs as a separate process (the `operator` fixture). status reads what it wrote
into the routes' and quotas' status; usage reads the counters of a real litellm proxy, which
the process runner starts for the route's pod, after requests through it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from kubernetes import client

from llmroute.api import GROUP, QUOTA_PLURAL, ROUTE_PLURAL, VERSION
from llmroute.cli import main
from llmroute.client import LLMRouteClient
from localcluster import FakeOpenAI, ProcessRunner, wait_for
from manifests import OPENAI_ROUTE, changed

pytestmark = pytest.mark.usefixtures("operator")

CALLER_KEY = "sk-billing-cli-e2e"


def route_manifest(name: str, **spec: Any) -> dict[str, Any]:
    """OPENAI_ROUTE named `name`, its target updated with `target`, its spec with the rest."""
    route = changed(OPENAI_ROUTE, {"metadata.name": name})
    route["spec"]["models"][0]["targets"][0].update(spec.pop("target", {}))
    route["spec"].update(spec)
    return route


def quota_manifest(name: str, route: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelQuota",
        "metadata": {"name": name},
        "spec": {
            "routeRef": {"name": route},
            "match": {"provider": "openai"},
            "budget": {"limitUSD": 25, "period": "daily"},
        },
    }


def llmroute(cluster: Any, *args: str) -> Result:
    result = CliRunner().invoke(main, [*args, "--kubeconfig", str(cluster.kubeconfig)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def create(api: client.ApiClient, namespace: str, plural: str, body: dict[str, Any]) -> None:
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, body
    )


def get(api: client.ApiClient, namespace: str, plural: str, name: str) -> dict[str, Any]:
    return client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, name
    )


def condition_is(obj: dict[str, Any], type_: str, status: str) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c["type"] == type_ and c["status"] == status for c in conditions)


def create_keys(api: client.ApiClient, namespace: str, **keys: str) -> None:
    client.CoreV1Api(api).create_namespaced_secret(
        namespace, {"metadata": {"name": "provider-keys"}, "stringData": keys}
    )


# -- status ---------------------------------------------------------------------------------------


def test_status_json_shows_a_ready_route_and_its_quota(
    cluster, api, namespace, process_runner
) -> None:
    create_keys(api, namespace, openai="sk-openai-cli-e2e")
    create(api, namespace, ROUTE_PLURAL, route_manifest("gateway"))
    create(api, namespace, QUOTA_PLURAL, quota_manifest("openai-daily", "gateway"))
    wait_for(
        lambda: condition_is(get(api, namespace, ROUTE_PLURAL, "gateway"), "Ready", "True"),
        timeout=180,
        what="the route Ready",
    )

    result = llmroute(cluster, "status", "-n", namespace, "-o", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    (route,) = data["routes"]
    assert (route["namespace"], route["name"], route["ready"]) == (namespace, "gateway", "True")
    assert route["conditions"]["ConfigValid"]["status"] == "True"
    assert route["conditions"]["SecretsResolved"]["status"] == "True"
    assert route["conditions"]["ProxyAvailable"]["status"] == "True"
    assert route["endpoint"] == f"http://gateway.{namespace}.svc:4000"
    assert route["models"] == ["smart"]
    assert route["masterKeySecret"] == "gateway-master-key"
    assert route["observedGeneration"] == route["generation"]
    (quota,) = data["quotas"]
    assert (quota["name"], quota["route"], quota["limitUSD"], quota["period"]) == (
        "openai-daily",
        "gateway",
        25,
        "daily",
    )
    assert quota["match"] == {"provider": "openai"}
    assert (quota["action"], quota["enforcement"]) == ("fallback", "enforce")

    # -o yaml carries the same data; ROUTE keeps the route and the quotas that reference it.
    as_yaml = yaml.safe_load(
        llmroute(cluster, "status", "gateway", "-n", namespace, "-o", "yaml").stdout
    )
    assert [r["name"] for r in as_yaml["routes"]] == ["gateway"]
    assert [q["name"] for q in as_yaml["quotas"]] == ["openai-daily"]
    assert as_yaml["routes"][0]["conditions"] == route["conditions"]


def test_status_shows_the_spend_the_operator_accounts(cluster, api, namespace) -> None:
    create_keys(api, namespace, openai="sk-openai-cli-e2e")
    create(api, namespace, ROUTE_PLURAL, route_manifest("gateway"))
    create(api, namespace, QUOTA_PLURAL, quota_manifest("openai-daily", "gateway"))

    def synced() -> dict[str, Any] | None:
        (quota,) = json.loads(llmroute(cluster, "status", "-n", namespace, "-o", "json").stdout)[
            "quotas"
        ]
        return quota if quota["state"] else None

    quota = wait_for(synced, timeout=90, what="the quota's first sync, seen by status")
    assert (quota["state"], quota["spentUSD"], quota["percentUsed"]) == ("Ok", 0, 0)
    assert quota["periodStart"] and quota["periodEnd"]
    table = llmroute(cluster, "status", "-n", namespace).stdout.splitlines()
    header = next(i for i, line in enumerate(table) if line.startswith("QUOTA"))
    assert table[header + 1].split()[:7] == [
        "openai-daily",
        "gateway",
        "provider=openai",
        "$0.00",
        "$25.00/daily",
        "0%",
        "Ok",
    ]


def test_status_table_explains_a_route_that_is_not_ready(cluster, api, namespace) -> None:
    # No provider-keys Secret: the route stays SecretsResolved=False.
    create(api, namespace, ROUTE_PLURAL, route_manifest("lonely"))
    wait_for(
        lambda: condition_is(
            get(api, namespace, ROUTE_PLURAL, "lonely"), "SecretsResolved", "False"
        ),
        timeout=60,
        what="SecretsResolved=False",
    )
    result = llmroute(cluster, "status", "-n", namespace)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["NAME", "READY", "CONFIGVALID", "PROXYAVAILABLE"]
    assert lines[1].split()[:3] == ["lonely", "False", "True"]
    assert any(
        line.startswith("lonely: SecretsResolved=False (SecretNotFound): Secret ")
        and "provider-keys" in line
        for line in lines
    ), result.stdout

    everywhere = llmroute(cluster, "status", "-A", "-o", "json")
    assert everywhere.exit_code == 0, everywhere.output
    assert (namespace, "lonely") in {
        (r["namespace"], r["name"]) for r in json.loads(everywhere.stdout)["routes"]
    }

    missing = llmroute(cluster, "status", "nope", "-n", namespace)
    assert missing.exit_code == 1
    assert "LLMRoute 'nope' not found" in missing.stderr


# -- validate --cluster ---------------------------------------------------------------------------


def test_validate_reads_a_quota_route_from_the_cluster(cluster, api, namespace, tmp_path) -> None:
    create(api, namespace, ROUTE_PLURAL, route_manifest("gateway"))
    quotas = {
        "governs.yaml": quota_manifest("governs", "gateway"),
        "no-route.yaml": quota_manifest("no-route", "elsewhere"),
        "no-match.yaml": changed(
            quota_manifest("no-match", "gateway"), {"spec.match": {"provider": "anthropic"}}
        ),
    }
    for file_name, quota in quotas.items():
        quota["metadata"]["namespace"] = namespace
        (tmp_path / file_name).write_text(yaml.safe_dump(quota))

    def validate(file_name: str) -> Result:
        return llmroute(cluster, "validate", "--cluster", "-f", str(tmp_path / file_name))

    valid = validate("governs.yaml")
    assert (valid.exit_code, valid.stdout, valid.stderr) == (0, "ModelQuota/governs: valid\n", "")
    no_route = validate("no-route.yaml")
    assert no_route.exit_code == 1
    assert no_route.stderr == (
        'ModelQuota/no-route: spec.routeRef.name: no LLMRoute "elsewhere" in namespace '
        f'"{namespace}" in the given files or in the cluster\n'
    )
    no_match = validate("no-match.yaml")
    assert no_match.exit_code == 1
    assert no_match.stderr == (
        'ModelQuota/no-match: spec.match: matches no target of LLMRoute "gateway" '
        "(in the cluster)\n"
    )


# -- usage ----------------------------------------------------------------------------------------


@dataclass
class ServedRoute:
    namespace: str
    url: str
    master_key: str


@pytest.fixture
def served_route(cluster, api, namespace) -> Iterator[ServedRoute]:
    """A route with one caller and one task, its real proxy serving at its pod IP."""
    upstream = FakeOpenAI(name="fake-openai")
    upstream.start()
    core = client.CoreV1Api(api)
    create_keys(api, namespace, openai="sk-openai-cli-e2e")
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "caller-keys"}, "stringData": {"billing": CALLER_KEY}}
    )
    route = route_manifest(
        "gw",
        target={"apiBase": upstream.url},
        tasks=["summarize"],
        auth={
            "callers": [
                {
                    "name": "billing",
                    "keySecretRef": {"name": "caller-keys", "key": "billing"},
                    "tags": ["summarize"],
                }
            ]
        },
    )
    create(api, namespace, ROUTE_PLURAL, route)
    runner = ProcessRunner(api_client=cluster.api_client(), namespace=namespace)
    runner.start()
    try:
        pod = wait_for(
            lambda: next(
                iter(
                    core.list_namespaced_pod(
                        namespace, label_selector="llmroute.dev/route=gw"
                    ).items
                ),
                None,
            ),
            timeout=90,
            what="a proxy pod",
        )
        served = runner.wait_serving(pod.metadata.name, timeout=180, namespace=namespace)
        secret = core.read_namespaced_secret("gw-master-key", namespace)
        yield ServedRoute(
            namespace=namespace,
            url=served.url,
            master_key=base64.b64decode(secret.data["masterKey"]).decode(),
        )
    finally:
        runner.stop()
        upstream.stop()


def test_usage_by_caller_and_task_from_the_proxy_counters(cluster, served_route) -> None:
    gateway = LLMRouteClient(served_route.url, served_route.master_key, max_retries=0)
    billing = LLMRouteClient(served_route.url, CALLER_KEY, max_retries=0)
    gateway.chat("smart", "Hello")
    billing.chat("smart", "Summarise: the quarter went well.", task="summarize")
    billing.chat("smart", "Summarise: the release is on time.", task="summarize")

    def usage(*args: str) -> dict[str, Any]:
        result = llmroute(cluster, "usage", "-n", served_route.namespace, "--via", "direct", *args)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def counted() -> dict[str, Any] | None:
        data = usage("-o", "json")
        return data if sum(r["requests"] for r in data["rows"]) >= 3 else None

    data = wait_for(counted, timeout=30, what="the three requests counted")
    assert data["unanswered"] == []
    by_key = {(r["caller"], r["task"]): r for r in data["rows"]}
    assert set(by_key) == {("_master", ""), ("billing", "summarize")}
    assert by_key[("billing", "summarize")]["requests"] == 2
    assert by_key[("billing", "summarize")]["inputTokens"] > 0
    assert by_key[("_master", "")]["requests"] == 1
    row = by_key[("billing", "summarize")]
    assert (row["namespace"], row["route"], row["model"], row["target"]) == (
        served_route.namespace,
        "gw",
        "smart",
        "openai/gpt-4",
    )
    assert row["spendUSD"] > 0  # openai/gpt-4 is in LiteLLM's price map

    by_caller = usage("--by", "caller", "-o", "json")["rows"]
    assert {r["caller"]: r["requests"] for r in by_caller} == {"_master": 1, "billing": 2}
    assert set(by_caller[0]) == {"caller", "requests", "inputTokens", "outputTokens", "spendUSD"}

    namespace = served_route.namespace
    table = llmroute(
        cluster, "usage", "-n", namespace, "--via", "direct", "--route", "gw", "--by", "model"
    )
    assert table.exit_code == 0, table.output
    header, model_row = table.stdout.splitlines()
    assert header.split()[:2] == ["MODEL", "REQUESTS"]
    assert model_row.split()[:2] == ["smart", "3"]

    missing = llmroute(cluster, "usage", "-n", served_route.namespace, "--route", "nope")
    assert missing.exit_code == 1
    assert "LLMRoute 'nope' not found" in missing.stderr
