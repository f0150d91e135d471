"""spec.expose: its validation (CEL mirrors and schema), parsing, rendering and condition."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from docs_blocks import fenced_blocks
from llmroute.api.route import SpecError, parse_route
from llmroute.api.validation import validate
from llmroute.payloads.gateway_auth import CALLER_ENDPOINTS
from llmroute.render import render_route
from llmroute.render.expose import EXPOSED_PREFIXES, render_exposure
from llmroute.route.exposure import exposed_condition
from llmroute.route.status import with_ready

BASE: dict[str, Any] = {
    "apiVersion": "llmroute.dev/v1alpha1",
    "kind": "LLMRoute",
    "metadata": {"name": "gw", "namespace": "team-a"},
    "spec": {
        "models": [
            {
                "name": "smart",
                "targets": [
                    {
                        "provider": "openai",
                        "model": "gpt-4o-mini",
                        "apiKeySecretRef": {"name": "keys", "key": "openai"},
                    }
                ],
            }
        ]
    },
}
HTTP_ROUTE = {"httpRoute": {"parentRefs": [{"name": "public", "namespace": "gateway-system"}]}}
INGRESS = {
    "ingress": {"host": "llm.example.com", "className": "nginx"},
    "fromNamespace": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
}


def route_with(expose: Any) -> dict[str, Any]:
    route = copy.deepcopy(BASE)
    route["spec"]["expose"] = copy.deepcopy(expose)
    return route


def errors(expose: Any) -> list[tuple[str, str]]:
    return [(e.path, e.message) for e in validate(route_with(expose))]


def test_either_an_http_route_or_an_ingress() -> None:
    assert errors(HTTP_ROUTE) == []
    assert errors(INGRESS) == []
    both = {**HTTP_ROUTE, **INGRESS}
    assert errors(both) == [("spec.expose", "set exactly one of httpRoute and ingress")]
    assert errors({}) == [("spec.expose", "set exactly one of httpRoute and ingress")]
    for bad in (both, {}):
        with pytest.raises(SpecError) as refused:
            parse_route(route_with(bad))
        assert refused.value.field == "spec.expose"


def test_an_ingress_names_its_controllers_namespace() -> None:
    # No default can guess where an ingress controller runs.
    expose = {"ingress": INGRESS["ingress"]}
    [(path, message)] = errors(expose)
    assert path == "spec.expose.fromNamespace"
    assert "ingress controller's pods" in message
    with pytest.raises(SpecError) as refused:
        parse_route(route_with(expose))
    assert refused.value.field == "spec.expose.fromNamespace"


@pytest.mark.parametrize(
    ("expose", "field"),
    [
        ({"httpRoute": {"parentRefs": []}}, "spec.expose.httpRoute.parentRefs"),
        ({"httpRoute": {}}, "spec.expose.httpRoute.parentRefs"),
        (
            {"httpRoute": {"parentRefs": [{"name": "Public_GW"}]}},
            "spec.expose.httpRoute.parentRefs[0].name",
        ),
        (
            {"httpRoute": {**HTTP_ROUTE["httpRoute"], "hostnames": ["LLM.example.com"]}},
            "spec.expose.httpRoute.hostnames[0]",
        ),
        (
            {"httpRoute": {**HTTP_ROUTE["httpRoute"], "path": "llm"}},
            "spec.expose.httpRoute.path",
        ),
        (
            {"httpRoute": {**HTTP_ROUTE["httpRoute"], "path": "/llm//v1"}},
            "spec.expose.httpRoute.path",
        ),
        ({**INGRESS, "ingress": {"host": "https://llm.example.com"}}, "spec.expose.ingress.host"),
        (
            {**INGRESS, "ingress": {"host": "llm.example.com", "tlsSecretName": "Bad_Name"}},
            "spec.expose.ingress.tlsSecretName",
        ),
        (
            {**INGRESS, "ingress": {"host": "x.example.com", "annotations": {"a b": "c"}}},
            "spec.expose.ingress.annotations[a b]",
        ),
        (
            {**INGRESS, "fromNamespace": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
            "spec.expose.fromNamespace.matchExpressions[0].values",
        ),
        ({**HTTP_ROUTE, "gateway": "public"}, "spec.expose.gateway"),
    ],
)
def test_what_the_api_server_would_refuse_is_refused_offline(expose: dict, field: str) -> None:
    assert field in [path for path, _ in errors(expose)]


def test_http_route_sends_the_apis_paths_to_the_proxy_service() -> None:
    route = parse_route(route_with(HTTP_ROUTE))
    http_route = render_exposure(route)
    assert http_route is not None
    assert http_route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert http_route["metadata"]["name"] == "gw"
    [rule] = http_route["spec"]["rules"]
    assert rule == {
        "matches": [{"path": {"type": "PathPrefix", "value": p}} for p in EXPOSED_PREFIXES],
        "backendRefs": [{"name": "gw", "port": 4000}],
    }
    assert "hostnames" not in http_route["spec"]


def under(path: str, prefix: str) -> bool:
    # PathPrefix and Ingress Prefix match whole path segments.
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def test_only_the_endpoints_callers_use_are_exposed() -> None:
    """LiteLLM answers /metrics (every caller's spend), /health, /config/yaml and its public
    pages without a key; none of them may be reachable from outside the cluster."""
    from litellm.proxy._types import LiteLLMRoutes

    unauthenticated = {*LiteLLMRoutes.public_routes.value, "/metrics", "/health/readiness"}
    reachable = {p for p in unauthenticated for prefix in EXPOSED_PREFIXES if under(p, prefix)}
    assert reachable == set()
    endpoints = [e.split("{")[0] for e in CALLER_ENDPOINTS]
    assert all(
        any(under(e, p) or e.startswith(p + "/") for p in EXPOSED_PREFIXES) for e in endpoints
    )


def test_http_route_under_a_path_strips_it() -> None:
    expose = {"httpRoute": {**HTTP_ROUTE["httpRoute"], "path": "/teams/a/"}}
    rules = render_exposure(parse_route(route_with(expose)))["spec"]["rules"]
    # One rule per prefix, as a rewrite replaces what its rule matched; the Gateway API allows
    # 16 rules.
    assert len(rules) == len(EXPOSED_PREFIXES) <= 16
    for rule, prefix in zip(rules, EXPOSED_PREFIXES, strict=True):
        assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/teams/a" + prefix}}]
        assert rule["filters"] == [
            {
                "type": "URLRewrite",
                "urlRewrite": {
                    "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": prefix}
                },
            }
        ]


def proxy_policy_peers(route: dict) -> list[list[dict]]:
    rendered = render_route(parse_route(route), operator_namespace="ops")
    [policy] = [
        o
        for o in rendered.objects
        if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "gw-litellm"
    ]
    return [rule["from"] for rule in policy["spec"]["ingress"]]


def test_network_policy_admits_the_gateways_namespaces_by_default() -> None:
    expose = {
        "httpRoute": {
            "parentRefs": [
                {"name": "public", "namespace": "gateway-system"},
                {"name": "local"},  # the route's own namespace
                {"name": "public", "namespace": "gateway-system", "sectionName": "https"},
            ]
        }
    }
    peers = proxy_policy_peers(route_with(expose))
    gateways = {
        "namespaceSelector": {
            "matchExpressions": [
                {
                    "key": "kubernetes.io/metadata.name",
                    "operator": "In",
                    "values": ["gateway-system", "team-a"],
                }
            ]
        }
    }
    assert [gateways] in peers
    # Without expose, no such rule: only the route's namespace and the operator.
    assert len(proxy_policy_peers(BASE)) == len(peers) - 1


def test_network_policy_admits_the_namespaces_of_from_namespace() -> None:
    selector = {"matchLabels": {"gateway": "true"}}
    peers = proxy_policy_peers(route_with({**HTTP_ROUTE, "fromNamespace": selector}))
    assert [{"namespaceSelector": selector}] in peers
    peers = proxy_policy_peers(route_with(INGRESS))
    assert [{"namespaceSelector": INGRESS["fromNamespace"]}] in peers


def test_ingress_without_tls_or_class() -> None:
    expose = {"ingress": {"host": "*.llm.example.com"}, "fromNamespace": {}}
    ingress = render_exposure(parse_route(route_with(expose)))
    assert ingress["spec"] == {
        "rules": [
            {
                "host": "*.llm.example.com",
                "http": {
                    "paths": [
                        {
                            "path": prefix,
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "gw", "port": {"number": 4000}}},
                        }
                        for prefix in EXPOSED_PREFIXES
                    ]
                },
            }
        ]
    }
    assert "annotations" not in ingress["metadata"]


def condition_of(conditions: list[dict], type_: str) -> dict | None:
    return next((c for c in conditions if c["type"] == type_), None)


def test_exposed_condition() -> None:
    served = [
        {"type": t, "status": "True", "reason": "x", "message": "x", "lastTransitionTime": "t"}
        for t in ("ConfigValid", "SecretsResolved", "Applied", "ProxyAvailable")
    ]
    route = parse_route(route_with(HTTP_ROUTE))

    exposed = with_ready(exposed_condition(served, route, None, 3), 3)
    condition = condition_of(exposed, "Exposed")
    assert (condition["status"], condition["reason"]) == ("True", "HTTPRouteApplied")
    assert "gateway-system/public" in condition["message"]
    assert condition_of(exposed, "Ready")["status"] == "True"

    # Where the Gateway API is not installed: said so, and Ready held back.
    missing = with_ready(exposed_condition(exposed, route, "HTTPRoute", 3), 3)
    condition = condition_of(missing, "Exposed")
    assert (condition["status"], condition["reason"]) == ("False", "GatewayAPINotInstalled")
    assert "Gateway API CRDs" in condition["message"]
    ready = condition_of(missing, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ExposedNotTrue")

    ingress = exposed_condition(served, parse_route(route_with(INGRESS)), None, 3)
    condition = condition_of(ingress, "Exposed")
    assert (condition["status"], condition["reason"]) == ("True", "IngressApplied")
    assert "http://llm.example.com/" in condition["message"]

    # Without spec.expose the condition goes away.
    assert condition_of(exposed_condition(missing, parse_route(BASE), None, 4), "Exposed") is None


def test_the_examples_of_docs_expose_validate_and_render_as_shown() -> None:
    markdown = (Path(__file__).parents[2] / "docs" / "expose.md").read_text()
    blocks = [yaml.safe_load(b) for b in fenced_blocks(markdown, "yaml")]
    exposures = [b["spec"]["expose"] for b in blocks if "expose" in b.get("spec", {})]
    assert len(exposures) == 2
    for expose in exposures:
        assert errors(expose) == []
    [example_route] = [b for b in blocks if b.get("kind") == "LLMRoute"]
    route = route_with(example_route["spec"]["expose"])
    route["metadata"] = example_route["metadata"]
    [shown] = [b for b in blocks if b.get("kind") == "HTTPRoute"]
    rendered = render_exposure(parse_route(route))
    assert rendered["spec"] == shown["spec"]
    assert rendered["metadata"]["name"] == shown["metadata"]["name"]
