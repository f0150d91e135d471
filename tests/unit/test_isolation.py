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

from llmroute.conditions import condition_status
from llmroute.route.status import (
    CONDITION_ORDER,
    READY_INPUTS,
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
