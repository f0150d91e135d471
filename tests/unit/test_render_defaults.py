"""Render's defaults (llmroute.render.defaults) equal the CRD's, so a route renders the same
whether or not it went through the API server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from llmroute.render import defaults

CRDS = Path(__file__).parents[2] / "crds"

# CRD field path -> the value render assumes when the field is absent.
SHARED = {
    "spec.models[].strategy": defaults.MODEL_STRATEGY,
    "spec.router.numRetries": defaults.ROUTER_NUM_RETRIES,
    "spec.router.timeoutSeconds": defaults.ROUTER_TIMEOUT_SECONDS,
    "spec.router.fallbackOn": list(defaults.ROUTER_FALLBACK_ON),
    "spec.router.allowedFails": defaults.ROUTER_ALLOWED_FAILS,
    "spec.router.cooldownSeconds": defaults.ROUTER_COOLDOWN_SECONDS,
    "spec.router.cache.enabled": defaults.ROUTER_CACHE_ENABLED,
    "spec.router.cache.ttlSeconds": defaults.ROUTER_CACHE_TTL_SECONDS,
    "spec.router.redis.port": defaults.ROUTER_REDIS_PORT,
    "spec.proxy.replicas": defaults.PROXY_REPLICAS,
    "spec.proxy.autoscaling.enabled": defaults.PROXY_AUTOSCALING_ENABLED,
    "spec.proxy.autoscaling.minReplicas": defaults.PROXY_AUTOSCALING_MIN_REPLICAS,
    "spec.proxy.autoscaling.maxReplicas": defaults.PROXY_AUTOSCALING_MAX_REPLICAS,
    "spec.proxy.autoscaling.targetCPUUtilizationPercentage": (
        defaults.PROXY_AUTOSCALING_TARGET_CPU_PERCENT
    ),
    "spec.proxy.logLevel": defaults.PROXY_LOG_LEVEL,
}
# Defaults only render knows: the CRD leaves these absent and documents render's behaviour.
RENDER_ONLY = {
    "spec.models[].targets[].weight",
    "spec.proxy.resources",
    "spec.proxy.workers",
}


def llmroute_schema() -> dict[str, Any]:
    for path in sorted(CRDS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            if doc["spec"]["names"]["kind"] == "LLMRoute":
                version = next(v for v in doc["spec"]["versions"] if v["name"] == "v1alpha1")
                return version["schema"]["openAPIV3Schema"]
    pytest.skip("no LLMRoute CRD in crds/")


def field(schema: dict[str, Any], path: str) -> dict[str, Any]:
    for part in path.split("."):
        schema = schema["properties"][part.removesuffix("[]")]
        if part.endswith("[]"):
            schema = schema["items"]
    return schema


@pytest.mark.parametrize("path", sorted(SHARED))
def test_crd_declares_the_same_default(path: str) -> None:
    declared = field(llmroute_schema(), path)
    assert "default" in declared, f"the CRD has no default for {path}"
    assert declared["default"] == SHARED[path]


@pytest.mark.parametrize("path", sorted(RENDER_ONLY))
def test_render_only_defaults_are_not_in_the_crd(path: str) -> None:
    assert "default" not in field(llmroute_schema(), path)
