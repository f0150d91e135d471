"""spec.expose against the real API server and the operator as a process: the HTTPRoute (with
the Gateway API CRDs installed from the pinned module, and without them) and the Ingress are
applied, owned, updated, restored and pruned; the proxy's NetworkPolicy admits the gateway's
namespace while the route is exposed."""

from __future__ import annotations

import os

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from llmroute import kube
from llmroute.api import GROUP, ROUTE_PLURAL, VERSION
from llmroute.render.expose import EXPOSED_PREFIXES
from localcluster import LocalCluster, tools, wait_for

# The process runner is the node's kubelet: proxy pods are Ready only once their proxy serves.
pytestmark = pytest.mark.usefixtures("operator", "process_runner")

HTTP_ROUTE_API = ("gateway.networking.k8s.io", "v1", "httproutes")
GATEWAY_NAMESPACE = "gateway-system"
INGRESS_NAMESPACE = "ingress-system"
# The retry of a route whose HTTPRoute the cluster cannot take is 60 s; the machine is loaded.
EXPOSED_TIMEOUT = 240


def route_manifest(expose: dict) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LLMRoute",
        "metadata": {"name": "gw"},
        "spec": {
            "models": [
                {
                    "name": "smart",
                    "targets": [
                        {
                            "provider": "openai",
                            "model": "gpt-4o-mini",
                            "apiKeySecretRef": {"name": "provider-keys", "key": "openai"},
                        }
                    ],
                }
            ],
            "expose": expose,
        },
    }


def get_route(custom: client.CustomObjectsApi, namespace: str) -> dict:
    return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, ROUTE_PLURAL, "gw")


def condition(route: dict, type_: str) -> dict | None:
    conditions = (route.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), None)


def wait_condition(
    custom: client.CustomObjectsApi,
    namespace: str,
    type_: str,
    status: str,
    reason: str | None = None,
    timeout: float = 180,
) -> dict:
    def probe() -> dict | None:
        route = get_route(custom, namespace)
        found = condition(route, type_)
        if found and found["status"] == status and reason in (None, found["reason"]):
            return route
        return None

    return wait_for(probe, timeout=timeout, what=f"gw {type_}={status} {reason or ''}")


