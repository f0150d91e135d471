"""Isolation promises against the real API server and the operator as a process.

The session's operator runs as the chart runs it: POD_NAMESPACE set (the downward API), and an
apiBase allow-list for one namespace (LLMROUTE_API_BASE_POLICY, the chart's apiBase values).
"""

from __future__ import annotations

import uuid

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from llmroute.api import GROUP, ROUTE_PLURAL, VERSION
from localcluster import wait_for

pytestmark = pytest.mark.usefixtures("operator")


def target(**fields: object) -> dict:
    return {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "apiKeySecretRef": {"name": "provider-keys", "key": "openai"},
        **fields,
    }


def route_manifest(name: str, *targets: dict, **spec: object) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LLMRoute",
        "metadata": {"name": name},
        "spec": {"models": [{"name": "smart", "targets": list(targets or [target()])}], **spec},
    }


def create_keys(core: client.CoreV1Api, namespace: str, data: dict[str, str]) -> None:
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "provider-keys"}, "stringData": data}
    )


def condition(route: dict, type_: str) -> dict | None:
    conditions = (route.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), None)


def wait_condition(
    custom: client.CustomObjectsApi,
    namespace: str,
    name: str,
    type_: str,
    status: str,
    reason: str | None = None,
    timeout: float = 90,
) -> dict:
    def probe() -> dict | None:
        route = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, ROUTE_PLURAL, name)
        found = condition(route, type_)
        if found and found["status"] == status and reason in (None, found["reason"]):
            return route
        return None

    return wait_for(probe, timeout=timeout, what=f"{name} {type_}={status} {reason or ''}")


@pytest.fixture
def apis(api: client.ApiClient):
    return client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)


def test_policies_admit_the_operator_from_its_namespace_and_say_so(
    apis, namespace, operator
) -> None:
    core, _apps, custom = apis
    create_keys(core, namespace, {"openai": "sk-e2e-isolation"})
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, ROUTE_PLURAL, route_manifest("gw")
    )
    route = wait_condition(custom, namespace, "gw", "OperatorAccess", "True", "OperatorNamespace")
    assert operator.namespace in condition(route, "OperatorAccess")["message"]
    policy = client.NetworkingV1Api(core.api_client).read_namespaced_network_policy(
        "gw-litellm", namespace
    )
    selectors = [
        peer.namespace_selector.match_labels
        for rule in policy.spec.ingress
        for peer in rule._from
        if peer.namespace_selector is not None
    ]
    assert selectors == [{"kubernetes.io/metadata.name": operator.namespace}]


def test_a_credentials_secret_missing_a_required_key_is_reported(apis, namespace) -> None:
    core, apps, custom = apis
    core.create_namespaced_secret(
        namespace,
        {"metadata": {"name": "aws"}, "stringData": {"AWS_ACCESS_KEY_ID": "AKIAE2EISOLATION"}},
    )
    bedrock = {
        "provider": "bedrock",
        "model": "anthropic.claude-3-haiku-20240307-v1:0",
        "credentialsSecretRef": {"name": "aws"},
    }
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, ROUTE_PLURAL, route_manifest("gw", bedrock)
    )
    route = wait_condition(custom, namespace, "gw", "SecretsResolved", "False", "SecretNotFound")
    message = condition(route, "SecretsResolved")["message"]
    assert "'AWS_SECRET_ACCESS_KEY'" in message
    assert "spec.models[0].targets[0].credentialsSecretRef" in message
    assert "AWS_ACCESS_KEY_ID" not in message  # present: not reported
    with pytest.raises(ApiException) as missing:
        apps.read_namespaced_deployment("gw-litellm", namespace)
    assert missing.value.status == 404

    core.patch_namespaced_secret(
        "aws", namespace, {"stringData": {"AWS_SECRET_ACCESS_KEY": "e2e-isolation-secret"}}
    )
    wait_condition(custom, namespace, "gw", "SecretsResolved", "True", "Found")
    assert apps.read_namespaced_deployment("gw-litellm", namespace)


def test_the_api_server_refuses_a_name_that_would_share_a_child(apis, namespace) -> None:
    _core, _apps, custom = apis
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, ROUTE_PLURAL, route_manifest("gw-ollama")
        )
    assert refused.value.status == 422
    assert "must not end in '-ollama'" in refused.value.body


