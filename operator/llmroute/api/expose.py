"""spec.expose of an LLMRoute: how clients outside the cluster reach the gateway.

One of a Gateway API HTTPRoute (attached to Gateways the platform runs) or an Ingress, plus
the namespaces whose pods (the Gateway's or the ingress controller's) the proxy's
NetworkPolicy admits. Parsed once here; llmroute.render.expose turns it into objects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from llmroute.api import validation
from llmroute.api.schema import schema_default

EXPOSE_FIELD: Final = "spec.expose"


class ExposeError(ValueError):
    """A spec.expose that cannot work; `field` names the field (llmroute.api.route turns it
    into a SpecError)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class ParentRef:
    """A Gateway (or one of its listeners) the HTTPRoute attaches to."""

    name: str
    namespace: str | None  # None: the route's namespace
    section_name: str | None
    port: int | None

    def manifest(self) -> dict[str, Any]:
        """As in HTTPRoute spec.parentRefs (group and kind default to a Gateway)."""
        ref: dict[str, Any] = {"name": self.name}
        if self.namespace is not None:
            ref["namespace"] = self.namespace
        if self.section_name is not None:
            ref["sectionName"] = self.section_name
        if self.port is not None:
            ref["port"] = self.port
        return ref


@dataclass(frozen=True)
class HTTPRouteExposure:
    parent_refs: tuple[ParentRef, ...]
    hostnames: tuple[str, ...]
    path: str  # the prefix clients call under, "/" or without a trailing slash


@dataclass(frozen=True)
class IngressExposure:
    host: str
    class_name: str | None  # None: the cluster's default IngressClass
    tls_secret_name: str | None
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Expose:
    http_route: HTTPRouteExposure | None
    ingress: IngressExposure | None
    # The namespaceSelector of the NetworkPolicy peer admitting the gateway's pods; None: the
    # default, the namespaces of the HTTPRoute's Gateways (gateway_namespaces).
    from_namespace: dict[str, Any] | None

    def gateway_namespaces(self, route_namespace: str) -> tuple[str, ...]:
        """The namespaces of the HTTPRoute's Gateways, sorted; none for an Ingress."""
        if self.http_route is None:
            return ()
        parents = self.http_route.parent_refs
        return tuple(sorted({p.namespace or route_namespace for p in parents}))

    @property
    def kind(self) -> str:
        return "HTTPRoute" if self.http_route is not None else "Ingress"


def _mapping(value: object, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ExposeError(path, "must be an object")
    return value


def _str(value: object, path: str, *, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            raise ExposeError(path, "is required")
        return None
    if not isinstance(value, str):
        raise ExposeError(path, "must be a string")
    return value


def _list(value: object, path: str) -> Sequence[Any]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ExposeError(path, "must be a list")
    return value


def _parent_ref(raw: object, path: str) -> ParentRef:
    ref = _mapping(raw, path)
    port = ref.get("port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int)):
        raise ExposeError(f"{path}.port", "must be an integer")
    return ParentRef(
        name=_str(ref.get("name"), f"{path}.name", required=True) or "",
        namespace=_str(ref.get("namespace"), f"{path}.namespace"),
        section_name=_str(ref.get("sectionName"), f"{path}.sectionName"),
        port=port,
    )


def _http_route(raw: object) -> HTTPRouteExposure:
    path = f"{EXPOSE_FIELD}.httpRoute"
    spec = _mapping(raw, path)
    parents = tuple(
        _parent_ref(ref, f"{path}.parentRefs[{i}]")
        for i, ref in enumerate(_list(spec.get("parentRefs"), f"{path}.parentRefs"))
    )
    if not parents:
        raise ExposeError(f"{path}.parentRefs", "needs at least one Gateway")
    hostnames = tuple(
        _str(h, f"{path}.hostnames[{i}]", required=True) or ""
        for i, h in enumerate(_list(spec.get("hostnames"), f"{path}.hostnames"))
    )
    prefix = _str(spec.get("path"), f"{path}.path") or schema_default(
        "LLMRoute", "spec.expose.httpRoute.path"
    )
    if not prefix.startswith("/"):
        raise ExposeError(f"{path}.path", "must start with /")
    return HTTPRouteExposure(
        parent_refs=parents,
        hostnames=hostnames,
        path=prefix.rstrip("/") or "/",
    )


def _ingress(raw: object) -> IngressExposure:
    path = f"{EXPOSE_FIELD}.ingress"
    spec = _mapping(raw, path)
    annotations = _mapping(spec.get("annotations"), f"{path}.annotations")
    for key, value in annotations.items():
        if not isinstance(value, str):
            raise ExposeError(f"{path}.annotations.{key}", "must be a string")
    return IngressExposure(
        host=_str(spec.get("host"), f"{path}.host", required=True) or "",
        class_name=_str(spec.get("className"), f"{path}.className"),
        tls_secret_name=_str(spec.get("tlsSecretName"), f"{path}.tlsSecretName"),
        annotations=dict(annotations),
    )


def parse_expose(raw: object) -> Expose | None:
    """spec.expose; None when absent."""
    if raw is None:
        return None
    spec = _mapping(raw, EXPOSE_FIELD)
    for error in validation.expose_errors(spec):
        raise ExposeError(error.path, error.message)
    http_route = _http_route(spec["httpRoute"]) if "httpRoute" in spec else None
    ingress = _ingress(spec["ingress"]) if "ingress" in spec else None
    selector = spec.get("fromNamespace")
    return Expose(
        http_route=http_route,
        ingress=ingress,
        from_namespace=(
            dict(_mapping(selector, f"{EXPOSE_FIELD}.fromNamespace"))
            if selector is not None
            else None
        ),
    )
