"""The operator against a real control plane: LLMRoute -> children, status, lifecycle."""

from __future__ import annotations

import base64

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from llmroute.api import GROUP, ROUTE_PLURAL, VERSION
from localcluster import wait_for

# The process runner is the node's kubelet: proxy pods are Ready only once their proxy
# serves, so a route is Ready only with it.
pytestmark = pytest.mark.usefixtures("operator", "process_runner")

KEYS = {"openai": "sk-test-openai-value", "anthropic": "sk-test-anthropic-value"}


def route_manifest(name: str, models: list[dict] | None = None, **spec: object) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LLMRoute",
        "metadata": {"name": name},
        "spec": {
            "models": models
            or [
                {
                    "name": "smart",
                    "targets": [
                        {
                            "provider": "anthropic",
                            "model": "claude-sonnet-4-5",
                            "apiKeySecretRef": {"name": "provider-keys", "key": "anthropic"},
                        },
                        {
                            "provider": "openai",
                            "model": "gpt-4",
                            "apiKeySecretRef": {"name": "provider-keys", "key": "openai"},
                        },
                    ],
                }
            ],
            **spec,
        },
    }


def create_keys(core: client.CoreV1Api, namespace: str, name: str = "provider-keys") -> None:
    core.create_namespaced_secret(namespace, {"metadata": {"name": name}, "stringData": dict(KEYS)})


def get_route(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict:
    return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, ROUTE_PLURAL, name)


def condition(route: dict, type_: str) -> dict | None:
    conditions = (route.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), None)


def wait_condition(custom, namespace, name, type_, status, timeout=60) -> dict:
    def probe():
        route = get_route(custom, namespace, name)
        cond = condition(route, type_)
        return route if cond and cond["status"] == status else None

    return wait_for(probe, timeout=timeout, what=f"{name} {type_}={status}")


def create_ready_route(core, custom, namespace: str, manifest: dict | None = None) -> dict:
    """The provider Secret, then the route; returns the route once it is Ready."""
    create_keys(core, namespace)
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, ROUTE_PLURAL, manifest or route_manifest("gw")
    )
    return wait_condition(custom, namespace, "gw", "Ready", "True", timeout=180)


@pytest.fixture
def apis(api):
    return (
        client.CoreV1Api(api),
        client.AppsV1Api(api),
        client.CustomObjectsApi(api),
    )


def test_route_creates_owned_children_and_status(apis, namespace):
    core, apps, custom = apis
    route = create_ready_route(core, custom, namespace)
    status = route["status"]
    assert status["observedGeneration"] == route["metadata"]["generation"]
    assert status["endpoint"] == f"http://gw.{namespace}.svc:4000"
    assert status["models"] == ["smart"]
    assert len(status["configHash"]) == 16
    assert condition(route, "ProxyAvailable")["status"] == "True"

    uid = route["metadata"]["uid"]
    children = [
        core.read_namespaced_config_map("gw-litellm", namespace),
        apps.read_namespaced_deployment("gw-litellm", namespace),
        core.read_namespaced_service("gw", namespace),
        core.read_namespaced_secret("gw-master-key", namespace),
        client.NetworkingV1Api(core.api_client).read_namespaced_network_policy(
            "gw-litellm", namespace
        ),
    ]
    for child in children:
        owners = child.metadata.owner_references
        assert [(o.kind, o.name, o.uid, o.controller) for o in owners] == [
            ("LLMRoute", "gw", uid, True)
        ], child.metadata.name
        assert child.metadata.labels["app.kubernetes.io/managed-by"] == "llmroute"
        assert child.metadata.labels["app.kubernetes.io/instance"] == "gw"

    # No secret value in the ConfigMap; keys reach the pod by reference only.
    config_map = children[0]
    rendered = "".join(config_map.data.values())
    for value in KEYS.values():
        assert value not in rendered
    master_key = base64.b64decode(children[3].data["masterKey"]).decode()
    assert master_key.startswith("sk-")
    assert master_key not in rendered
    env = (
        apps.read_namespaced_deployment("gw-litellm", namespace)
        .spec.template.spec.containers[0]
        .env
    )
    assert all(e.value is None or e.value not in KEYS.values() for e in env)


