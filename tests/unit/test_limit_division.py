"""rpm/tpm limits divided across LiteLLM processes: the arithmetic and the LimitsExact condition."""

from __future__ import annotations

from typing import Any

import pytest

from llmroute.api.route import parse_route
from llmroute.conditions import set_condition
from llmroute.render.sizing import limit_processes
from llmroute.route.status import limits_condition, with_ready
from manifests import render_manifest


def route(proxy: dict[str, Any], rpm: int | None = None, **router: Any) -> dict[str, Any]:
    target: dict[str, Any] = {"provider": "ollama", "model": "llama3.2"}
    if rpm is not None:
        target["rpm"] = rpm
    return {
        "apiVersion": "llmroute.dev/v1alpha1",
        "kind": "LLMRoute",
        "metadata": {"name": "gw", "namespace": "apps"},
        "spec": {"models": [{"name": "m", "targets": [target]}], "proxy": proxy, "router": router},
    }


def rendered_rpm(manifest: dict[str, Any]) -> int:
    return render_manifest(manifest).config["model_list"][0]["litellm_params"]["rpm"]


def limits_exact(manifest: dict[str, Any]) -> dict[str, Any]:
    division = render_manifest(manifest).limit_division
    conditions = limits_condition([], division, 4)
    return next(c for c in conditions if c["type"] == "LimitsExact")


def autoscaled(minimum: int, maximum: int, workers: int) -> dict[str, Any]:
    scaling = {"enabled": True, "minReplicas": minimum, "maxReplicas": maximum}
    return {"autoscaling": scaling, "workers": workers}


def test_a_small_limit_over_many_processes_says_how_far_off_it_is() -> None:
    # rpm 3 with 64 workers: one per process, the least a process can allow; 64 processes at
    # one replica allow 64, and 6,400 at maxReplicas 100.
    manifest = route(autoscaled(1, 100, 64), rpm=3)
    assert rendered_rpm(manifest) == 1
    condition = limits_exact(manifest)
    assert (condition["status"], condition["reason"]) == ("False", "DividedAcrossProcesses")
    assert "m/ollama/llama3.2 rpm 3: 1 per process, 64-6400 in total" in condition["message"]
    assert (
        "64 processes at minReplicas (1 x 64 workers), up to 6400 at maxReplicas"
        in (condition["message"])
    )
    assert condition["observedGeneration"] == 4


def test_an_autoscaled_limit_is_divided_by_the_replicas_that_always_run() -> None:
    # rpm 100, maxReplicas 5, one replica running: the one replica allows all 100 (dividing
    # by maxReplicas allowed only 20), and five replicas up to 500.
    manifest = route(autoscaled(1, 5, 1), rpm=100)
    assert rendered_rpm(manifest) == 100
    processes = limit_processes(parse_route(manifest))
    assert (processes.fewest, processes.most) == (1, 5)
    condition = limits_exact(manifest)
    assert condition["status"] == "False"
    assert "rpm 100: 100 per process, 100-500 in total" in condition["message"]


def test_fixed_replicas_divide_by_replicas_times_workers_and_round_up() -> None:
    manifest = route({"replicas": 3, "workers": 2}, rpm=100)
    assert rendered_rpm(manifest) == 17
    condition = limits_exact(manifest)
    assert condition["status"] == "False"
    assert "6 processes (3 replicas x 2 workers)" in condition["message"]
    assert "rpm 100: 17 per process, 102 in total" in condition["message"]


def with_redis(manifest: dict[str, Any], redis: dict[str, Any]) -> dict[str, Any]:
    return {**manifest, "spec": {**manifest["spec"], "redis": redis}}


@pytest.mark.parametrize(
    "redis",
    [{"external": {"url": "redis://redis:6379"}}, {"managed": {}}],
    ids=["external", "managed"],
)
def test_limits_are_exact_with_redis_managed_or_external(redis: dict[str, Any]) -> None:
    shared = limits_exact(with_redis(route({"replicas": 3, "workers": 2}, rpm=100), redis))
    assert (shared["status"], shared["reason"]) == ("True", "Shared")
    assert "share their counters in Redis" in shared["message"]
    assert rendered_rpm(with_redis(route({"replicas": 3}, rpm=100), redis)) == 100


def test_limits_are_exact_with_one_process_or_without_limits() -> None:
    single = limits_exact(route({"replicas": 1, "workers": 1}, rpm=100))
    assert (single["status"], single["reason"]) == ("True", "SingleProcess")
    none = limits_exact(route({"replicas": 3, "workers": 2}))
    assert (none["status"], none["reason"]) == ("True", "NoLimits")


def test_approximate_limits_do_not_make_the_route_unready() -> None:
    conditions = set_condition([], "ConfigValid", True, "Valid", "ok", 1)
    conditions = set_condition(conditions, "ProxyAvailable", True, "Available", "ok", 1)
    division = render_manifest(route({"replicas": 3}, rpm=100)).limit_division
    conditions = limits_condition(conditions, division, 1)
    ready = with_ready(conditions, 1)
    assert next(c for c in ready if c["type"] == "Ready")["status"] == "True"
    assert [c["type"] for c in ready][-1] == "LimitsExact"
