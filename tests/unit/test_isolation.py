"""Isolation between routes, namespaces and the operator: the pure half of each promise.

- The NetworkPolicies admit the operator's pods from the operator's own namespace, or, when
  that namespace is unknown, no operator pod at all (never every namespace); the route says
  which in its OperatorAccess condition, which does not hold back Ready.
- The cluster admin's apiBase host allow-list, which the operator enforces before applying.
- Every key a credentials Secret must hold is checked before the pods need it.
- Route names whose children would collide with another route's are refused.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmroute.api.api_base_policy import API_BASE_POLICY_ENV, ApiBasePolicy, api_base_errors
from llmroute.api.crds import schema_for
from llmroute.api.route import Route, parse_route
from llmroute.api.validation import REFUSED_ROUTE_NAME_ENDINGS, validate
from llmroute.conditions import condition_status
from llmroute.kube import foreign_owner
from llmroute.render.children import CHILD_KINDS, colliding_name_endings
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


# -- item: one child object, one route -------------------------------------------------------


def child_names(route_name: str) -> set[tuple[str, str]]:
    return {(c.kind, c.name(route_name)) for c in CHILD_KINDS if c.suffix is not None}


def test_refused_name_endings_derive_from_the_table_of_child_suffixes() -> None:
    # Route gw's managed Ollama Service is gw-ollama: the proxy Service of a route named
    # gw-ollama; likewise its managed Redis Service gw-redis. Names ending in "-litellm" or
    # "-master-key" collide with nothing: those suffixes are the only ones of their kinds.
    assert colliding_name_endings() == ("-ollama", "-redis")
    assert colliding_name_endings() == REFUSED_ROUTE_NAME_ENDINGS


def test_no_two_accepted_names_share_a_child() -> None:
    # Every name built from a few stems and the table's suffixes, pairwise: either one is
    # refused, or their children (kind, name) are disjoint.
    suffixes = {c.suffix for c in CHILD_KINDS if c.suffix is not None}
    names = {stem + s + t for stem in ("gw", "a-b") for s in suffixes for t in suffixes}
    accepted = sorted(
        n for n in names if not [e for e in validate(route(n)) if e.path == "metadata.name"]
    )
    assert "gw" in accepted and "gw-litellm" in accepted
    assert "gw-ollama" not in accepted
    for i, first in enumerate(accepted):
        for second in accepted[i + 1 :]:
            assert not child_names(first) & child_names(second), (first, second)


def test_a_colliding_name_is_refused_with_a_clear_message() -> None:
    (error,) = [e for e in validate(route("gw-ollama")) if e.path == "metadata.name"]
    assert "'gw-ollama'" in error.message and "-ollama" in error.message
    assert "gw" in error.message  # names the route it would collide with


def test_the_crds_cel_rule_refuses_the_same_endings() -> None:
    rules = [r["rule"] for r in schema_for("LLMRoute")["x-kubernetes-validations"]]
    listed = ", ".join(f"'{e}'" for e in colliding_name_endings())
    assert f"![{listed}].exists(e, self.metadata.name.endsWith(e))" in rules


OURS = {"apiVersion": "llmroute.dev/v1alpha1", "kind": "LLMRoute", "name": "gw", "uid": "u-gw"}


def existing(*owners: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "Service", "metadata": {"name": "gw", "ownerReferences": list(owners)}}


def owner(kind: str, name: str, uid: str, controller: bool = True) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": kind, "name": name, "uid": uid, "controller": controller}


def test_an_object_owned_by_another_route_or_controller_is_never_adopted() -> None:
    assert foreign_owner(None, OURS) is None  # absent: created
    assert foreign_owner(existing(), OURS) is None  # unowned: adopted, as before
    assert foreign_owner(existing(owner("LLMRoute", "gw", "u-gw")), OURS) is None
    other_route = owner("LLMRoute", "other", "u-other", controller=False)
    assert foreign_owner(existing(other_route), OURS) == other_route
    other_controller = owner("ReplicaSet", "rs", "u-rs")
    assert foreign_owner(existing(other_controller), OURS) == other_controller
    # A non-controlling owner of another kind (e.g. a GitOps tool's marker) is no claim.
    marker = owner("ConfigMap", "app", "u-app", controller=False)
    assert foreign_owner(existing(marker), OURS) is None


def test_an_object_left_by_an_earlier_route_of_the_same_name_is_adopted() -> None:
    # Deleted and created again before the garbage collector came by: that route is gone.
    assert foreign_owner(existing(owner("LLMRoute", "gw", "u-gw-before")), OURS) is None


# -- item: the cluster admin's apiBase host allow-list ----------------------------------------


def api_base_route(namespace: str = "apps", *bases: str) -> Route:
    obj = route(ollama=False)
    obj["metadata"]["namespace"] = namespace
    obj["spec"]["models"] = [
        {
            "name": "smart",
            "targets": [
                {
                    "provider": "openai-compatible",
                    "model": "m",
                    "apiBase": base,
                    "apiKeySecretRef": {"name": "keys", "key": "k"},
                }
                for base in bases
            ],
        }
    ]
    return parse_route(obj)


def test_no_allow_list_allows_any_host() -> None:
    policy = ApiBasePolicy.from_env(None)
    assert policy == ApiBasePolicy()
    assert api_base_errors(api_base_route("apps", "https://anywhere.example/v1"), policy) == []


def test_hosts_outside_the_allow_list_are_named_with_their_field() -> None:
    policy = ApiBasePolicy(allowed_hosts=("*.openai.azure.com", "llm.internal"))
    parsed = api_base_route(
        "apps",
        "https://team.openai.azure.com/",
        "http://LLM.internal:8080/v1",
        "https://evil.example.com/v1",
        "https://openai.azure.com.evil.example/",
    )
    errors = api_base_errors(parsed, policy)
    assert [(e.path, e.host) for e in errors] == [
        ("spec.models[0].targets[2].apiBase", "evil.example.com"),
        ("spec.models[0].targets[3].apiBase", "openai.azure.com.evil.example"),
    ]
    assert str(errors[0]) == (
        "spec.models[0].targets[2].apiBase: host 'evil.example.com' is not among the hosts "
        "the cluster allows for apiBase (*.openai.azure.com, llm.internal)"
    )


def test_a_namespace_list_replaces_the_cluster_wide_one() -> None:
    policy = ApiBasePolicy.from_env(
        json.dumps(
            {
                "allowedHosts": ["*.example.com"],
                "allowedHostsByNamespace": {"team-a": ["llm.team-a.internal"], "open": []},
            }
        )
    )
    assert policy.hosts_for("team-b") == ("*.example.com",)
    assert policy.hosts_for("team-a") == ("llm.team-a.internal",)
    assert policy.hosts_for("open") == ()  # empty: any host in that namespace
    assert (
        api_base_errors(api_base_route("team-a", "http://llm.team-a.internal:8000"), policy) == []
    )
    assert api_base_errors(api_base_route("open", "http://x.invalid"), policy) == []
    (error,) = api_base_errors(api_base_route("team-a", "http://a.example.com"), policy)
    assert error.host == "a.example.com"


@pytest.mark.parametrize(
    "value",
    ["not json", "[]", '{"allowedHosts": "a"}', '{"allowedHosts": [1]}', '{"hosts": []}'],
)
def test_a_malformed_policy_is_refused_at_start(value: str) -> None:
    with pytest.raises(ValueError, match=API_BASE_POLICY_ENV):
        ApiBasePolicy.from_env(value)
