"""The object that lets clients outside the cluster reach a route (spec.expose): a Gateway API
HTTPRoute or an Ingress, named after the route and sending requests to its proxy Service; and
the NetworkPolicy rule that admits the Gateway's or ingress controller's pods.

Plain dicts, without ownerReferences (the reconcile adds them).
"""

from __future__ import annotations

from typing import Any, Final

from llmroute.api.route import Route
from llmroute.payloads.gateway_auth import CALLER_ENDPOINTS
from llmroute.render.labels import NAMESPACE_NAME_LABEL, proxy_labels
from llmroute.render.names import PROXY_PORT, exposure_name, service_name

HTTP_ROUTE_API_VERSION: Final = "gateway.networking.k8s.io/v1"
# The paths outside clients reach: the first segment of every endpoint a caller may use
# (/v1, /chat, /openai, ...). LiteLLM answers some paths without a key (/metrics with every
# caller's spend, /health/*, /config/yaml, /public/*, its UI): those stay inside the cluster.
EXPOSED_PREFIXES: Final = tuple(
    sorted(
        {"/" + e.lstrip("/").split("/")[0].split("{")[0].split(":")[0] for e in CALLER_ENDPOINTS}
    )
)


def render_exposure(route: Route) -> dict[str, Any] | None:
    """The route's HTTPRoute or Ingress; None without spec.expose."""
    expose = route.expose
    if expose is None:
        return None
    if expose.http_route is not None:
        return render_http_route(route)
    return render_ingress(route)


def render_http_route(route: Route) -> dict[str, Any]:
    assert route.expose is not None and route.expose.http_route is not None
    exposure = route.expose.http_route
    base = exposure.path.rstrip("/")
    backend = [{"name": service_name(route.name), "port": PROXY_PORT}]
    if not base:
        rules: list[dict[str, Any]] = [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": p}} for p in EXPOSED_PREFIXES],
                "backendRefs": backend,
            }
        ]
    else:
        # The proxy serves the OpenAI API at its root (/v1/chat/completions): clients call
        # <path>/v1/..., the proxy sees /v1/... A rewrite replaces what its rule matched, so
        # one rule per prefix.
        rules = [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": base + prefix}}],
                "filters": [
                    {
                        "type": "URLRewrite",
                        "urlRewrite": {
                            "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": prefix}
                        },
                    }
                ],
                "backendRefs": backend,
            }
            for prefix in EXPOSED_PREFIXES
        ]
    spec: dict[str, Any] = {"parentRefs": [p.manifest() for p in exposure.parent_refs]}
    if exposure.hostnames:
        spec["hostnames"] = list(exposure.hostnames)
    spec["rules"] = rules
    return {
        "apiVersion": HTTP_ROUTE_API_VERSION,
        "kind": "HTTPRoute",
        "metadata": {
            "name": exposure_name(route.name),
            "namespace": route.namespace,
            "labels": proxy_labels(route.name),
        },
        "spec": spec,
    }


def render_ingress(route: Route) -> dict[str, Any]:
    assert route.expose is not None and route.expose.ingress is not None
    exposure = route.expose.ingress
    metadata: dict[str, Any] = {
        "name": exposure_name(route.name),
        "namespace": route.namespace,
        "labels": proxy_labels(route.name),
    }
    if exposure.annotations:
        metadata["annotations"] = dict(sorted(exposure.annotations.items()))
    spec: dict[str, Any] = {}
    if exposure.class_name is not None:
        spec["ingressClassName"] = exposure.class_name
    if exposure.tls_secret_name is not None:
        spec["tls"] = [{"hosts": [exposure.host], "secretName": exposure.tls_secret_name}]
    spec["rules"] = [
        {
            "host": exposure.host,
            "http": {
                "paths": [
                    {
                        "path": prefix,
                        "pathType": "Prefix",
                        "backend": {
                            "service": {
                                "name": service_name(route.name),
                                "port": {"number": PROXY_PORT},
                            }
                        },
                    }
                    for prefix in EXPOSED_PREFIXES
                ]
            },
        }
    ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata,
        "spec": spec,
    }


def exposure_ingress_rules(route: Route) -> list[dict[str, Any]]:
    """The proxy NetworkPolicy's rule admitting the pods that carry outside clients' requests
    (the Gateway's, or the ingress controller's), as a list: empty without spec.expose.

    Without fromNamespace, an HTTPRoute's Gateways' namespaces, by name: the namespace label
    kubernetes.io/metadata.name is set by the API server, so no other namespace can claim it.
    """
    expose = route.expose
    if expose is None:
        return []
    selector = expose.from_namespace
    if selector is None:
        selector = {
            "matchExpressions": [
                {
                    "key": NAMESPACE_NAME_LABEL,
                    "operator": "In",
                    "values": list(expose.gateway_namespaces(route.namespace)),
                }
            ]
        }
    return [
        {
            "from": [{"namespaceSelector": selector}],
            "ports": [{"protocol": "TCP", "port": PROXY_PORT}],
        }
    ]