def http_route(custom: client.CustomObjectsApi, namespace: str) -> dict | None:
    try:
        return custom.get_namespaced_custom_object(
            *HTTP_ROUTE_API[:2], namespace, "httproutes", "gw"
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def ingress(networking: client.NetworkingV1Api, namespace: str) -> dict | None:
    try:
        return networking.api_client.sanitize_for_serialization(
            networking.read_namespaced_ingress("gw", namespace)
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def owners(obj: dict) -> list[tuple]:
    return [
        (o["kind"], o["name"], o["uid"], o.get("controller"))
        for o in obj["metadata"].get("ownerReferences") or []
    ]


def policy_namespace_peers(networking: client.NetworkingV1Api, namespace: str) -> list[dict]:
    """The namespaceSelectors the proxy's NetworkPolicy admits on their own (no podSelector)."""
    policy = networking.api_client.sanitize_for_serialization(
        networking.read_namespaced_network_policy("gw-litellm", namespace)
    )
    return [
        peer["namespaceSelector"]
        for rule in policy["spec"]["ingress"]
        for peer in rule["from"]
        if set(peer) == {"namespaceSelector"}
    ]


def remove_expose(custom: client.CustomObjectsApi, namespace: str) -> None:
    # A merge patch: null removes the field.
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, ROUTE_PLURAL, "gw", {"spec": {"expose": None}}
    )


@pytest.fixture
def apis(api: client.ApiClient):
    return client.CoreV1Api(api), client.CustomObjectsApi(api), client.NetworkingV1Api(api)


@pytest.fixture
def gateway_api_crds() -> str:
    crd_dir = tools.gateway_api_crd_dir()
    if not any(crd_dir.glob("*.yaml")):
        message = f"missing the Gateway API CRDs in {crd_dir}; run `{tools.BUILD_COMMAND}`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return str(crd_dir)


def test_http_route_from_missing_gateway_api_to_pruned(
    apis, api: client.ApiClient, namespace: str, cluster: LocalCluster, gateway_api_crds: str
) -> None:
    core, custom, networking = apis
    # This module is the only one that installs the Gateway API, and only below.
    assert not kube.serves(api, "gateway.networking.k8s.io/v1", "httproutes")
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "provider-keys"}, "stringData": {"openai": "sk-x"}}
    )
    expose = {
        "httpRoute": {
            "parentRefs": [{"name": "public", "namespace": GATEWAY_NAMESPACE}],
            "hostnames": ["llm.example.com"],
        }
    }
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, ROUTE_PLURAL, route_manifest(expose)
    )

    # No Gateway API: said so, and nothing else breaks: the proxy is applied and serves.
    route = wait_condition(custom, namespace, "ProxyAvailable", "True", timeout=240)
    route = wait_condition(custom, namespace, "Exposed", "False", "GatewayAPINotInstalled")
    assert "Gateway API CRDs" in condition(route, "Exposed")["message"]
    assert condition(route, "Applied")["status"] == "True"
    assert condition(route, "ConfigValid")["status"] == "True"
    ready = condition(route, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ExposedNotTrue")

    # The CRDs installed: the route gets its HTTPRoute without being touched.
    cluster.install_crds(tools.gateway_api_crd_dir())
    route = wait_condition(
        custom, namespace, "Exposed", "True", "HTTPRouteApplied", timeout=EXPOSED_TIMEOUT
    )
    route = wait_condition(custom, namespace, "Ready", "True")
    uid = route["metadata"]["uid"]
    applied = http_route(custom, namespace)
    assert applied is not None
    assert owners(applied) == [("LLMRoute", "gw", uid, True)]
    assert applied["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "llmroute"
    assert applied["spec"]["hostnames"] == ["llm.example.com"]
    assert [(p["name"], p["namespace"]) for p in applied["spec"]["parentRefs"]] == [
        ("public", GATEWAY_NAMESPACE)
    ]
    [rule] = applied["spec"]["rules"]
    assert [(b["name"], b["port"]) for b in rule["backendRefs"]] == [("gw", 4000)]
    gateway_peer = {
        "matchExpressions": [
            {
                "key": "kubernetes.io/metadata.name",
                "operator": "In",
                "values": [GATEWAY_NAMESPACE],
            }
        ]
    }
    assert gateway_peer in policy_namespace_peers(networking, namespace)

    # Updated with the route.
    custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        ROUTE_PLURAL,
        "gw",
        {"spec": {"expose": {"httpRoute": {"hostnames": ["ai.example.com"], "path": "/llm"}}}},
    )
    updated = wait_for(
        lambda: (
            (r := http_route(custom, namespace))
            and r["spec"].get("hostnames") == ["ai.example.com"]
            and r
        ),
        timeout=120,
        what="the HTTPRoute's new host name",
    )
    # One rule per exposed prefix, each rewriting /llm/<prefix> to <prefix>.
    rules = updated["spec"]["rules"]
    assert [r["matches"][0]["path"]["value"] for r in rules] == [
        "/llm" + p for p in EXPOSED_PREFIXES
    ]
    assert [r["filters"][0]["urlRewrite"]["path"]["replacePrefixMatch"] for r in rules] == list(
        EXPOSED_PREFIXES
    )

    # Deleted by hand: restored (the operator follows the kind it found at run time).
    before = updated["metadata"]["uid"]
    custom.delete_namespaced_custom_object(*HTTP_ROUTE_API[:2], namespace, "httproutes", "gw")
    wait_for(
        lambda: (r := http_route(custom, namespace)) and r["metadata"]["uid"] != before,
        timeout=120,
        what="the HTTPRoute restored",
    )

    # spec.expose removed: the HTTPRoute is pruned, the policy rule and the condition go.
    remove_expose(custom, namespace)
    wait_for(
        lambda: http_route(custom, namespace) is None, timeout=120, what="the HTTPRoute pruned"
    )
    wait_for(
        lambda: condition(get_route(custom, namespace), "Exposed") is None,
        timeout=60,
        what="Exposed gone",
    )
    assert gateway_peer not in policy_namespace_peers(networking, namespace)
    assert condition(get_route(custom, namespace), "Ready")["status"] == "True"


def test_ingress_applied_owned_updated_and_pruned(apis, namespace: str) -> None:
    core, custom, networking = apis
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "provider-keys"}, "stringData": {"openai": "sk-x"}}
    )
    controller_namespace = {"matchLabels": {"kubernetes.io/metadata.name": INGRESS_NAMESPACE}}
    expose = {
        "ingress": {
            "className": "nginx",
            "host": "llm.example.com",
            "tlsSecretName": "llm-example-com-tls",
            "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": "600"},
        },
        "fromNamespace": controller_namespace,
    }
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, ROUTE_PLURAL, route_manifest(expose)
    )
    route = wait_condition(custom, namespace, "Ready", "True", timeout=240)
    assert condition(route, "Exposed")["reason"] == "IngressApplied"
    applied = ingress(networking, namespace)
    assert applied is not None
    assert owners(applied) == [("LLMRoute", "gw", route["metadata"]["uid"], True)]
    assert applied["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"] == (
        "600"
    )
    spec = applied["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"hosts": ["llm.example.com"], "secretName": "llm-example-com-tls"}]
    [rule] = spec["rules"]
    assert rule["host"] == "llm.example.com"
    assert [p["path"] for p in rule["http"]["paths"]] == list(EXPOSED_PREFIXES)
    assert rule["http"]["paths"][0]["backend"]["service"] == {
        "name": "gw",
        "port": {"number": 4000},
    }
    assert controller_namespace in policy_namespace_peers(networking, namespace)

    custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        ROUTE_PLURAL,
        "gw",
        {"spec": {"expose": {"ingress": {"host": "ai.example.com", "tlsSecretName": None}}}},
    )
    updated = wait_for(
        lambda: (
            (i := ingress(networking, namespace))
            and i["spec"]["rules"][0]["host"] == "ai.example.com"
            and i
        ),
        timeout=120,
        what="the Ingress's new host",
    )
    assert "tls" not in updated["spec"]

    remove_expose(custom, namespace)
    wait_for(lambda: ingress(networking, namespace) is None, timeout=120, what="the Ingress pruned")
    wait_for(
        lambda: controller_namespace not in policy_namespace_peers(networking, namespace),
        timeout=60,
        what="the ingress controller's namespace no longer admitted",
    )
