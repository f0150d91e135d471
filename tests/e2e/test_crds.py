"""The CRDs in a real API server: installed, defaulting, and rejecting invalid objects.

Each invalid manifest is also run through the offline validator (`llmroute validate`), which
must name the same field: the Python mirrors of the CEL rules stay honest this way.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from built_tools import require_tools
from llmroute.api import GROUP, QUOTA_PLURAL, ROUTE_PLURAL, VERSION
from llmroute.api.crds import crd_for
from llmroute.api.schema import apply_defaults
from llmroute.api.validation import validate
from llmroute.render.children import CHILD_KINDS, colliding_name_endings
from localcluster import tools
from localcluster.controlplane import LocalCluster
from manifests import DELETE, QUOTA, ROUTE, changed

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
PLURALS = {"LLMRoute": ROUTE_PLURAL, "ModelQuota": QUOTA_PLURAL}


def create(api: client.ApiClient, namespace: str, obj: dict[str, Any], **kwargs: Any) -> Any:
    return client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURALS[obj["kind"]], obj, field_validation="Strict", **kwargs
    )


def rejection_causes(error: ApiException) -> list[dict[str, str]]:
    status = json.loads(error.body)
    return status.get("details", {}).get("causes", [])


# -- installed --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "short_name", "columns"),
    [
        (
            "llmroutes.llmroute.dev",
            "llmr",
            [
                ("Ready", '.status.conditions[?(@.type=="Ready")].status'),
                ("Endpoint", ".status.endpoint"),
                ("Models", ".status.models"),
                ("Age", ".metadata.creationTimestamp"),
            ],
        ),
        (
            "modelquotas.llmroute.dev",
            "mq",
            [
                ("Spent", ".status.spentUSD"),
                ("Limit", ".spec.budget.limitUSD"),
                ("Used%", ".status.percentUsed"),
                ("State", ".status.state"),
                ("Age", ".metadata.creationTimestamp"),
            ],
        ),
    ],
)
def test_crds_are_established_with_names_and_columns(
    api: client.ApiClient, name: str, short_name: str, columns: list[tuple[str, str]]
) -> None:
    crd = client.ApiextensionsV1Api(api).read_custom_resource_definition(name)
    conditions = {condition.type: condition.status for condition in crd.status.conditions}
    assert conditions["Established"] == "True"
    assert conditions["NamesAccepted"] == "True"
    assert crd.spec.names.short_names == [short_name]
    assert crd.spec.names.categories == ["llmroute-all"]
    assert crd.status.accepted_names.short_names == [short_name]
    (version,) = crd.spec.versions
    assert (version.name, version.served, version.storage) == ("v1alpha1", True, True)
    assert [(c.name, c.json_path) for c in version.additional_printer_columns] == columns


def kubectl_get(
    cluster: LocalCluster, cache_dir: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(tools.binary("kubectl")),
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--cache-dir",
            str(cache_dir),
            "get",
            *args,
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def resource_names(kind: str) -> list[str]:
    """Every name kubectl accepts for ``kind``: singular, plural, short names, kind, and the
    group-qualified forms."""
    crd = crd_for(kind)
    names, group = crd["spec"]["names"], crd["spec"]["group"]
    bare = [names["singular"], names["plural"], *names["shortNames"], names["kind"]]
    return [*bare, f"{names['singular']}.{group}", f"{names['plural']}.{group}"]


@pytest.mark.parametrize(
    ("obj", "resource"),
    [
        pytest.param(obj, resource, id=f"{obj['kind']}:{resource}")
        for obj in (ROUTE, QUOTA)
        for resource in resource_names(obj["kind"])
    ],
)
def test_kubectl_gets_one_object_by_every_resource_name(
    cluster: LocalCluster,
    api: client.ApiClient,
    namespace: str,
    tmp_path: Path,
    obj: dict[str, Any],
    resource: str,
) -> None:
    # A category equal to a resource name makes kubectl expand the category first, so
    # `kubectl get llmroute NAME` failed with "you must specify only one resource".
    require_tools("kubectl")
    create(api, namespace, obj)
    name = obj["metadata"]["name"]
    result = kubectl_get(cluster, tmp_path, resource, name, "--namespace", namespace)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    assert (got["kind"], got["metadata"]["name"]) == (obj["kind"], name)


def test_kubectl_lists_both_kinds_by_their_category(
    cluster: LocalCluster, api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    require_tools("kubectl")
    for obj in (ROUTE, QUOTA):
        create(api, namespace, obj)
    (category,) = {
        category
        for kind in ("LLMRoute", "ModelQuota")
        for category in crd_for(kind)["spec"]["names"]["categories"]
    }
    result = kubectl_get(cluster, tmp_path, category, "--namespace", namespace)
    assert result.returncode == 0, result.stderr
    listed = {
        (item["kind"], item["metadata"]["name"]) for item in json.loads(result.stdout)["items"]
    }
    assert listed == {(obj["kind"], obj["metadata"]["name"]) for obj in (ROUTE, QUOTA)}


# -- accepted ---------------------------------------------------------------------------------


def example_documents() -> list[Any]:
    return [
        pytest.param(doc, id=f"{path.name}:{doc['metadata']['name']}")
        for path in sorted((REPO_ROOT / "examples").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


@pytest.mark.parametrize("doc", example_documents())
def test_every_example_is_accepted_and_defaulted_as_offline(
    api: client.ApiClient, namespace: str, doc: dict[str, Any]
) -> None:
    stored = create(api, namespace, doc, dry_run="All")
    # The API server's defaults and llmroute.api.schema.apply_defaults agree.
    assert stored["spec"] == apply_defaults(doc["spec"], doc["kind"])


def test_status_keeps_every_field_the_operator_writes(
    api: client.ApiClient, namespace: str
) -> None:
    custom = client.CustomObjectsApi(api)
    condition = {
        "type": "Ready",
        "status": "True",
        "reason": "ProxyAvailable",
        "message": "2/2 proxy replicas ready",
        "lastTransitionTime": "2026-11-01T10:00:00Z",
        "observedGeneration": 1,
    }
    route_status = {
        "observedGeneration": 1,
        "conditions": [condition],
        "endpoint": f"http://gateway.{namespace}.svc:4000",
        "models": ["smart", "cheap"],
        "configHash": "0123456789abcdef",
        "masterKeySecret": "gateway-master-key",
        "ollama": {"models": [{"name": "llama3.2", "present": "True"}]},
    }
    quota_status = {
        "observedGeneration": 1,
        "conditions": [condition],
        "periodStart": "2026-11-01T00:00:00Z",
        "periodEnd": "2026-12-01T00:00:00Z",
        "spentUSD": 12.5,
        "percentUsed": 12.5,
        "state": "Ok",
        "requests": 42,
        "inputTokens": 1000,
        "outputTokens": 500,
        "lastSync": "2026-11-02T00:00:00Z",
        "replicas": {"gateway-litellm-7d9f-abcde": {"spend": 12.5, "requests": 42}},
    }
    for obj, status in ((ROUTE, route_status), (QUOTA, quota_status)):
        plural, name = PLURALS[obj["kind"]], obj["metadata"]["name"]
        create(api, namespace, obj)
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, plural, name, {"status": status}
        )
        stored = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        assert stored["status"] == status


def test_printer_columns_show_the_status(api: client.ApiClient, namespace: str) -> None:
    custom = client.CustomObjectsApi(api)
    create(api, namespace, QUOTA)
    custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        QUOTA_PLURAL,
        QUOTA["metadata"]["name"],
        {"status": {"spentUSD": 85.5, "percentUsed": 85.5, "state": "SoftLimited"}},
    )
    table = custom.list_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        QUOTA_PLURAL,
        _headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
    )
    assert table["kind"] == "Table"
    names = [column["name"] for column in table["columnDefinitions"]]
    assert names == ["Name", "Spent", "Limit", "Used%", "State", "Age"]
    (row,) = table["rows"]
    assert row["cells"][:5] == [QUOTA["metadata"]["name"], 85.5, 100, 85.5, "SoftLimited"]


# -- rejected ---------------------------------------------------------------------------------

# (base, changes, the field the API server names, words of its message)
INVALID = {
    "fallback-unknown": (
        ROUTE,
        {"spec.models[0].fallbacks": ["cheap", "nope"]},
        "spec.models",
        "every fallbacks entry must name a model of this route",
    ),
    "fallback-self": (
        ROUTE,
        {"spec.models[0].fallbacks": ["smart"]},
        "spec.models[0].fallbacks",
        "a model cannot fall back to itself",
    ),
    "two-credential-sources": (
        ROUTE,
        {"spec.models[0].targets[0].credentialsSecretRef": {"name": "aws"}},
        "spec.models[0].targets[0].credentialsSecretRef",
        "set at most one of apiKeySecretRef and credentialsSecretRef",
    ),
    "keyed-provider-without-key": (
        ROUTE,
        {"spec.models[0].targets[0].apiKeySecretRef": DELETE},
        "spec.models[0].targets[0].apiKeySecretRef",
        "provider anthropic needs a credential",
    ),
    "openai-compatible-without-api-base": (
        ROUTE,
        {"spec.models[1].targets[0]": {"provider": "openai-compatible", "model": "qwen"}},
        "spec.models[1].targets[0].apiBase",
        "provider openai-compatible needs apiBase",
    ),
    "provider-prefixed-model": (
        ROUTE,
        {"spec.models[0].targets[0].model": "anthropic/claude-sonnet-4-5"},
        "spec.models[0].targets[0].model",
        'without the "anthropic/" prefix',
    ),
    "managed-ollama-target-without-spec-ollama": (
        ROUTE,
        {"spec.ollama": DELETE},
        "spec.ollama",
        "an ollama target without apiBase uses the route's managed Ollama",
    ),
    "external-ollama-with-models": (
        ROUTE,
        {"spec.ollama.external": {"url": "http://ollama.lan:11434"}},
        "spec.ollama.external",
        "models, storage and gpu cannot be set with it",
    ),
    "caller-model-unknown": (
        ROUTE,
        {
            "spec.auth": {
                "callers": [
                    {"name": "billing", "keySecretRef": {"name": "k", "key": "b"}, "models": ["x"]}
                ]
            }
        },
        "spec.auth.callers",
        "every caller's models entry must name a model of this route",
    ),
    "caller-tag-undeclared": (
        ROUTE,
        {
            "spec.tasks": ["triage"],
            "spec.auth": {
                "callers": [
                    {"name": "billing", "keySecretRef": {"name": "k", "key": "b"}, "tags": ["sum"]}
                ]
            },
        },
        "spec.auth.callers",
        "every caller's tags entry must be a task declared in spec.tasks",
    ),
    "autoscaling-min-over-default-max": (
        ROUTE,
        {"spec.proxy": {"autoscaling": {"enabled": True, "minReplicas": 9}}},
        "spec.proxy.autoscaling.minReplicas",
        "minReplicas must not exceed maxReplicas",
    ),
    "peer-without-selector": (
        ROUTE,
        {"spec.access": {"from": [{}]}},
        "spec.access.from[0]",
        "a peer needs podSelector, namespaceSelector or both",
    ),
    "proxy-env-value-and-value-from": (
        ROUTE,
        {
            "spec.proxy": {
                "env": [
                    {
                        "name": "X",
                        "value": "x",
                        "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}},
                    }
                ]
            }
        },
        "spec.proxy.env[0]",
        "set exactly one of value and valueFrom",
    ),
    "no-models": (ROUTE, {"spec.models": []}, "spec.models", "should have at least 1 items"),
    "duplicate-model-name": (
        ROUTE,
        {"spec.models[1].name": "smart", "spec.models[0].fallbacks": DELETE},
        "spec.models[1]",
        "Duplicate value",
    ),
    "unknown-strategy": (
        ROUTE,
        {"spec.models[0].strategy": "fastest"},
        "spec.models[0].strategy",
        'Unsupported value: "fastest"',
    ),
    "api-base-not-a-url": (
        ROUTE,
        {"spec.models[1].targets[0].apiBase": "ollama:11434"},
        "spec.models[1].targets[0].apiBase",
        "should match",
    ),
    "missing-target-model": (
        ROUTE,
        {"spec.models[1].targets[0].model": DELETE},
        "spec.models[1].targets[0].model",
        "Required value",
    ),
    # The API server's `$` is the end of the text; offline validation must read it so too.
    "model-name-ending-in-newline": (
        ROUTE,
        {"spec.models[1].name": "cheap\n", "spec.models[0].fallbacks": DELETE},
        "spec.models[1].name",
        "should match",
    ),
    "quota-route-ref-ending-in-newline": (
        QUOTA,
        {"spec.routeRef.name": "gateway\n"},
        "spec.routeRef.name",
        "should match",
    ),
    "quota-empty-match": (
        QUOTA,
        {"spec.match": {}},
        "spec.match",
        "match needs at least one of provider, model, modelName, caller and tag",
    ),
    "quota-caller-with-fallback": (
        QUOTA,
        {"spec.match": {"caller": "billing"}},
        "spec",
        "a quota with match.caller or match.tag is enforced at the gateway",
    ),
    "quota-task-with-rpm": (
        QUOTA,
        {"spec.match": {"tag": "summarize"}, "spec.action": "reject", "spec.rpm": 10},
        "spec",
        "a quota with match.caller or match.tag cannot set them",
    ),
    "quota-caller-not-a-name": (
        QUOTA,
        {"spec.match.caller": "Billing Bot", "spec.action": "reject"},
        "spec.match.caller",
        "should match",
    ),
    "quota-soft-limit-100": (
        QUOTA,
        {"spec.budget.softLimitPercent": 100},
        "spec.budget.softLimitPercent",
        "less than or equal to 99",
    ),
    "quota-zero-limit": (
        QUOTA,
        {"spec.budget.limitUSD": 0},
        "spec.budget.limitUSD",
        "greater than 0",
    ),
}


@pytest.mark.parametrize(("base", "changes", "field", "words"), INVALID.values(), ids=INVALID)
def test_invalid_objects_are_rejected_naming_the_field(
    api: client.ApiClient,
    namespace: str,
    base: dict[str, Any],
    changes: dict[str, Any],
    field: str,
    words: str,
) -> None:
    obj = changed(base, changes)
    with pytest.raises(ApiException) as raised:
        create(api, namespace, obj, dry_run="All")
    assert raised.value.status == 422, raised.value.body
    causes = rejection_causes(raised.value)
    assert any(cause.get("field") == field and words in cause["message"] for cause in causes), (
        causes
    )
    offline = validate(obj)
    assert any(error.path.startswith(field) for error in offline), offline


def test_the_route_name_must_suit_its_service(api: client.ApiClient, namespace: str) -> None:
    for name in ("1gateway", "g" * 46):
        obj = changed(ROUTE, {"metadata.name": name})
        with pytest.raises(ApiException) as raised:
            create(api, namespace, obj, dry_run="All")
        assert raised.value.status == 422
        messages = [cause["message"] for cause in rejection_causes(raised.value)]
        assert any("metadata.name must be a DNS-1035 label" in m for m in messages), messages
        assert [error.path for error in validate(obj)] == ["metadata.name"]
    create(api, namespace, changed(ROUTE, {"metadata.name": "g" * 45}), dry_run="All")


def test_a_route_name_may_not_claim_another_routes_child(
    api: client.ApiClient, namespace: str
) -> None:
    # The refused endings come from the table of child suffixes; the API server and the
    # offline validator refuse exactly them, and accept the other suffixes as name endings.
    for ending in colliding_name_endings():
        obj = changed(ROUTE, {"metadata.name": f"gw{ending}"})
        with pytest.raises(ApiException) as raised:
            create(api, namespace, obj, dry_run="All")
        assert raised.value.status == 422
        messages = [cause["message"] for cause in rejection_causes(raised.value)]
        assert any("must not end in" in m and f"'{ending}'" in m for m in messages), messages
        assert [error.path for error in validate(obj)] == ["metadata.name"]
    for child in CHILD_KINDS:
        if child.suffix and child.suffix not in colliding_name_endings():
            obj = changed(ROUTE, {"metadata.name": f"gw{child.suffix}"})
            assert validate(obj) == []
            create(api, namespace, obj, dry_run="All")


def test_unknown_fields_are_rejected_with_strict_validation(
    api: client.ApiClient, namespace: str
) -> None:
    obj = changed(ROUTE, {"spec.fallback": ["cheap"]})
    with pytest.raises(ApiException) as raised:
        create(api, namespace, obj, dry_run="All")
    assert raised.value.status == 400
    assert 'unknown field "spec.fallback"' in json.loads(raised.value.body)["message"]
    assert [str(error) for error in validate(obj)] == ["spec.fallback: unknown field"]
