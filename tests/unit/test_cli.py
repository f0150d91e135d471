"""The `llmroute` command, offline parts and output formatting (click's CliRunner).

status and usage against a real control plane are in tests/e2e/test_cli_e2e.py.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from llmroute.cli import main
from llmroute.cli.status import quota_status, route_status, status_tables
from llmroute.cli.tables import age, format_table, money
from llmroute.cli.usage import group_usage, usage_table
from llmroute.quota.counters import Usage
from llmroute.quota.usage import UsageRow
from manifests import OLD_RENDER_PLACEHOLDER, render_manifest
from manifests import OPENAI_ROUTE as ROUTE

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))
ROUTE_EXAMPLES = [
    p
    for p in EXAMPLES
    if any(d and d["kind"] == "LLMRoute" for d in yaml.safe_load_all(p.read_text()))
]
NOW = dt.datetime(2026, 11, 20, 12, 0, 0, tzinfo=dt.UTC)

QUOTA: dict[str, Any] = {
    "apiVersion": "llmroute.dev/v1alpha1",
    "kind": "ModelQuota",
    "metadata": {"name": "gpt4-daily"},
    "spec": {
        "routeRef": {"name": "gateway"},
        "match": {"provider": "openai"},
        "budget": {"limitUSD": 20, "period": "daily"},
        "rpm": 40,
    },
}


def invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input)


def write(tmp_path: Path, *docs: Any, name: str = "manifests.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return str(path)


def broken(route: dict[str, Any]) -> dict[str, Any]:
    route = copy.deepcopy(route)
    route["spec"]["models"][0]["fallbacks"] = ["cheep"]
    return route


# -- help -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ([], ["render", "validate", "status", "usage", "run"]),
        (
            ["render"],
            ["--format [k8s|compose]", "-n, --namespace", "docker compose", "Exit status"],
        ),
        (
            ["validate"],
            ["-f, --filename FILE", "Exit status", "naming the field", "--check-litellm"],
        ),
        (
            ["status"],
            ["[ROUTE]", "-A, --all-namespaces", "-o, --output [table|yaml|json]", "--kubeconfig"],
        ),
        (["usage"], ["--route", "--by", "--via [auto|apiserver|direct]", "_master"]),
        (["run"], ["--peering", "--liveness", "--metrics"]),
    ],
)
def test_help_describes_each_command(command: list[str], expected: list[str]) -> None:
    for flag in ("--help", "-h"):
        result = invoke(*command, flag)
        assert result.exit_code == 0, result.output
        for text in expected:
            assert text in result.output


@pytest.mark.parametrize(
    "command",
    [["--help"], ["validate", "-f", str(REPO_ROOT / "examples/smart-chain.yaml")]],
    ids=["help", "validate"],
)
def test_commands_without_a_cluster_do_not_import_litellm_kopf_or_kubernetes(
    command: list[str],
) -> None:
    # A fresh interpreter: this one has imported them for other tests.
    script = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from llmroute.cli import main\n"
        f"result = CliRunner().invoke(main, {command!r})\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in ('litellm', 'kopf', 'kubernetes') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- render ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("example", ROUTE_EXAMPLES, ids=lambda p: p.stem)
def test_render_k8s_prints_what_render_route_returns(example: Path) -> None:
    result = invoke("render", "-f", str(example), "-n", "team-a")
    assert result.exit_code == 0, result.stderr
    printed = list(yaml.safe_load_all(result.stdout))
    (route,) = [d for d in yaml.safe_load_all(example.read_text()) if d["kind"] == "LLMRoute"]
    route["metadata"]["namespace"] = "team-a"
    rendered = render_manifest(route)
    assert printed == rendered.objects
    assert {o["metadata"]["namespace"] for o in printed} == {"team-a"}
    kinds = [o["kind"] for o in printed]
    assert {"ConfigMap", "Service", "Deployment", "NetworkPolicy"} <= set(kinds)


def test_render_admits_the_operator_only_from_the_namespace_it_is_told() -> None:
    # As the operator renders them: without a namespace, no operator pod is admitted.
    example = str(REPO_ROOT / "examples/smart-chain.yaml")

    def operator_selectors(*args: str) -> list[dict]:
        result = invoke("render", "-f", example, *args)
        assert result.exit_code == 0, result.stderr
        policy = next(o for o in yaml.safe_load_all(result.stdout) if o["kind"] == "NetworkPolicy")
        return [
            peer["namespaceSelector"]
            for rule in policy["spec"]["ingress"]
            for peer in rule["from"]
            if peer.get("podSelector")
            == {"matchLabels": {"app.kubernetes.io/name": "llmroute-operator"}}
        ]

    assert operator_selectors() == []
    assert operator_selectors("--operator-namespace", "llmroute-system") == [
        {"matchLabels": {"kubernetes.io/metadata.name": "llmroute-system"}}
    ]


@pytest.mark.parametrize("example", ROUTE_EXAMPLES, ids=lambda p: p.stem)
def test_render_k8s_prints_no_secret(example: Path) -> None:
    # Applied as it is, the output holds no key: the operator creates the generated master-key
    # Secret with a random key (it used to be printed with a fixed, public value).
    result = invoke("render", "-f", str(example))
    assert result.exit_code == 0, result.stderr
    assert "Secret" not in [d["kind"] for d in yaml.safe_load_all(result.stdout)]
    assert OLD_RENDER_PLACEHOLDER not in result.stdout


def test_render_k8s_prints_long_strings_as_literal_blocks() -> None:
    result = invoke("render", "-f", str(REPO_ROOT / "examples/smart-chain.yaml"))
    assert "config.yaml: |" in result.stdout


@pytest.mark.parametrize("example", ROUTE_EXAMPLES, ids=lambda p: p.stem)
def test_render_compose_prints_a_compose_file(example: Path) -> None:
    result = invoke("render", "-f", str(example), "--format", "compose")
    assert result.exit_code == 0, result.stderr
    header = [line for line in result.stdout.splitlines() if line.startswith("#")]
    assert "LLMROUTE_MASTER_KEY" in "\n".join(header)
    document = yaml.safe_load(result.stdout)
    assert document["services"]["litellm"]["ports"] == ["127.0.0.1:4000:4000"]
    assert set(document["configs"]) == {
        "config.yaml",
        "llmroute_auth.py",
        "llmroute_auth.json",
        "llmroute_stream_usage.py",
        "llmroute_quota_routing.py",
        "llmroute_quota.json",
        "llmroute_file_reread.py",
        "llmroute_proxy_workers.py",
    }


def test_render_compose_lists_every_variable_in_its_header() -> None:
    result = invoke(
        "render", "-f", str(REPO_ROOT / "examples/smart-chain.yaml"), "--format", "compose"
    )
    header = "\n".join(line for line in result.stdout.splitlines() if line.startswith("#"))
    for variable in (
        "ANTHROPIC_API_KEY",
        "OPENAI_API_KEY",
        "LLMROUTE_MASTER_KEY",
        "LLMROUTE_CALLER_BILLING",
        "LLMROUTE_CALLER_SUPPORT_BOT",
    ):
        assert variable in header
    assert "docker compose -f FILE up -d" in header


def test_render_applies_the_quotas_of_the_same_files(tmp_path: Path) -> None:
    alone = invoke("render", "-f", write(tmp_path, ROUTE))
    route_file = write(tmp_path, ROUTE, name="route.yaml")
    together = invoke("render", "-f", route_file, "-f", write(tmp_path, QUOTA, name="quota.yaml"))
    assert alone.exit_code == together.exit_code == 0

    def params(result: Result) -> dict[str, Any]:
        config_map = next(d for d in yaml.safe_load_all(result.stdout) if d["kind"] == "ConfigMap")
        return yaml.safe_load(config_map["data"]["config.yaml"])["model_list"][0]["litellm_params"]

    assert "rpm" not in params(alone)
    assert params(together)["rpm"] >= 1


def test_render_without_a_route_says_so(tmp_path: Path) -> None:
    result = invoke("render", "-f", str(REPO_ROOT / "examples/monthly-budget.yaml"))
    assert result.exit_code == 1
    assert "no LLMRoute in" in result.stderr
    assert result.stdout == ""


def test_render_of_an_invalid_route_names_the_field_and_prints_nothing(tmp_path: Path) -> None:
    for output_format in ("k8s", "compose"):
        result = invoke("render", "-f", write(tmp_path, broken(ROUTE)), "--format", output_format)
        assert result.exit_code == 1
        assert "LLMRoute/gateway: spec.models[0].fallbacks[0]:" in result.stderr
        assert result.stdout == ""


def test_render_compose_wants_one_route(tmp_path: Path) -> None:
    other = copy.deepcopy(ROUTE)
    other["metadata"]["name"] = "other"
    path = write(tmp_path, ROUTE, other)
    result = invoke("render", "-f", path, "--format", "compose")
    assert result.exit_code == 1
    assert "--route NAME" in result.stderr
    chosen = invoke("render", "-f", path, "--format", "compose", "--route", "other")
    assert chosen.exit_code == 0, chosen.stderr
    assert yaml.safe_load(chosen.stdout)["name"] == "other"
    # k8s renders both, or the one asked for.
    both = yaml.safe_load_all(invoke("render", "-f", path).stdout)
    assert {d["metadata"]["labels"]["llmroute.dev/route"] for d in both} == {"gateway", "other"}
    assert invoke("render", "-f", path, "--route", "nope").exit_code == 1


def test_render_reads_stdin() -> None:
    result = invoke("render", "-f", "-", input=yaml.safe_dump(ROUTE))
    assert result.exit_code == 0, result.stderr
    assert any(d["kind"] == "Deployment" for d in yaml.safe_load_all(result.stdout))


# -- validate -------------------------------------------------------------------------------------


def test_validate_accepts_the_examples() -> None:
    # As a directory: a quota's route is in another file (smart-chain.yaml, monthly-budget.yaml).
    result = invoke("validate", "-f", str(REPO_ROOT / "examples"))
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    for example in EXAMPLES:
        for doc in yaml.safe_load_all(example.read_text()):
            if doc:
                assert f"{example}: {doc['kind']}/{doc['metadata']['name']}: valid" in (
                    result.stdout.splitlines()
                )


def test_validate_one_invalid_document_of_several_fails_naming_the_field(tmp_path: Path) -> None:
    bad_quota = copy.deepcopy(QUOTA)
    bad_quota["metadata"]["name"] = "bad-quota"
    bad_quota["spec"]["budget"]["period"] = "hourly"
    path = write(
        tmp_path, ROUTE, broken(ROUTE) | {"metadata": {"name": "broken"}}, QUOTA, bad_quota
    )
    result = invoke("validate", "-f", path)
    assert result.exit_code == 1
    assert "LLMRoute/gateway: valid" in result.stdout
    assert "ModelQuota/gpt4-daily: valid" in result.stdout
    errors = result.stderr.splitlines()
    assert errors == [
        'LLMRoute/broken: spec.models[0].fallbacks[0]: names no model of this route ("cheep")',
        'ModelQuota/bad-quota: spec.budget.period: Unsupported value: "hourly": supported values: '
        '"daily", "weekly", "monthly"',
    ]


def test_validate_reports_what_the_renderer_refuses(tmp_path: Path) -> None:
    route = copy.deepcopy(ROUTE)
    # The schema allows any subset; LiteLLM can only fall back on these three together.
    route["spec"]["router"] = {"fallbackOn": ["errors"]}
    result = invoke("validate", "-f", write(tmp_path, route))
    assert result.exit_code == 1
    assert result.stderr.startswith("LLMRoute/gateway: spec.router.fallbackOn: ")


def test_validate_can_load_the_rendered_config_in_litellm() -> None:
    result = invoke(
        "validate", "--check-litellm", "-f", str(REPO_ROOT / "examples/smart-chain.yaml")
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "LLMRoute/gateway: valid\n"


def test_validate_names_files_when_there_are_several(tmp_path: Path) -> None:
    good = write(tmp_path, ROUTE, name="good.yaml")
    bad = write(tmp_path, broken(ROUTE), name="bad.yaml")
    result = invoke("validate", "-f", good, "-f", bad)
    assert result.exit_code == 1
    assert f"{good}: LLMRoute/gateway: valid" in result.stdout
    assert result.stderr.startswith(f"{bad}: LLMRoute/gateway: spec.models[0].fallbacks[0]:")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: LLMRoute\n  bad: [", "not valid YAML"),
        ("", "no manifests in"),
        ("apiVersion: v1\nkind: Secret\nmetadata: {name: x}\n", "kind: must be one of"),
        ("just text\n", "a manifest must be a mapping"),
    ],
)
def test_validate_refuses_what_is_not_a_manifest(text: str, message: str) -> None:
    result = invoke("validate", "-f", "-", input=text)
    assert result.exit_code == 1
    assert message in result.stderr


def test_validate_reads_a_directory_and_with_r_its_subdirectories(tmp_path: Path) -> None:
    write(tmp_path, ROUTE, name="route.yaml")
    (tmp_path / "quotas").mkdir()
    write(tmp_path / "quotas", QUOTA, name="quota.yml")
    (tmp_path / "notes.txt").write_text("not a manifest")
    flat = invoke("validate", "-f", str(tmp_path))
    # Without -R the quota's file is not read; the route alone is valid.
    assert (flat.exit_code, flat.stdout) == (0, "LLMRoute/gateway: valid\n")
    deep = invoke("validate", "-R", "-f", str(tmp_path))
    assert deep.exit_code == 0, deep.stderr
    assert f"{tmp_path}/quotas/quota.yml: ModelQuota/gpt4-daily: valid" in deep.stdout
    assert invoke("validate", "-f", str(tmp_path / "quotas")).exit_code == 1  # no route


def test_a_directory_without_manifests_is_an_error(tmp_path: Path) -> None:
    result = invoke("validate", "-f", str(tmp_path))
    assert result.exit_code == 1
    assert f"no manifest files (.yaml, .yml, .json) in {tmp_path}" in result.stderr


@pytest.mark.parametrize("command", ["validate", "render"])
def test_a_file_that_is_not_utf8_is_an_error_not_a_traceback(tmp_path: Path, command: str) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(yaml.safe_dump(ROUTE).encode() + b"# caf\xe9\n")
    result = invoke(command, "-f", str(path))
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert f"{path}: not UTF-8 text" in result.stderr


def test_duplicate_keys_are_refused_like_kubectl_does(tmp_path: Path) -> None:
    text = yaml.safe_dump(ROUTE) + "kind: ModelQuota\n"
    result = invoke("validate", "-f", "-", input=text)
    assert result.exit_code == 1
    assert 'duplicate key "kind"' in result.stderr


def test_a_quota_must_reference_a_route_of_the_files(tmp_path: Path) -> None:
    result = invoke("validate", "-f", write(tmp_path, QUOTA))
    assert result.exit_code == 1
    assert result.stderr == (
        'ModelQuota/gpt4-daily: spec.routeRef.name: no LLMRoute "gateway" in namespace '
        '"default" in the given files (add its file with -f, or check the cluster with '
        "--cluster)\n"
    )
    elsewhere = copy.deepcopy(ROUTE) | {"metadata": {"name": "gateway", "namespace": "prod"}}
    assert invoke("validate", "-f", write(tmp_path, elsewhere, QUOTA)).exit_code == 1


def test_a_quota_must_match_a_target_of_its_route(tmp_path: Path) -> None:
    quota = copy.deepcopy(QUOTA)
    quota["spec"]["match"] = {"provider": "anthropic"}
    result = invoke("validate", "-f", write(tmp_path, ROUTE, quota))
    assert result.exit_code == 1
    assert result.stderr == (
        'ModelQuota/gpt4-daily: spec.match: matches no target of LLMRoute "gateway"\n'
    )


def test_a_quota_must_name_a_caller_and_task_its_route_declares(tmp_path: Path) -> None:
    route = copy.deepcopy(ROUTE)
    route["spec"]["tasks"] = ["summarize"]
    route["spec"]["auth"] = {
        "callers": [{"name": "billing", "keySecretRef": {"name": "keys", "key": "billing"}}]
    }
    quota = copy.deepcopy(QUOTA)
    del quota["spec"]["rpm"]
    quota["spec"]["action"] = "reject"
    quota["spec"]["match"] = {"caller": "billing", "tag": "summarize"}
    assert invoke("validate", "-f", write(tmp_path, route, quota)).exit_code == 0
    quota["spec"]["match"] = {"caller": "support"}
    result = invoke("validate", "-f", write(tmp_path, route, quota))
    assert result.exit_code == 1
    assert result.stderr == (
        "ModelQuota/gpt4-daily: spec.match.caller: names no caller of LLMRoute 'gateway' "
        "('support'; spec.auth.callers declares: billing)\n"
    )
    quota["spec"]["match"] = {"tag": "translate"}
    result = invoke("validate", "-f", write(tmp_path, route, quota))
    assert "spec.match.tag: names no task of LLMRoute 'gateway'" in result.stderr


def live_routes(*routes: dict[str, Any], context_namespace: str = "team-a"):
    """A LiveRoute over `routes` (as the cluster holds them), and the lookups it was asked."""
    asked: list[tuple[str | None, str]] = []

    def live_route(namespace: str | None, name: str):
        asked.append((namespace, name))
        namespace = namespace or context_namespace
        found = [
            r
            for r in routes
            if r["metadata"]["name"] == name and r["metadata"].get("namespace") == namespace
        ]
        return (found[0] if found else None), namespace

    return live_route, asked


def quota_document(quota: dict[str, Any]):
    from llmroute.cli.manifests import Document

    return Document("quota.yaml", 0, quota)


def test_a_quota_route_missing_from_the_files_is_read_from_the_cluster() -> None:
    from llmroute.cli.offline import quota_reference_problems

    in_cluster = changed_route(name="gateway", namespace="team-a")
    live_route, asked = live_routes(in_cluster)
    quota = quota_document(QUOTA)
    assert quota_reference_problems(quota, [quota], live_route) == []
    # The context's namespace for a quota that names none, as kubectl apply would use.
    assert asked == [(None, "gateway")]

    elsewhere = quota_document(
        copy.deepcopy(QUOTA) | {"metadata": {"name": "q", "namespace": "prod"}}
    )
    assert quota_reference_problems(elsewhere, [elsewhere], live_route) == [
        'spec.routeRef.name: no LLMRoute "gateway" in namespace "prod" in the given files or '
        "in the cluster"
    ]
    unmatched = copy.deepcopy(QUOTA)
    unmatched["spec"]["match"] = {"provider": "anthropic"}
    unmatched_document = quota_document(unmatched)
    assert quota_reference_problems(unmatched_document, [unmatched_document], live_route) == [
        'spec.match: matches no target of LLMRoute "gateway" (in the cluster)'
    ]


def test_a_route_in_the_files_is_not_looked_up_in_the_cluster() -> None:
    from llmroute.cli.manifests import Document
    from llmroute.cli.offline import quota_reference_problems

    live_route, asked = live_routes()
    quota = quota_document(QUOTA)
    route = Document("route.yaml", 0, changed_route(name="gateway"))
    assert quota_reference_problems(quota, [route, quota], live_route) == []
    assert asked == []


def changed_route(name: str, namespace: str | None = None) -> dict[str, Any]:
    route = copy.deepcopy(ROUTE)
    route["metadata"] = {"name": name} | ({"namespace": namespace} if namespace else {})
    return route


def test_validate_cluster_without_a_usable_kubeconfig_is_one_line(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\n")
    result = invoke(
        "validate", "--cluster", "--kubeconfig", str(kubeconfig), "-f", write(tmp_path, QUOTA)
    )
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    (line,) = result.stderr.splitlines()
    assert line.startswith("Error: no usable Kubernetes configuration")


def test_validate_kubeconfig_without_cluster_is_a_usage_error(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    result = invoke("validate", "--kubeconfig", str(kubeconfig), "-f", write(tmp_path, QUOTA))
    assert result.exit_code == 2
    assert "--kubeconfig and --context go with --cluster" in result.stderr


def test_render_refuses_an_invalid_namespace() -> None:
    result = invoke("render", "-f", str(REPO_ROOT / "examples/smart-chain.yaml"), "-n", "Team_A")
    assert result.exit_code == 2
    assert "is not a valid namespace name" in result.stderr


def test_validate_without_a_file_is_a_usage_error(tmp_path: Path) -> None:
    assert invoke("validate").exit_code == 2
    assert invoke("validate", "-f", str(tmp_path / "missing.yaml")).exit_code == 2


# -- status and usage: arguments, and output from objects as the API returns them ----------------


def test_cluster_commands_refuse_namespace_with_all_namespaces() -> None:
    for command in ("status", "usage"):
        result = invoke(command, "-n", "prod", "-A")
        assert result.exit_code == 2
        assert "exclude each other" in result.stderr
    assert invoke("usage", "-A", "--route", "gateway").exit_code == 2
    assert invoke("usage", "--by", "model,colour").exit_code == 2


def test_cluster_commands_explain_a_missing_configuration(tmp_path: Path) -> None:
    empty = tmp_path / "kubeconfig"
    empty.write_text("apiVersion: v1\nkind: Config\n")
    result = invoke("status", "--kubeconfig", str(empty))
    assert result.exit_code == 1
    assert "no usable Kubernetes configuration" in result.stderr


MISSING = "Secret prod/provider-keys not found (spec.models[0].targets[0].apiKeySecretRef)"


def condition(type_: str, status: str, reason: str, message: str = "") -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


def stored_route(ready: str = "True") -> dict[str, Any]:
    ok = ready == "True"
    conditions = [
        condition("Ready", ready, "Ready" if ok else "SecretsResolvedNotTrue"),
        condition("ConfigValid", "True", "Valid"),
        condition("SecretsResolved", ready, "Found" if ok else "SecretNotFound", MISSING),
        condition("ProxyAvailable", "True", "MinimumReplicasAvailable", "1/1 ready"),
    ]
    return {
        **ROUTE,
        "metadata": {
            "name": "gateway",
            "namespace": "prod",
            "generation": 2,
            "creationTimestamp": "2026-11-20T11:55:00Z",
        },
        "status": {
            "observedGeneration": 2,
            "conditions": conditions,
            "endpoint": "http://gateway.prod.svc:4000",
            "models": ["smart", "cheap"],
            "masterKeySecret": "gateway-master-key",
        },
    }


def stored_quota() -> dict[str, Any]:
    created = "2026-11-18T12:00:00Z"
    return {
        **QUOTA,
        "metadata": {"name": "gpt4-daily", "namespace": "prod", "creationTimestamp": created},
        "status": {
            "spentUSD": 12.5,
            "percentUsed": 62.5,
            "state": "Ok",
            "requests": 300,
            "inputTokens": 1000,
            "outputTokens": 500,
            "periodEnd": "2026-11-21T00:00:00Z",
            "conditions": [condition("Ready", "True", "Enforced")],
        },
    }


def test_route_status_reads_conditions_endpoint_and_models() -> None:
    row = route_status(stored_route(), NOW)
    assert row["ready"] == "True"
    assert row["conditions"]["ConfigValid"]["reason"] == "Valid"
    assert row["endpoint"] == "http://gateway.prod.svc:4000"
    assert row["models"] == ["smart", "cheap"]
    assert row["age"] == "5m"
    assert json.loads(json.dumps(row)) == row
    fresh = route_status({"metadata": {"name": "new", "namespace": "prod"}}, NOW)
    assert fresh["ready"] == "Unknown"
    assert fresh["conditions"] == {}


def test_quota_status_reads_spend_and_defaults() -> None:
    row = quota_status(stored_quota(), NOW)
    assert (row["spentUSD"], row["limitUSD"], row["percentUsed"], row["state"]) == (
        12.5,
        20,
        62.5,
        "Ok",
    )
    assert (row["action"], row["enforcement"], row["softLimitPercent"]) == (
        "fallback",
        "enforce",
        80,
    )
    assert row["age"] == "2d"


def test_status_tables_align_columns_and_explain_what_is_not_ready() -> None:
    routes = [route_status(stored_route(), NOW), route_status(stored_route("False"), NOW)]
    routes[1]["name"] = "broken"
    quotas = [quota_status(stored_quota(), NOW)]
    text = status_tables(routes, quotas, all_namespaces=False)
    lines = text.splitlines()
    assert lines[0].split() == [
        "NAME",
        "READY",
        "CONFIGVALID",
        "PROXYAVAILABLE",
        "ENDPOINT",
        "MODELS",
        "AGE",
    ]
    assert lines[1].split() == [
        "gateway",
        "True",
        "True",
        "True",
        "http://gateway.prod.svc:4000",
        "smart,cheap",
        "5m",
    ]
    assert lines[0].index("READY") == lines[1].index("True")
    quota_header = next(line for line in lines if line.startswith("QUOTA"))
    quota_line = lines[lines.index(quota_header) + 1]
    assert quota_line.split()[:8] == [
        "gpt4-daily",
        "gateway",
        "provider=openai",
        "$12.50",
        "$20.00/daily",
        "62.5%",
        "Ok",
        "enforce",
    ]
    assert (f"broken: SecretsResolved=False (SecretNotFound): {MISSING}") in lines
    # Ready=False only sums up the others: it gets no line of its own.
    assert not any(line.startswith("broken: Ready=") for line in lines)
    assert "NAMESPACE" in status_tables(routes, quotas, all_namespaces=True).splitlines()[0]
    assert status_tables([], [], all_namespaces=False) == "No LLMRoutes found."
    fresh = route_status({"metadata": {"name": "new"}}, NOW)
    assert "no status yet" in status_tables([fresh], [], all_namespaces=False)


def test_status_lists_only_what_holds_back_ready() -> None:
    # OperatorAccess=False is information for the cluster admin: not why a route is not Ready.
    broken = route_status(stored_route("False"), NOW)
    broken["conditions"]["OperatorAccess"] = {
        "type": "OperatorAccess",
        "status": "False",
        "reason": "OperatorNamespaceUnknown",
        "message": "the operator's namespace is unknown",
    }
    lines = status_tables([broken], [], all_namespaces=False).splitlines()
    assert any("SecretsResolved=False" in line for line in lines)
    assert not any("OperatorAccess" in line for line in lines)


def test_age_reads_like_kubectl() -> None:
    assert age("2026-11-20T11:59:15Z", NOW) == "45s"
    assert age("2026-11-20T11:48:00Z", NOW) == "12m"
    assert age("2026-11-20T07:00:00Z", NOW) == "5h"
    assert age("2026-11-17T12:00:00Z", NOW) == "3d"
    assert age(None, NOW) == "<unknown>"


def test_format_table_pads_columns_three_spaces_apart() -> None:
    assert (
        format_table(["A", "LONGER"], [["xyz", "1"], ["", "22"]])
        == "A     LONGER\nxyz   1\n      22"
    )


def test_money_reads_in_cents_or_to_the_millionth() -> None:
    assert money(12.5) == "$12.50"
    assert money(1234) == "$1,234.00"
    assert money(0) == "$0.00"
    # Below a cent, cents would read as nothing spent.
    assert money(0.0012) == "$0.0012"
    assert money(None) == "-"
    assert money(0.00149, micro=True) == "0.001490"


def usage_row(model: str, caller: str, task: str, requests: int, spend: float) -> UsageRow:
    return UsageRow(
        namespace="prod",
        route="gateway",
        model=model,
        target="openai/gpt-4",
        deployment=f"{model}/0",
        caller=caller,
        task=task,
        usage=Usage(
            spend_usd=spend,
            input_tokens=10 * requests,
            output_tokens=5 * requests,
            requests=requests,
        ),
    )


def test_usage_groups_by_the_chosen_dimensions() -> None:
    rows = [
        usage_row("smart", "billing", "summarize", 2, 0.5),
        usage_row("smart", "_master", "", 1, 0.25),
        usage_row("cheap", "billing", "", 4, 0.125),
    ]
    by_caller = group_usage(rows, ["caller"])
    assert by_caller == [
        {
            "caller": "billing",
            "spendUSD": 0.625,
            "inputTokens": 60,
            "outputTokens": 30,
            "requests": 6,
        },
        {
            "caller": "_master",
            "spendUSD": 0.25,
            "inputTokens": 10,
            "outputTokens": 5,
            "requests": 1,
        },
    ]
    full = group_usage(rows, ["route", "model", "target", "caller", "task"])
    assert len(full) == 3
    assert full[0] == {
        "namespace": "prod",
        "route": "gateway",
        "model": "smart",
        "target": "openai/gpt-4",
        "caller": "billing",
        "task": "summarize",
        "spendUSD": 0.5,
        "inputTokens": 20,
        "outputTokens": 10,
        "requests": 2,
    }
    table = usage_table(group_usage(rows, ["model"]), ["model"]).splitlines()
    assert table[0].split() == [
        "MODEL",
        "REQUESTS",
        "INPUT",
        "TOKENS",
        "OUTPUT",
        "TOKENS",
        "SPEND",
        "USD",
    ]
    assert table[1].split() == ["smart", "3", "30", "15", "0.750000"]
    assert table[-1].split() == ["TOTAL", "7", "70", "35", "0.875000"]
    single = usage_table(group_usage(rows[:1], ["task"]), ["task"]).splitlines()
    assert len(single) == 2


def test_usage_fails_when_no_replica_answered(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmroute.cli.cluster import Cluster
    from llmroute.quota import usage as usage_module

    silent = usage_module.UsageReport(
        rows=[], unanswered=[("prod", "gw", "gw-litellm-a", "HTTP 403 Forbidden: no")]
    )
    monkeypatch.setattr(
        sys.modules["llmroute.cli.usage"],
        "connect_scoped",
        lambda *_: (Cluster(api=None, namespace="prod", in_cluster=False), "prod"),
    )
    monkeypatch.setattr(usage_module, "gather_usage", lambda *_, **__: silent)
    result = invoke("usage", "-n", "prod")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        "warning: prod/gw: replica gw-litellm-a did not answer: HTTP 403 Forbidden: no"
    )
    assert result.stderr.splitlines()[-1] == "Error: no proxy replica answered (1 asked)"

    monkeypatch.setattr(
        usage_module,
        "gather_usage",
        lambda *_, **__: usage_module.UsageReport(
            rows=[], unanswered=silent.unanswered, answered=1
        ),
    )
    assert invoke("usage", "-n", "prod").exit_code == 0


def test_run_refuses_a_metrics_address_without_a_port() -> None:
    result = invoke("run", "--metrics", "0.0.0.0")
    assert result.exit_code == 2
    assert "--metrics" in result.output and "HOST:PORT" in result.output


def test_status_shows_a_quotas_caller_and_task() -> None:
    from llmroute.cli.status import _quota_match

    assert _quota_match({"caller": "billing", "tag": "summarize", "modelName": "smart"}) == (
        "modelName=smart,caller=billing,tag=summarize"
    )
