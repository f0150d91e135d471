"""A route's spec.expose in the cluster: whether its kind is served there, and the Exposed
condition.

The Gateway API is a set of CRDs a cluster may not have. A route asking for an HTTPRoute there
gets Exposed=False saying so; everything else of the route is applied and serves inside the
cluster, and the route is reconciled again after a while, so installing the CRDs is enough.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from kubernetes import client

from llmroute import kube, reasons
from llmroute.api.route import Route
from llmroute.conditions import set_condition
from llmroute.render import RenderedRoute
from llmroute.render.children import CHILD_KINDS

CONDITION: Final = "Exposed"
# Seconds before a route whose exposure kind the cluster does not serve is reconciled again:
# installing the Gateway API CRDs raises no event on the route.
UNSERVED_RETRY_DELAY: Final = 60
# What to install for each kind a cluster may lack.
_MISSING_API_HINT: Final = {
    "HTTPRoute": (
        reasons.GATEWAY_API_NOT_INSTALLED,
        "the Gateway API CRDs (standard channel, https://gateway-api.sigs.k8s.io) are not "
        "installed",
    ),
}


def _plural(api_version: str, kind: str) -> str:
    return next(c.plural for c in CHILD_KINDS if (c.api_version, c.kind) == (api_version, kind))


def without_unserved_exposure(
    api: client.ApiClient, rendered: RenderedRoute
) -> tuple[RenderedRoute, str | None]:
    """`rendered` without its exposure object when the cluster does not serve its kind, and
    that kind (None when it is served, or the route asks for none). Only kinds that may be
    missing (the Gateway API's) are looked up."""
    for obj in rendered.objects:
        kind, api_version = obj["kind"], obj["apiVersion"]
        if kind in _MISSING_API_HINT and not kube.serves(
            api, api_version, _plural(api_version, kind)
        ):
            kept = [o for o in rendered.objects if o is not obj]
            return replace(rendered, objects=kept), kind
    return rendered, None


def exposed_condition(
    conditions: list[dict], route: Route, unserved_kind: str | None, generation: int | None
) -> list[dict]:
    """Exposed: whether the object of spec.expose is applied; removed without spec.expose."""
    expose = route.expose
    if expose is None:
        return [c for c in conditions if c.get("type") != CONDITION]
    if unserved_kind is not None:
        reason, missing = _MISSING_API_HINT[unserved_kind]
        return set_condition(
            conditions,
            CONDITION,
            False,
            reason,
            f"spec.expose asks for a {unserved_kind}, but {missing} in this cluster; the "
            "gateway serves inside the cluster meanwhile, and the route is exposed once they "
            "are installed",
            generation,
        )
    name = f"{route.namespace}/{route.name}"
    if expose.http_route is not None:
        exposure = expose.http_route
        hosts = ", ".join(exposure.hostnames) or "every host name of its listeners"
        gateways = ", ".join(
            f"{p.namespace or route.namespace}/{p.name}"
            + (f" ({p.section_name})" if p.section_name else "")
            for p in exposure.parent_refs
        )
        message = (
            f"HTTPRoute {name} sends {hosts} under {exposure.path} to the proxy, through "
            f"Gateway {gateways}; the HTTPRoute's status.parents says whether each Gateway "
            "accepted it"
        )
        return set_condition(
            conditions, CONDITION, True, reasons.HTTP_ROUTE_APPLIED, message, generation
        )
    assert expose.ingress is not None
    ingress = expose.ingress
    scheme = "https" if ingress.tls_secret_name else "http"
    message = (
        f"Ingress {name} sends {scheme}://{ingress.host}/ to the proxy"
        + (f" (class {ingress.class_name})" if ingress.class_name else "")
        + "; its status.loadBalancer shows the address once the controller admits it"
    )
    return set_condition(conditions, CONDITION, True, reasons.INGRESS_APPLIED, message, generation)
