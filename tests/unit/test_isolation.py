"""Isolation between routes, namespaces and the operator: the pure half of each promise.

- The NetworkPolicies admit the operator's pods from the operator's own namespace, or, when
  that namespace is unknown, no operator pod at all (never every namespace); the route says
  which in its OperatorAccess condition, which does not hold back Ready.
- The cluster admin's apiBase host allow-list, which the operator enforces before applying.
- Every key a credentials Secret must hold is checked before the pods need it.
- Route names whose children would collide with another route's are refused.
"""

from __future__ import annotations

from typing import Any

import pytest

from llmroute.api.route import parse_route
from llmroute.conditions import condition_status
from llmroute.route.status import (
    CONDITION_ORDER,
    READY_INPUTS,
    missing_secret_keys,
    operator_access_condition,
    with_ready,
)
from manifests import render_manifest

OPERATOR_POD = {"matchLabels": {"app.kubernetes.io/name": "llmroute-operator"}}


def route(name: str = "gw", ollama: bool = True) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "models": [
            {
                "name": "smart",
                "targets": [
                    {
                        "provider": "openai",
                        "model": "gpt-4o",
                        "apiKeySecretRef": {"name": "keys", "key": "openai"},
                    }
                ],
            }
        ]
    }
    if ollama:
        spec["models"].append(
            {"name": "local", "targets": [{"provider": "ollama", "model": "llama3.2"}]}
        )
        spec["ollama"] = {"models": ["llama3.2"]}
    return {
        "apiVersion": "llmroute.dev/v1alpha1",
        "kind": "LLMRoute",
        "metadata": {"name": name, "namespace": "apps"},
        "spec": spec,
    }


def network_policies(operator_namespace: str | None) -> dict[str, dict[str, Any]]:
    rendered = render_manifest(route(), operator_namespace=operator_namespace)
    return {o["metadata"]["name"]: o for o in rendered.objects if o["kind"] == "NetworkPolicy"}


def peers(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]]


# -- item: the operator's NetworkPolicy rule -------------------------------------------------


def test_policies_admit_the_operator_from_its_own_namespace_only() -> None:
    policies = network_policies("llmroute-system")
    assert set(policies) == {"gw-litellm", "gw-ollama"}
    for name, policy in policies.items():
        operator_peers = [p for p in peers(policy) if p.get("podSelector") == OPERATOR_POD]
        assert operator_peers == [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "llmroute-system"}
                },
                "podSelector": OPERATOR_POD,
            }
        ], name


def test_an_unknown_operator_namespace_admits_no_operator_pod() -> None:
    policies = network_policies(None)
    assert set(policies) == {"gw-litellm", "gw-ollama"}
    for name, policy in policies.items():
        for peer in peers(policy):
            # Fail closed: no rule for the operator, and no peer matching every namespace.
            assert peer.get("podSelector") != OPERATOR_POD, name
            assert peer.get("namespaceSelector") != {}, name
            assert "namespaceSelector" not in peer or peer["namespaceSelector"]["matchLabels"]
    # The route's own callers and proxies are still admitted.
    assert policies["gw-litellm"]["spec"]["ingress"] == [
        {"from": [{"podSelector": {}}], "ports": [{"protocol": "TCP", "port": 4000}]}
    ]
    assert [r["from"] for r in policies["gw-ollama"]["spec"]["ingress"]] == [
        [{"podSelector": {"matchLabels": {
            "app.kubernetes.io/name": "litellm",
            "app.kubernetes.io/instance": "gw",
            "app.kubernetes.io/component": "proxy",
        }}}]
    ]  # fmt: skip


def test_operator_access_condition_says_which_namespace_or_that_none_is_admitted() -> None:
    known = operator_access_condition([], "llmroute-system", 4)
    (condition,) = known
    assert (condition["type"], condition["status"], condition["reason"]) == (
        "OperatorAccess",
        "True",
        "OperatorNamespace",
    )
    assert "llmroute-system" in condition["message"]
    assert condition["observedGeneration"] == 4

    (unknown,) = operator_access_condition([], None, 4)
    assert (unknown["status"], unknown["reason"]) == ("False", "OperatorNamespaceUnknown")
    assert "POD_NAMESPACE" in unknown["message"]


def test_an_unknown_operator_namespace_does_not_hold_back_ready() -> None:
    # Serving is unaffected: only the operator's own reads (metrics, Ollama's model list)
    # from an operator pod are refused.
    assert "OperatorAccess" in CONDITION_ORDER
    assert "OperatorAccess" not in READY_INPUTS
    conditions = operator_access_condition([], None, 1)
    conditions = [
        *conditions,
        {"type": "ConfigValid", "status": "True"},
        {"type": "ProxyAvailable", "status": "True"},
    ]
    ready = with_ready(conditions, 1)
    assert condition_status(ready, "Ready") == "True"
    assert [c["type"] for c in ready] == [
        "Ready",
        "ConfigValid",
        "ProxyAvailable",
        "OperatorAccess",
    ]


# -- item: every key a credentials Secret must hold ------------------------------------------


def bedrock_route() -> dict[str, Any]:
    obj = route(ollama=False)
    obj["spec"]["models"] = [
        {
            "name": "claude",
            "targets": [
                {
                    "provider": "bedrock",
                    "model": "anthropic.claude-3-haiku",
                    "credentialsSecretRef": {"name": "aws"},
                }
            ],
        }
    ]
    return obj


def test_credentials_secret_references_name_every_required_key() -> None:
    refs = parse_route(bedrock_route()).secret_references()
    field = "spec.models[0].targets[0].credentialsSecretRef"
    assert [(r.name, r.key, r.field) for r in refs] == [
        ("aws", "AWS_ACCESS_KEY_ID", field),
        ("aws", "AWS_SECRET_ACCESS_KEY", field),
    ]


def test_the_checked_keys_are_exactly_the_pods_required_secret_keys() -> None:
    # One source of truth: what SecretsResolved checks is what the proxy container needs
    # (the optional keys, such as AWS_SESSION_TOKEN, may be absent).
    rendered = render_manifest(bedrock_route())
    deployment = next(o for o in rendered.objects if o["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    required = {
        (ref["name"], ref["key"])
        for env in container["env"]
        if (ref := (env.get("valueFrom") or {}).get("secretKeyRef")) and not ref["optional"]
    }
    checked = {(ref.name, ref.key) for ref in rendered.secret_refs}
    # The master key Secret is generated by the operator, not checked.
    assert checked == required - {("gw-master-key", "masterKey")}


@pytest.mark.parametrize(
    ("data", "missing"),
    [
        ({"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s"}, []),
        ({"AWS_ACCESS_KEY_ID": "a"}, ["AWS_SECRET_ACCESS_KEY"]),
        ({"AWS_SESSION_TOKEN": "t"}, ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]),
    ],
)
def test_missing_secret_keys_are_each_named_with_the_field(
    data: dict[str, str], missing: list[str]
) -> None:
    refs = parse_route(bedrock_route()).secret_references()
    problems = missing_secret_keys(refs, "apps", {"aws": data})
    assert problems == [
        f"Secret apps/aws has no key {key!r} (spec.models[0].targets[0].credentialsSecretRef)"
        for key in missing
    ]
    assert missing_secret_keys(refs, "apps", {"aws": None}) == [
        "Secret apps/aws not found (spec.models[0].targets[0].credentialsSecretRef)"
    ]
