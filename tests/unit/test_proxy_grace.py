"""The proxy pod's terminationGracePeriodSeconds covers the longest request it may be serving."""

from __future__ import annotations

from typing import Any

from llmroute.api.route import parse_route
from llmroute.render.proxy import (
    MAX_TERMINATION_GRACE_SECONDS,
    PRE_STOP_SLEEP_SECONDS,
    SHUTDOWN_SECONDS,
    longest_request_seconds,
    termination_grace_seconds,
)
from manifests import render_manifest


def target(model: str, timeout: int | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"provider": "ollama", "model": model}
    if timeout is not None:
        spec["timeoutSeconds"] = timeout
    return spec


def route(models: list[dict[str, Any]], **router: Any) -> dict[str, Any]:
    return {
        "apiVersion": "llmroute.dev/v1alpha1",
        "kind": "LLMRoute",
        "metadata": {"name": "gw", "namespace": "apps"},
        "spec": {"models": models, "router": router},
    }


def grace(manifest: dict[str, Any]) -> int:
    deployment = next(o for o in render_manifest(manifest).objects if o["kind"] == "Deployment")
    return deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]


def test_one_target_waits_for_every_retry() -> None:
    manifest = route([{"name": "m", "targets": [target("a")]}], numRetries=2, timeoutSeconds=30)
    assert longest_request_seconds(parse_route(manifest)) == 3 * 30
    assert grace(manifest) == PRE_STOP_SLEEP_SECONDS + 90 + SHUTDOWN_SECONDS


def test_priority_levels_and_fallback_chains_add_up_with_per_target_timeouts() -> None:
    manifest = route(
        [
            # priority: each target is a level LiteLLM falls back through, with its retries
            {"name": "smart", "targets": [target("a", 100), target("b")], "fallbacks": ["mid"]},
            # any other strategy: one level, two when a quota soft-limits some targets
            {
                "name": "mid",
                "strategy": "cost",
                "targets": [target("c"), target("d", 40), target("e")],
                "fallbacks": ["local"],
            },
            {"name": "local", "targets": [target("f")], "fallbacks": ["smart"]},
        ],
        numRetries=1,
        timeoutSeconds=20,
    )
    parsed = parse_route(manifest)
    smart = 2 * (100 + 20)  # (1 + numRetries) attempts at each target's own timeout
    mid = 2 * 2 * 40  # two levels at most, each attempt up to the slowest target's timeout
    local = 2 * 20
    # Every model reachable through fallbacks (fallbacks of fallbacks too) is tried once.
    assert longest_request_seconds(parsed) == smart + mid + local
    assert termination_grace_seconds(parsed) == 5 + smart + mid + local + 5


def test_the_grace_period_is_capped() -> None:
    manifest = route(
        [{"name": "m", "targets": [target(str(i), 3600) for i in range(4)]}], numRetries=10
    )
    assert longest_request_seconds(parse_route(manifest)) == 4 * 11 * 3600
    assert grace(manifest) == MAX_TERMINATION_GRACE_SECONDS
