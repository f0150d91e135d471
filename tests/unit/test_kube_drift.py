"""Drift and field ownership, read from objects as the API server returns them."""

from __future__ import annotations

from typing import Any

from llmroute.kube import (
    FIELD_MANAGER,
    HANDOVER_FIELD_MANAGER,
    edited_by_others,
    manages_field,
    scaled_by_others,
)
from llmroute.render.labels import REPLICAS_ANNOTATION
from manifests import render_manifest

OURS_AT_10 = {
    "manager": FIELD_MANAGER,
    "operation": "Apply",
    "time": "2026-11-30T10:00:00Z",
    "fieldsV1": {"f:metadata": {"f:labels": {}}, "f:spec": {"f:replicas": {}, "f:template": {}}},
}


def deployment(replicas: int, annotation: str | None, *entries: dict) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "gw-litellm", "managedFields": [OURS_AT_10, *entries]}
    if annotation is not None:
        metadata["annotations"] = {REPLICAS_ANNOTATION: annotation}
    return {"metadata": metadata, "spec": {"replicas": replicas}}


def scale(manager: str, time: str = "2026-11-30T10:00:05Z") -> dict:
    # What `kubectl scale` (or an autoscaler) leaves: an entry of the scale subresource.
    return {
        "manager": manager,
        "operation": "Update",
        "subresource": "scale",
        "time": time,
        "fieldsV1": {"f:spec": {"f:replicas": {}}},
    }


def test_a_hand_scale_is_drift_while_the_route_owns_the_count() -> None:
    scaled = deployment(3, "1", scale("kubectl"))
    assert scaled_by_others(scaled)
    # Written through the scale subresource, it does not show as an edit of the object.
    assert not edited_by_others(scaled)
    assert not scaled_by_others(deployment(1, "1", scale("kubectl")))


def test_with_an_autoscaler_any_count_is_its_own() -> None:
    assert not scaled_by_others(deployment(3, None, scale("kube-controller-manager")))
    assert not scaled_by_others(deployment(7, None, scale("kubectl")))


def test_the_rendered_deployment_records_the_count_it_asks_for() -> None:
    def rendered(proxy: dict) -> dict:
        route = {
            "apiVersion": "llmroute.dev/v1alpha1",
            "kind": "LLMRoute",
            "metadata": {"name": "gw", "namespace": "apps"},
            "spec": {
                "models": [{"name": "m", "targets": [{"provider": "ollama", "model": "llama3.2"}]}],
                "proxy": proxy,
            },
        }
        objects = render_manifest(route).objects
        return next(o for o in objects if o["kind"] == "Deployment")

    fixed = rendered({"replicas": 3})
    assert fixed["spec"]["replicas"] == 3
    assert fixed["metadata"]["annotations"] == {REPLICAS_ANNOTATION: "3"}
    assert not scaled_by_others(fixed)
    scaled = rendered({"autoscaling": {"enabled": True, "minReplicas": 2}})
    assert "replicas" not in scaled["spec"]
    assert REPLICAS_ANNOTATION not in (scaled["metadata"].get("annotations") or {})


def test_field_ownership_is_read_from_managed_fields() -> None:
    obj = deployment(5, None)
    assert manages_field(obj, FIELD_MANAGER, ("spec", "replicas"))
    assert manages_field(obj, FIELD_MANAGER, ("spec",))
    assert not manages_field(obj, FIELD_MANAGER, ("spec", "selector"))
    assert not manages_field(obj, "kubectl", ("spec", "replicas"))
    # An entry of the scale subresource is not the object's own apply.
    assert not manages_field(deployment(5, None, scale("x")), "x", ("spec", "replicas"))


def test_the_hand_over_manager_is_the_operator_not_drift() -> None:
    handover = {
        "manager": HANDOVER_FIELD_MANAGER,
        "operation": "Apply",
        "time": "2026-11-30T10:00:00Z",
        "fieldsV1": {"f:spec": {"f:replicas": {}}},
    }
    assert not edited_by_others(deployment(5, None, handover))
    someone = {**handover, "manager": "kubectl-edit", "operation": "Update"}
    assert edited_by_others(deployment(5, None, someone))