def test_an_object_owned_by_another_route_is_left_alone(apis, namespace) -> None:
    core, _apps, custom = apis
    create_keys(core, namespace, {"openai": "sk-e2e-isolation"})
    other = custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, ROUTE_PLURAL, route_manifest("other")
    )
    claim = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LLMRoute",
        "name": "other",
        "uid": other["metadata"]["uid"],
        "controller": True,
    }
    service = core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "gw", "ownerReferences": [claim]},
            "spec": {"ports": [{"port": 80}], "selector": {"app": "elsewhere"}},
        },
    )
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, ROUTE_PLURAL, route_manifest("gw")
    )
    route = wait_condition(custom, namespace, "gw", "ConfigValid", "False", "ChildNameTaken")
    message = condition(route, "ConfigValid")["message"]
    assert f"Service {namespace}/gw belongs to LLMRoute other" in message
    assert condition(route, "Ready")["status"] == "False"
    after = core.read_namespaced_service("gw", namespace)
    assert after.metadata.resource_version == service.metadata.resource_version
    assert [o.uid for o in after.metadata.owner_references] == [other["metadata"]["uid"]]
    assert "gw-litellm" not in {
        c.metadata.name for c in core.list_namespaced_config_map(namespace).items
    }

    # Once that object is gone, the route takes its place (the refusal is retried).
    core.delete_namespaced_service("gw", namespace)
    wait_condition(custom, namespace, "gw", "ConfigValid", "True", timeout=180)
    owners = core.read_namespaced_service("gw", namespace).metadata.owner_references
    assert [(o.kind, o.name) for o in owners] == [("LLMRoute", "gw")]


def test_an_api_base_outside_the_allow_list_is_refused_and_nothing_changes(
    apis, allow_list_namespace: str
) -> None:
    core, apps, custom = apis
    namespace = allow_list_namespace
    create_keys(core, namespace, {"openai": f"sk-e2e-{uuid.uuid4().hex[:6]}"})
    # The session's operator allows only 127.0.0.1 and *.allowed.test in this namespace.
    allowed = target(provider="openai-compatible", apiBase="http://127.0.0.1:9/v1")
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, ROUTE_PLURAL, route_manifest("gw", allowed)
    )
    wait_condition(custom, namespace, "gw", "ConfigValid", "True")
    config_map = wait_for(
        lambda: core.read_namespaced_config_map("gw-litellm", namespace),
        what="the ConfigMap applied",
    )
    deployment = apps.read_namespaced_deployment("gw-litellm", namespace)

    refused = target(provider="openai-compatible", apiBase="https://collector.example.net/v1")
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, ROUTE_PLURAL, "gw", {"spec": {"models": [
            {"name": "smart", "targets": [refused]}
        ]}},
    )  # fmt: skip
    route = wait_condition(custom, namespace, "gw", "ConfigValid", "False", "ApiBaseNotAllowed")
    message = condition(route, "ConfigValid")["message"]
    assert "spec.models[0].targets[0].apiBase" in message
    assert "'collector.example.net'" in message
    assert route["status"]["observedGeneration"] == route["metadata"]["generation"]
    assert condition(route, "Ready")["status"] == "False"
    # Nothing was applied: the last good objects stay as they were.
    now = core.read_namespaced_config_map("gw-litellm", namespace)
    assert now.metadata.resource_version == config_map.metadata.resource_version
    assert "collector.example.net" not in "".join(now.data.values())
    assert apps.read_namespaced_deployment("gw-litellm", namespace).spec.template == (
        deployment.spec.template
    )

    # A host the allow-list's pattern covers heals the route.
    healed = target(provider="openai-compatible", apiBase="http://llm.allowed.test/v1")
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, ROUTE_PLURAL, "gw", {"spec": {"models": [
            {"name": "smart", "targets": [healed]}
        ]}},
    )  # fmt: skip
    wait_condition(custom, namespace, "gw", "ConfigValid", "True")
    wait_for(
        lambda: (
            "llm.allowed.test"
            in core.read_namespaced_config_map("gw-litellm", namespace).data["config.yaml"]
        ),
        what="the allowed apiBase applied",
    )
