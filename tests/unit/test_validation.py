"""Offline validation of LLMRoute / ModelQuota manifests, the CRD files and their defaults."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmroute.api import API_VERSION
from llmroute.api.crds import crd_for, kinds, load_crds, schema_for
from llmroute.api.schema import apply_defaults, apply_object_defaults, schema_default
from llmroute.api.validation import MIRRORED_RULES, ValidationError, validate
from manifests import DELETE, QUOTA, ROUTE, changed

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))


def example_documents() -> list[Any]:
    return [
        pytest.param(doc, id=f"{path.name}:{doc['metadata']['name']}")
        for path in EXAMPLES
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def test_the_examples_cover_both_kinds_and_the_documented_cases() -> None:
    names = {path.name for path in EXAMPLES}
    assert {
        "smart-chain.yaml",
        "cost-routing.yaml",
        "external-ollama.yaml",
        "monthly-budget.yaml",
    } <= names
    docs = [param.values[0] for param in example_documents()]
    assert {doc["kind"] for doc in docs} == {"LLMRoute", "ModelQuota"}
    assert any(doc["spec"].get("auth", {}).get("callers") for doc in docs)
    assert any(doc["spec"].get("tasks") for doc in docs)


@pytest.mark.parametrize("doc", example_documents())
def test_every_example_validates_clean(doc: dict[str, Any]) -> None:
    assert validate(doc) == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_examples_hold_no_secret_values(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        assert doc["kind"] != "Secret", "examples reference Secrets, they do not contain them"


def test_the_base_manifests_are_valid() -> None:
    assert validate(ROUTE) == []
    assert validate(QUOTA) == []


def test_a_quota_may_limit_one_caller_or_task() -> None:
    for match in ({"caller": "billing"}, {"tag": "summarize"}, {"caller": "a", "model": "gpt-4"}):
        assert validate(changed(QUOTA, {"spec.match": match, "spec.action": "reject"})) == []


# (base, changes, path the error names, words of its message)
INVALID = {
    "fallback-unknown": (
        ROUTE,
        {"spec.models[0].fallbacks": ["cheap", "nope"]},
        "spec.models[0].fallbacks[1]",
        'names no model of this route ("nope")',
    ),
    "fallback-self": (
        ROUTE,
        {"spec.models[0].fallbacks": ["smart"]},
        "spec.models[0].fallbacks[0]",
        "cannot fall back to itself",
    ),
    "two-credential-sources": (
        ROUTE,
        {"spec.models[0].targets[0].credentialsSecretRef": {"name": "aws"}},
        "spec.models[0].targets[0].credentialsSecretRef",
        "at most one of apiKeySecretRef and credentialsSecretRef",
    ),
    "keyed-provider-without-key": (
        ROUTE,
        {"spec.models[0].targets[0].apiKeySecretRef": DELETE},
        "spec.models[0].targets[0].apiKeySecretRef",
        "provider anthropic needs a credential",
    ),
    "azure-without-api-base": (
        ROUTE,
        {
            "spec.models[1].targets[0]": {
                "provider": "azure",
                "model": "gpt-4o",
                "apiKeySecretRef": {"name": "azure", "key": "key"},
            }
        },
        "spec.models[1].targets[0].apiBase",
        "provider azure needs apiBase",
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
        "such targets: spec.models[0].targets[1], spec.models[1].targets[0]",
    ),
    "external-ollama-with-models": (
        ROUTE,
        {"spec.ollama.external": {"url": "http://ollama.lan:11434"}},
        "spec.ollama.external",
        "models cannot be set with it",
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
        "spec.auth.callers[0].models[0]",
        'names no model of this route ("x")',
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
        "spec.auth.callers[0].tags[0]",
        'is not a task declared in spec.tasks ("sum")',
    ),
    "autoscaling-min-over-default-max": (
        ROUTE,
        {"spec.proxy": {"autoscaling": {"enabled": True, "minReplicas": 9}}},
        "spec.proxy.autoscaling.minReplicas",
        "must not exceed maxReplicas (9 > 5)",
    ),
    "peer-without-selector": (
        ROUTE,
        {"spec.access": {"from": [{}]}},
        "spec.access.from[0]",
        "needs podSelector, namespaceSelector or both",
    ),
    "route-name-not-dns-1035": (
        ROUTE,
        {"metadata.name": "1gateway"},
        "metadata.name",
        "DNS-1035 label",
    ),
    "route-name-too-long": (
        ROUTE,
        {"metadata.name": "g" * 46},
        "metadata.name",
        "at most 45 characters",
    ),
    "route-name-claiming-another-routes-child": (
        ROUTE,
        {"metadata.name": "gateway-ollama"},
        "metadata.name",
        "must not end in '-ollama'",
    ),
    # Python's `$` also matches before a final newline; the API server's (Go) `$` does not.
    "route-name-ending-in-newline": (
        ROUTE,
        {"metadata.name": "gateway\n"},
        "metadata.name",
        "DNS-1035 label",
    ),
    "model-name-ending-in-newline": (
        ROUTE,
        {"spec.models[1].name": "cheap\n", "spec.models[0].fallbacks": DELETE},
        "spec.models[1].name",
        "should match",
    ),
    "litellm-setting-owned-by-llmroute": (
        ROUTE,
        {"spec.proxy": {"litellm": {"routerSettings": {"num_retries": 9}}}},
        "spec.proxy.litellm.routerSettings.num_retries",
        "is set by llmroute",
    ),
    "litellm-setting-that-opens-the-gateway": (
        ROUTE,
        {"spec.proxy": {"litellm": {"generalSettings": {"public_routes": ["/v1/models"]}}}},
        "spec.proxy.litellm.generalSettings.public_routes",
        "cannot be overridden",
    ),
    "litellm-callbacks-not-a-list": (
        ROUTE,
        {"spec.proxy": {"litellm": {"litellmSettings": {"callbacks": "otel"}}}},
        "spec.proxy.litellm.litellmSettings.callbacks",
        "must be a list of callback names",
    ),
    "proxy-env-reserved-name": (
        ROUTE,
        {"spec.proxy": {"env": [{"name": "LLMROUTE_MASTER_KEY", "value": "x"}]}},
        "spec.proxy.env[0].name",
        "is set by llmroute",
    ),
    "proxy-env-value-and-value-from": (
        ROUTE,
        {
            "spec.proxy": {
                "env": [
                    {
                        "name": "OTEL_HEADERS",
                        "value": "x",
                        "valueFrom": {"secretKeyRef": {"name": "otel", "key": "headers"}},
                    }
                ]
            }
        },
        "spec.proxy.env[0]",
        "set exactly one of value and valueFrom",
    ),
    "quota-route-ref-ending-in-newline": (
        QUOTA,
        {"spec.routeRef.name": "gateway\n"},
        "spec.routeRef.name",
        "should match",
    ),
    "no-models": (ROUTE, {"spec.models": []}, "spec.models", "should have at least 1 items"),
    "duplicate-model-name": (
        ROUTE,
        {"spec.models[1].name": "smart", "spec.models[0].fallbacks": DELETE},
        "spec.models[1]",
        'Duplicate value: {"name": "smart"}',
    ),
    "bad-model-name": (
        ROUTE,
        {"spec.models[1].name": "-cheap", "spec.models[0].fallbacks": DELETE},
        "spec.models[1].name",
        "should match",
    ),
    "unknown-strategy": (
        ROUTE,
        {"spec.models[0].strategy": "fastest"},
        "spec.models[0].strategy",
        'Unsupported value: "fastest"',
    ),
    "unknown-provider": (
        ROUTE,
        {"spec.models[1].targets[0].provider": "cohere"},
        "spec.models[1].targets[0].provider",
        'Unsupported value: "cohere"',
    ),
    "missing-target-model": (
        ROUTE,
        {"spec.models[1].targets[0].model": DELETE},
        "spec.models[1].targets[0].model",
        "Required value",
    ),
    "api-base-not-a-url": (
        ROUTE,
        {"spec.models[1].targets[0].apiBase": "ollama:11434"},
        "spec.models[1].targets[0].apiBase",
        "should match",
    ),
    "retries-over-maximum": (
        ROUTE,
        {"spec.router": {"numRetries": 11}},
        "spec.router.numRetries",
        "less than or equal to 10",
    ),
    "unknown-field": (ROUTE, {"spec.fallback": ["cheap"]}, "spec.fallback", "unknown field"),
    "pricing-half-set": (
        ROUTE,
        {"spec.models[0].targets[0].pricing": {"inputPerMillionUSD": 3}},
        "spec.models[0].targets[0].pricing.outputPerMillionUSD",
        "Required value",
    ),
    "quota-empty-match": (QUOTA, {"spec.match": {}}, "spec.match", "at least one of provider"),
    "quota-caller-with-fallback": (
        QUOTA,
        {"spec.match": {"caller": "billing"}},
        "spec",
        "set action: reject",
    ),
    "quota-task-with-rpm": (
        QUOTA,
        {"spec.match": {"tag": "summarize"}, "spec.action": "reject", "spec.rpm": 10},
        "spec",
        "cannot set them",
    ),
    "quota-task-not-a-task-name": (
        QUOTA,
        {"spec.match.tag": "task:summarize", "spec.action": "reject"},
        "spec.match.tag",
        "should match",
    ),
    "quota-soft-limit-100": (
        QUOTA,
        {"spec.budget.softLimitPercent": 100},
        "spec.budget.softLimitPercent",
        "less than or equal to 99",
    ),
    "quota-soft-limit-0": (
        QUOTA,
        {"spec.budget.softLimitPercent": 0},
        "spec.budget.softLimitPercent",
        "greater than or equal to 1",
    ),
    "quota-zero-limit": (
        QUOTA,
        {"spec.budget.limitUSD": 0},
        "spec.budget.limitUSD",
        "greater than 0",
    ),
    "quota-unknown-period": (
        QUOTA,
        {"spec.budget.period": "yearly"},
        "spec.budget.period",
        'Unsupported value: "yearly"',
    ),
    "quota-without-route": (QUOTA, {"spec.routeRef": DELETE}, "spec.routeRef", "Required value"),
}


@pytest.mark.parametrize(("base", "changes", "path", "words"), INVALID.values(), ids=INVALID)
def test_each_invalid_case_names_its_field(
    base: dict[str, Any], changes: dict[str, Any], path: str, words: str
) -> None:
    errors = validate(changed(base, changes))
    assert any(error.path == path and words in error.message for error in errors), errors
    # One fault, one error: each case breaks exactly one rule.
    assert len(errors) == 1, errors


def test_errors_read_as_path_colon_message() -> None:
    route = changed(ROUTE, {"spec.models[0].fallbacks": ["cheap", "nope"]})
    assert [str(error) for error in validate(route)] == [
        'spec.models[0].fallbacks[1]: names no model of this route ("nope")'
    ]


def test_several_problems_are_all_reported() -> None:
    route = changed(
        ROUTE,
        {
            "spec.models[0].strategy": "fastest",
            "spec.models[0].fallbacks": ["nope"],
            "spec.proxy": {"replicas": -1},
        },
    )
    assert {error.path for error in validate(route)} == {
        "spec.models[0].strategy",
        "spec.models[0].fallbacks[0]",
        "spec.proxy.replicas",
    }


@pytest.mark.parametrize(
    ("obj", "path"),
    [
        ("LLMRoute", "<root>"),
        ({"apiVersion": API_VERSION, "kind": "Pod"}, "kind"),
        ({"apiVersion": "llmroute.dev/v1", "kind": "LLMRoute"}, "apiVersion"),
        (changed(ROUTE, {"metadata": {}}), "metadata.name"),
        (changed(ROUTE, {"spec": DELETE}), "spec"),
        (changed(ROUTE, {"spec.models": "smart"}), "spec.models"),
    ],
)
def test_what_is_not_a_manifest_is_reported_not_raised(obj: Any, path: str) -> None:
    assert [error.path for error in validate(obj)] == [path]


@pytest.mark.parametrize("name", [{"a": 1}, ["cheap"]])
def test_a_model_name_of_no_hashable_type_is_reported_not_raised(name: Any) -> None:
    # The cross-field rules collected model names in a set, and raised TypeError on these.
    paths = [error.path for error in validate(changed(ROUTE, {"spec.models[1].name": name}))]
    assert "spec.models[1].name" in paths


def test_maps_keyed_by_strings_name_the_key() -> None:
    route = changed(ROUTE, {"spec.ollama.nodeSelector": {"kubernetes.io/arch": 3}})
    assert validate(route) == [
        ValidationError(
            "spec.ollama.nodeSelector[kubernetes.io/arch]",
            "Invalid value: 3: must be of type string",
        )
    ]


def test_quantities_take_integers_and_strings() -> None:
    route = changed(ROUTE, {"spec.proxy": {"resources": {"limits": {"cpu": 2, "memory": "2Gi"}}}})
    assert validate(route) == []
    route = changed(ROUTE, {"spec.proxy": {"resources": {"limits": {"memory": "two gigs"}}}})
    assert [error.path for error in validate(route)] == ["spec.proxy.resources.limits.memory"]


def test_free_form_status_fields_take_anything() -> None:
    quota = changed(QUOTA, {"status": {"replicas": {"gateway-litellm-abc": {"spend": 1.5}}}})
    assert validate(quota) == []


# -- defaults ---------------------------------------------------------------------------------


def test_defaults_are_applied_as_the_api_server_would() -> None:
    spec = apply_defaults(ROUTE["spec"])
    assert [model["strategy"] for model in spec["models"]] == ["priority", "priority"]
    assert spec["router"] == {
        "numRetries": 2,
        "timeoutSeconds": 60,
        "fallbackOn": ["errors", "rateLimit", "timeout", "contextWindow"],
        "allowedFails": 3,
        "cooldownSeconds": 30,
        "cache": {"enabled": False, "ttlSeconds": 600},
    }
    assert spec["proxy"] == {
        "replicas": 1,
        "logLevel": "WARNING",
        "autoscaling": {
            "enabled": False,
            "minReplicas": 1,
            "maxReplicas": 5,
            "targetCPUUtilizationPercentage": 70,
        },
    }
    assert spec["ollama"] == {"models": ["llama3.2"], "keepAlive": "5m", "numParallel": 1}
    assert "auth" not in spec and "access" not in spec


def test_defaults_inside_optional_objects_apply_only_when_they_are_set() -> None:
    spec = apply_defaults(
        {
            **ROUTE["spec"],
            "router": {"numRetries": 0},
            "redis": {"external": {"url": "redis://redis"}},
            "ollama": {"storage": {}, "gpu": {"count": 1}},
        }
    )
    assert spec["router"]["numRetries"] == 0
    assert spec["redis"] == {"external": {"url": "redis://redis", "tls": False}}
    assert spec["ollama"]["storage"] == {"size": "20Gi"}
    assert spec["ollama"]["gpu"] == {"count": 1, "resourceName": "nvidia.com/gpu"}


def test_defaults_do_not_change_the_input() -> None:
    spec = copy.deepcopy(ROUTE["spec"])
    apply_defaults(spec)
    assert spec == ROUTE["spec"]


def test_quota_defaults() -> None:
    quota = apply_object_defaults(QUOTA)
    assert quota["spec"]["budget"] == {"limitUSD": 100, "period": "monthly", "softLimitPercent": 80}
    assert quota["spec"]["action"] == "fallback"
    assert quota["spec"]["enforcement"] == "enforce"
    assert apply_defaults(QUOTA["spec"], "ModelQuota") == quota["spec"]


def test_null_counts_as_absent_for_defaults() -> None:
    spec = apply_defaults({**ROUTE["spec"], "router": {"numRetries": None}})
    assert spec["router"]["numRetries"] == 2


def test_schema_default_reads_a_single_default() -> None:
    assert schema_default("LLMRoute", "spec.ollama.storage.size") == "20Gi"
    assert schema_default("LLMRoute", "spec.models[].strategy") == "priority"
    assert schema_default("ModelQuota", "spec.budget.softLimitPercent") == 80
    with pytest.raises(KeyError):
        schema_default("LLMRoute", "spec.models[].name")


# -- the CRD files ----------------------------------------------------------------------------


def test_both_crds_load() -> None:
    assert kinds() == ["LLMRoute", "ModelQuota"]
    crds = load_crds()
    assert [crd["metadata"]["name"] for crd in crds] == [
        "llmroutes.llmroute.dev",
        "modelquotas.llmroute.dev",
    ]
    crds[0]["metadata"]["name"] = "changed"  # a copy: the cache is untouched
    assert crd_for("LLMRoute")["metadata"]["name"] == "llmroutes.llmroute.dev"


def _schema_nodes(node: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    nodes = [(path, node)]
    for name, prop in node.get("properties", {}).items():
        nodes += _schema_nodes(prop, f"{path}.{name}" if path else name)
    if isinstance(node.get("items"), dict):
        nodes += _schema_nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        nodes += _schema_nodes(node["additionalProperties"], f"{path}{{}}")
    return nodes


@pytest.mark.parametrize("kind", ["LLMRoute", "ModelQuota"])
def test_every_schema_node_is_described_and_typed(kind: str) -> None:
    for path, node in _schema_nodes(schema_for(kind), ""):
        if path == "metadata":
            # The API server forbids anything but the type here (the schema of ObjectMeta is fixed).
            assert node == {"type": "object"}
            continue
        assert node.get("description", "").strip(), f"{kind} {path or '<root>'}: no description"
        assert node.get("type") or node.get("x-kubernetes-int-or-string"), f"{kind} {path}"


@pytest.mark.parametrize("kind", ["LLMRoute", "ModelQuota"])
def test_every_cel_rule_has_a_python_mirror(kind: str) -> None:
    counted = {}
    for path, node in _schema_nodes(schema_for(kind), ""):
        rules = node.get("x-kubernetes-validations", [])
        if rules:
            counted[path] = len(rules)
        for rule in rules:
            assert rule.get("message") or rule.get("messageExpression"), f"{kind} {path}"
    assert counted == MIRRORED_RULES[kind]


@pytest.mark.parametrize("kind", ["LLMRoute", "ModelQuota"])
def test_the_defaults_are_valid_values(kind: str) -> None:
    import jsonschema

    for path, node in _schema_nodes(schema_for(kind), ""):
        if "default" in node:
            checker = jsonschema.Draft7Validator(_without_extensions(node))
            problems = [error.message for error in checker.iter_errors(node["default"])]
            assert not problems, f"{kind} {path}: the default is invalid: {problems}"


def _without_extensions(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: _without_extensions(value)
            for key, value in node.items()
            if not key.startswith("x-kubernetes-") and key != "default"
        }
    return node


def test_no_category_shadows_a_resource_name() -> None:
    # kubectl expands a category before it looks up resources, so a category equal to any
    # kind's name breaks `kubectl get <that name> NAME` ("you must specify only one resource").
    resource_names = set()
    for kind in kinds():
        names = crd_for(kind)["spec"]["names"]
        resource_names |= {names["singular"], names["plural"], names["kind"].lower()}
        resource_names |= set(names.get("shortNames", []))
    for kind in kinds():
        categories = set(crd_for(kind)["spec"]["names"].get("categories", []))
        assert not categories & resource_names, (
            f"{kind}: category shadows {categories & resource_names}"
        )


def test_names_and_columns_follow_the_contract() -> None:
    route, quota = crd_for("LLMRoute"), crd_for("ModelQuota")
    assert route["spec"]["names"]["shortNames"] == ["llmr"]
    assert quota["spec"]["names"]["shortNames"] == ["mq"]
    for crd in (route, quota):
        assert crd["spec"]["scope"] == "Namespaced"
        assert crd["spec"]["names"]["categories"] == ["llmroute-all"]
        (version,) = crd["spec"]["versions"]
        assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
        assert version["subresources"] == {"status": {}}
    columns = {
        kind: [
            (column["name"], column["jsonPath"])
            for column in crd_for(kind)["spec"]["versions"][0]["additionalPrinterColumns"]
        ]
        for kind in ("LLMRoute", "ModelQuota")
    }
    assert columns["LLMRoute"] == [
        ("Ready", '.status.conditions[?(@.type=="Ready")].status'),
        ("Endpoint", ".status.endpoint"),
        ("Models", ".status.models"),
        ("Age", ".metadata.creationTimestamp"),
    ]
    assert columns["ModelQuota"] == [
        ("Spent", ".status.spentUSD"),
        ("Limit", ".spec.budget.limitUSD"),
        ("Used%", ".status.percentUsed"),
        ("State", ".status.state"),
        ("Age", ".metadata.creationTimestamp"),
    ]


def test_status_declares_every_field_the_operator_writes() -> None:
    route_status = schema_for("LLMRoute")["properties"]["status"]["properties"]
    assert set(route_status) == {
        "observedGeneration",
        "conditions",
        "endpoint",
        "models",
        "configHash",
        "masterKeySecret",
        "ollama",
    }
    quota_status = schema_for("ModelQuota")["properties"]["status"]["properties"]
    assert set(quota_status) == {
        "observedGeneration",
        "conditions",
        "periodStart",
        "periodEnd",
        "spentUSD",
        "percentUsed",
        "state",
        "requests",
        "inputTokens",
        "outputTokens",
        "lastSync",
        "replicas",
    }
    condition = route_status["conditions"]["items"]["properties"]
    assert set(condition) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }


def test_jsonschema_is_imported_only_when_validating() -> None:
    code = (
        "import sys, llmroute.api.validation as v, llmroute.api.schema;"
        "print('jsonschema' in sys.modules);"
        "v.validate({'kind': 'ModelQuota', 'apiVersion': 'llmroute.dev/v1alpha1'});"
        "print('jsonschema' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "operator")}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "True"]


# Tolerations the CRD's schema allows but the API server refuses in the Ollama StatefulSet's
# pod template (its toleration validation): caught offline, the route is refused whole
# instead of half-applied (found by tests/e2e/test_spec_properties.py).
@pytest.mark.parametrize(
    ("toleration", "path"),
    [
        ({}, "spec.ollama.tolerations[0].operator"),
        ({"operator": "Equal", "value": "gpu"}, "spec.ollama.tolerations[0].operator"),
        ({"operator": "Exists", "value": "gpu"}, "spec.ollama.tolerations[0].value"),
        ({"key": "a b", "operator": "Exists"}, "spec.ollama.tolerations[0].key"),
        ({"key": "gpu", "value": "not a label value"}, "spec.ollama.tolerations[0].value"),
        (
            {"key": "gpu", "operator": "Exists", "tolerationSeconds": 5},
            "spec.ollama.tolerations[0].effect",
        ),
    ],
)
def test_tolerations_the_api_server_refuses_are_caught(toleration: dict, path: str) -> None:
    route = changed(ROUTE, {"spec.ollama.tolerations": [toleration]})
    assert [error.path for error in validate(route)] == [path]


@pytest.mark.parametrize(
    "toleration",
    [
        {"operator": "Exists"},
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "value": "llm"},
        {"key": "dedicated", "operator": "Equal", "value": ""},
        {
            "key": "node.kubernetes.io/unreachable",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 30,
        },
    ],
)
def test_tolerations_the_api_server_accepts_pass(toleration: dict) -> None:
    assert validate(changed(ROUTE, {"spec.ollama.tolerations": [toleration]})) == []