def test_update_rolls_config_and_noop_resync_writes_nothing(apis, namespace):
    core, apps, custom = apis
    create_ready_route(core, custom, namespace)

    def versions():
        return {
            "cm": core.read_namespaced_config_map(
                "gw-litellm", namespace
            ).metadata.resource_version,
            "deploy": apps.read_namespaced_deployment(
                "gw-litellm", namespace
            ).metadata.resource_version,
            "svc": core.read_namespaced_service("gw", namespace).metadata.resource_version,
        }

    # Wait until the Deployment's controllers are done writing its status.
    before_hash = apps.read_namespaced_deployment(
        "gw-litellm", namespace
    ).spec.template.metadata.annotations["llmroute.dev/config-hash"]

    # A change of metadata only (no spec change) is handled but renders the same objects.
    settled = versions()
    custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        ROUTE_PLURAL,
        "gw",
        {"metadata": {"annotations": {"example.com/touched": "yes"}}},
    )
    wait_for(
        lambda: (
            "example.com/touched"
            in get_route(custom, namespace, "gw")["metadata"]["annotations"].get(
                "llmroute.dev/last-handled-configuration", ""
            )
        ),
        what="the operator handled the annotation change",
    )
    assert versions()["cm"] == settled["cm"]
    assert versions()["svc"] == settled["svc"]

    # A spec change re-renders the config and rolls the pods.
    custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        ROUTE_PLURAL,
        "gw",
        {
            "spec": {
                "models": route_manifest("gw")["spec"]["models"]
                + [
                    {
                        "name": "cheap",
                        "targets": [
                            {
                                "provider": "openai",
                                "model": "gpt-4o-mini",
                                "apiKeySecretRef": {"name": "provider-keys", "key": "openai"},
                            }
                        ],
                    }
                ]
            }
        },
    )

    def rolled():
        deploy = apps.read_namespaced_deployment("gw-litellm", namespace)
        return deploy.spec.template.metadata.annotations["llmroute.dev/config-hash"] != before_hash

    wait_for(rolled, what="pod template hash changes")
    assert "cheap" in core.read_namespaced_config_map("gw-litellm", namespace).data["config.yaml"]
    route = wait_for(
        lambda: (
            (r := get_route(custom, namespace, "gw"))["status"].get("models") == ["smart", "cheap"]
            and r
        ),
        what="status lists both models",
    )
    assert route["status"]["observedGeneration"] == route["metadata"]["generation"]


def test_missing_secret_is_reported_then_recovers(apis, namespace):
    core, apps, custom = apis
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, ROUTE_PLURAL, route_manifest("gw")
    )
    route = wait_condition(custom, namespace, "gw", "SecretsResolved", "False")
    message = condition(route, "SecretsResolved")["message"]
    assert "provider-keys" in message and "apiKeySecretRef" in message
    assert condition(route, "Ready")["status"] == "False"
    with pytest.raises(ApiException) as missing:
        apps.read_namespaced_deployment("gw-litellm", namespace)
    assert missing.value.status == 404

    create_keys(core, namespace)
    wait_condition(custom, namespace, "gw", "Ready", "True", timeout=180)
    assert apps.read_namespaced_deployment("gw-litellm", namespace)


def test_children_deleted_or_edited_by_hand_are_restored(apis, namespace):
    core, _apps, custom = apis
    create_ready_route(core, custom, namespace)
    original = core.read_namespaced_config_map("gw-litellm", namespace).data

    core.patch_namespaced_config_map(
        "gw-litellm", namespace, {"data": {"config.yaml": "model_list: []\n"}}
    )
    wait_for(
        lambda: core.read_namespaced_config_map("gw-litellm", namespace).data == original,
        what="ConfigMap restored after an edit",
    )
    core.delete_namespaced_service("gw", namespace)
    wait_for(lambda: core.read_namespaced_service("gw", namespace), what="Service restored")


def test_deleting_the_route_garbage_collects_children(apis, namespace):
    core, apps, custom = apis
    create_ready_route(core, custom, namespace)
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, ROUTE_PLURAL, "gw")

    def gone():
        names = [cm.metadata.name for cm in core.list_namespaced_config_map(namespace).items]
        deployments = apps.list_namespaced_deployment(namespace).items
        return "gw-litellm" not in names and not deployments

    wait_for(gone, timeout=90, what="children garbage-collected")


def test_invalid_update_keeps_the_last_good_objects(apis, namespace):
    core, apps, custom = apis
    create_ready_route(core, custom, namespace)
    config_map = core.read_namespaced_config_map("gw-litellm", namespace)
    deployment = apps.read_namespaced_deployment("gw-litellm", namespace)

    # The API server accepts this, but LiteLLM cannot fall back on errors without also
    # falling back on rate limits and timeouts: the operator refuses to render it.
    custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        ROUTE_PLURAL,
        "gw",
        {"spec": {"router": {"fallbackOn": ["errors"]}}},
    )
    route = wait_condition(custom, namespace, "gw", "ConfigValid", "False")
    invalid = condition(route, "ConfigValid")
    assert invalid["reason"] == "InvalidSpec"
    assert "spec.router.fallbackOn" in invalid["message"]
    assert invalid["observedGeneration"] == route["metadata"]["generation"]
    assert condition(route, "Ready")["status"] == "False"
    assert (
        core.read_namespaced_config_map("gw-litellm", namespace).metadata.resource_version
        == config_map.metadata.resource_version
    )
    assert (
        apps.read_namespaced_deployment("gw-litellm", namespace).spec.template
        == deployment.spec.template
    )

    # Fixing the spec heals the route.
    custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        ROUTE_PLURAL,
        "gw",
        {"spec": {"router": {"fallbackOn": ["errors", "rateLimit", "timeout"]}}},
    )
    wait_condition(custom, namespace, "gw", "ConfigValid", "True")


def test_disruption_budget_follows_the_replica_count(apis, namespace):
    core, _apps, custom = apis
    policy = client.PolicyV1Api(core.api_client)
    create_ready_route(core, custom, namespace, route_manifest("gw", proxy={"replicas": 2}))
    assert policy.read_namespaced_pod_disruption_budget("gw-litellm", namespace)

    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, ROUTE_PLURAL, "gw", {"spec": {"proxy": {"replicas": 1}}}
    )

    def pruned():
        names = policy.list_namespaced_pod_disruption_budget(namespace).items
        return not names

    wait_for(pruned, what="the PodDisruptionBudget deleted at one replica")
