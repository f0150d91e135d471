"""The table of child kinds: what render produces is in it, and what derives from it agrees."""

from __future__ import annotations

from pathlib import Path

import yaml

from llmroute import kube
from llmroute.api.route import parse_route
from llmroute.render import render_route
from llmroute.render.children import (
    CHILD_KINDS,
    drift_watched_resources,
    plurals,
    prunable_children,
)
from llmroute.render.labels import COMPONENT_LABEL, MANAGED_BY, ROUTE_LABEL

GOLDEN = Path(__file__).parent / "golden"


# spec.expose asks for one of these two; the routes below take turns.
EXPOSURES = (
    {"httpRoute": {"parentRefs": [{"name": "public", "namespace": "gateway-system"}]}},
    {"ingress": {"host": "llm.example.com"}, "fromNamespace": {}},
)


def every_child_kind_route(expose: dict | None = None) -> dict:
    """A route that asks for every optional child: autoscaling (PDB, HPA), a managed Ollama,
    a managed Redis and an exposure (an HTTPRoute, or the Ingress of `expose`)."""
    route = yaml.safe_load((GOLDEN / "autoscaling" / "route.yaml").read_text())
    route["spec"]["models"].append(
        {"name": "local", "targets": [{"provider": "ollama", "model": "llama3.2"}]}
    )
    route["spec"]["ollama"] = {"models": ["llama3.2"]}
    route["spec"]["expose"] = expose or EXPOSURES[0]
    route["spec"]["redis"] = {"managed": {}}
    return route


def test_every_rendered_object_is_a_child_kind_named_and_labelled_from_the_table() -> None:
    objects = []
    for expose in EXPOSURES:
        rendered = render_route(parse_route(every_child_kind_route(expose)))
        objects += [*rendered.objects, rendered.generated_secret, rendered.generated_redis_secret]
    by_kind_component = {(c.kind, c.component): c for c in CHILD_KINDS}
    for obj in objects:
        labels = obj["metadata"]["labels"]
        child = by_kind_component[(obj["kind"], labels[COMPONENT_LABEL])]
        assert obj["apiVersion"] == child.api_version
        assert obj["metadata"]["name"] == child.name("scaled")
        assert labels[ROUTE_LABEL] == "scaled"
        assert MANAGED_BY.items() <= labels.items()
    rendered_kinds = {(o["kind"], o["metadata"]["labels"][COMPONENT_LABEL]) for o in objects}
    applied = {(c.kind, c.component) for c in CHILD_KINDS if c.applied}
    assert applied <= rendered_kinds


def test_optional_children_are_the_ones_a_plain_route_goes_without() -> None:
    route = yaml.safe_load((GOLDEN / "priority-chain" / "route.yaml").read_text())
    rendered = render_route(parse_route(route))
    plain = {o["kind"] for o in rendered.objects}
    for child in CHILD_KINDS:
        if child.prunable:
            assert child.optional
        if child.applied and child.component == "proxy" and not child.optional:
            assert child.kind in plain


def test_prunable_children_are_those_the_operator_may_delete() -> None:
    assert [(c.kind, c.suffix) for c in prunable_children()] == [
        ("PodDisruptionBudget", "-litellm"),
        ("HorizontalPodAutoscaler", "-litellm"),
        ("StatefulSet", "-ollama"),
        ("Service", "-ollama"),
        ("NetworkPolicy", "-ollama"),
        ("StatefulSet", "-redis"),
        ("Service", "-redis"),
        ("NetworkPolicy", "-redis"),
        ("HTTPRoute", ""),
        ("Ingress", ""),
    ]
    # Retained: the generated master key (clients hold it), the generated Redis password (the
    # running Redis holds it; it goes with the route) and the models' volumes.
    assert {c.kind for c in CHILD_KINDS if not c.prunable and c.optional} == {
        "Secret",
        "PersistentVolumeClaim",
    }


def test_kube_reaches_every_child_kind_by_its_plural() -> None:
    for child in CHILD_KINDS:
        path = kube.object_path(child.api_version, child.kind, "ns", "x")
        prefix = "/api/v1" if child.api_version == "v1" else f"/apis/{child.api_version}"
        assert path == f"{prefix}/namespaces/ns/{child.plural}/x"
    assert len(plurals()) == len({(c.api_version, c.kind) for c in CHILD_KINDS})


def test_drift_is_watched_once_per_resource_for_applied_kinds_without_their_own_handler() -> None:
    assert drift_watched_resources() == [
        ("", "v1", "configmaps"),
        ("", "v1", "services"),
        ("networking.k8s.io", "v1", "networkpolicies"),
        ("policy", "v1", "poddisruptionbudgets"),
        ("autoscaling", "v2", "horizontalpodautoscalers"),
        ("gateway.networking.k8s.io", "v1", "httproutes"),
        ("networking.k8s.io", "v1", "ingresses"),
    ]
