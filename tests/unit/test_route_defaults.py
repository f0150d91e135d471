"""The typed route's defaults (llmroute.api.route) are the CRD's, so a route renders the same
whether or not it went through the API server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from llmroute.api.route import Route, parse_route

CRDS = Path(__file__).parents[2] / "crds"

# A route that sets none of the defaulted fields (the Redis only so that its fields default).
MINIMAL = {
    "metadata": {"name": "gw", "namespace": "ns"},
    "spec": {
        "models": [{"name": "m", "targets": [{"provider": "openai", "model": "gpt-4o"}]}],
        "redis": {"external": {"url": "redis://redis"}},
    },
}
# The same with a managed Redis (spec.redis holds one of managed and external).
MINIMAL_MANAGED = {**MINIMAL, "spec": {**MINIMAL["spec"], "redis": {"managed": {}}}}

# CRD field path -> the value the typed route takes when the field is absent.
SHARED = {
    "spec.models[].strategy": lambda r: r.models[0].strategy,
    "spec.router.numRetries": lambda r: r.router.num_retries,
    "spec.router.timeoutSeconds": lambda r: r.router.timeout_seconds,
    "spec.router.fallbackOn": lambda r: r.router.fallback_on,
    "spec.router.allowedFails": lambda r: r.router.allowed_fails,
    "spec.router.cooldownSeconds": lambda r: r.router.cooldown_seconds,
    "spec.router.cache.enabled": lambda r: r.router.cache_enabled,
    "spec.router.cache.ttlSeconds": lambda r: r.router.cache_ttl_seconds,
    "spec.redis.external.tls": lambda r: r.redis.external.tls,
    "spec.redis.managed.persistence.enabled": lambda r: r.redis.managed.persistence,
    "spec.redis.managed.persistence.size": lambda r: r.redis.managed.storage_size,
    "spec.proxy.replicas": lambda r: r.proxy.replicas,
    "spec.proxy.autoscaling.enabled": lambda r: r.proxy.autoscaling.enabled,
    "spec.proxy.autoscaling.minReplicas": lambda r: r.proxy.autoscaling.min_replicas,
    "spec.proxy.autoscaling.maxReplicas": lambda r: r.proxy.autoscaling.max_replicas,
    "spec.proxy.autoscaling.targetCPUUtilizationPercentage": (
        lambda r: r.proxy.autoscaling.target_cpu_percent
    ),
    "spec.proxy.logLevel": lambda r: r.proxy.log_level,
}
# Defaults only the typed route knows: the CRD leaves these absent and documents the behaviour.
RENDER_ONLY = {
    "spec.models[].targets[].weight",
    "spec.proxy.resources",
    "spec.proxy.workers",
    "spec.redis.managed.resources",
}


def parsed_default(path: str) -> Any:
    route: Route = parse_route(
        MINIMAL_MANAGED if path.startswith("spec.redis.managed.") else MINIMAL
    )
    value = SHARED[path](route)
    return sorted(value) if isinstance(value, frozenset) else value


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
    expected = declared["default"]
    assert (sorted(expected) if isinstance(expected, list) else expected) == parsed_default(path)


@pytest.mark.parametrize("path", sorted(RENDER_ONLY))
def test_render_only_defaults_are_not_in_the_crd(path: str) -> None:
    assert "default" not in field(llmroute_schema(), path)
