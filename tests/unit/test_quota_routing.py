"""The proxy's quota filter (payloads/quota_routing.py) and the file it reads.

The routing through a real LiteLLM router is checked in test_render_check.py; these tests
drive the filter directly: what it keeps, the levels it gives, when it re-reads its file.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
import yaml

# The filter imports litellm, which must not fetch its price map from the network.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from llmroute.payloads import quota_routing
from llmroute.payloads.quota_routing import QuotaLevelExhausted, QuotaRoutingFile
from llmroute.render.proxy import QUOTA_ROUTING_MODULE_FILE
from llmroute.render.quota_routing import QUOTA_ROUTING_FILE
from manifests import render_manifest

GOLDEN = Path(__file__).parent / "golden"


def deployment(deployment_id: str, order: int | None = None) -> dict:
    params: dict = {"model": "openai/x"}
    if order is not None:
        params["order"] = order
    return {
        "model_name": deployment_id.split("/")[0],
        "litellm_params": params,
        "model_info": {"id": deployment_id},
    }


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def write(path: Path, models: dict) -> None:
    # Replaced, not rewritten in place, as the kubelet swaps a ConfigMap volume's files.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"models": models}))
    os.replace(tmp, path)


@pytest.fixture
def routing(tmp_path: Path) -> tuple[QuotaRoutingFile, Path, Clock]:
    path = tmp_path / QUOTA_ROUTING_FILE
    clock = Clock()
    return QuotaRoutingFile(path, clock=clock), path, clock


def test_exhausted_targets_leave_and_soft_limited_ones_move_behind(routing) -> None:
    file, path, _ = routing
    write(path, {"smart": {"smart/a": 2, "smart/b": 1, "smart/c": None}})
    kept = file.filter(
        "smart", [deployment("smart/a", 1), deployment("smart/b", 2), deployment("smart/c", 3)]
    )
    assert [(d["model_info"]["id"], d["litellm_params"]["order"]) for d in kept] == [
        ("smart/a", 2),
        ("smart/b", 1),
    ]


def test_the_routers_own_deployments_are_never_changed(routing) -> None:
    file, path, _ = routing
    write(path, {"smart": {"smart/a": 2, "smart/b": 1}})
    given = [deployment("smart/a", 1), deployment("smart/b", 2)]
    file.filter("smart", given)
    assert [d["litellm_params"]["order"] for d in given] == [1, 2]


def test_nothing_to_change_returns_the_same_list(routing) -> None:
    file, path, _ = routing
    write(path, {"smart": {"smart/a": 1, "smart/b": 2}})
    given = [deployment("smart/a", 1), deployment("smart/b", 2)]
    assert file.filter("smart", given) is given
    # Models and deployments the file does not know pass as configured.
    other = [deployment("other/x", 1)]
    assert file.filter("other", other) is other
    mixed = [deployment("smart/a", 1), deployment("smart/new", 5)]
    assert file.filter("smart", mixed) is mixed


def test_a_model_with_nothing_left_fails_with_an_error_litellm_does_not_retry(routing) -> None:
    import litellm

    file, path, _ = routing
    write(path, {"smart": {"smart/a": None}})
    with pytest.raises(QuotaLevelExhausted) as refused:
        file.filter("smart", [deployment("smart/a", 1)])
    assert refused.value.status_code == 402
    assert not litellm.should_retry(refused.value.status_code)
    assert "'smart'" in str(refused.value)
    # Nothing healthy to begin with (all cooling down): LiteLLM's own error, not the quota's.
    assert file.filter("smart", []) == []


def test_an_order_level_the_quotas_left_empty_fails_at_once(routing) -> None:
    file, path, _ = routing
    write(path, {"smart": {"smart/a": 1, "smart/b": None}})
    with pytest.raises(QuotaLevelExhausted, match="level 2"):
        file.filter("smart", [deployment("smart/a", 1), deployment("smart/b", 2)], 2)
    assert len(file.filter("smart", [deployment("smart/a", 1)], 1)) == 1


def test_the_file_is_checked_at_most_once_a_second(routing) -> None:
    file, path, clock = routing
    write(path, {"smart": {"smart/a": 1}})
    assert file.levels() == {"smart": {"smart/a": 1}}
    write(path, {"smart": {"smart/a": None}})
    clock.now += 0.5
    assert file.levels() == {"smart": {"smart/a": 1}}
    clock.now += 0.5
    assert file.levels() == {"smart": {"smart/a": None}}


def test_an_unchanged_file_is_not_read_again(routing, monkeypatch) -> None:
    file, path, clock = routing
    write(path, {"smart": {"smart/a": 1}})
    file.levels()
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("read again"))
    clock.now += 5
    assert file.levels() == {"smart": {"smart/a": 1}}


def test_a_missing_or_broken_file_routes_as_configured(routing, caplog) -> None:
    file, path, clock = routing
    given = [deployment("smart/a", 1)]
    assert file.filter("smart", given) is given
    write(path, {"smart": {"smart/a": None}})
    clock.now += 1
    with pytest.raises(QuotaLevelExhausted):
        file.filter("smart", given)
    path.write_text("{not json")
    clock.now += 1
    assert file.filter("smart", given) is given
    assert "not applied" in caplog.text


def test_the_callback_reads_the_order_level_litellm_asks_for(tmp_path, monkeypatch) -> None:
    path = tmp_path / QUOTA_ROUTING_FILE
    write(path, {"smart": {"smart/a": 1, "smart/b": None}})
    monkeypatch.setenv(quota_routing.ROUTING_ENV, str(path))
    hook = quota_routing.QuotaRouting()
    given = [deployment("smart/a", 1), deployment("smart/b", 2)]

    async def filtered(kwargs: dict) -> list[dict]:
        return await hook.async_filter_deployments("smart", given, None, request_kwargs=kwargs)

    assert [d["model_info"]["id"] for d in asyncio.run(filtered({}))] == ["smart/a"]
    with pytest.raises(QuotaLevelExhausted):
        asyncio.run(filtered({"_target_order": 2}))


def test_the_filter_reads_the_file_the_renderer_ships_next_to_it() -> None:
    route = yaml.safe_load((GOLDEN / "quota-effects" / "route.yaml").read_text())
    (config_map,) = [o for o in render_manifest(route).objects if o["kind"] == "ConfigMap"]
    assert quota_routing.ROUTING_FILE_NAME == QUOTA_ROUTING_FILE
    assert {QUOTA_ROUTING_MODULE_FILE, QUOTA_ROUTING_FILE} <= set(config_map["data"])
    module = QUOTA_ROUTING_MODULE_FILE.removesuffix(".py")
    callbacks = render_manifest(route).config["litellm_settings"]["callbacks"]
    assert f"{module}.quota_routing" in callbacks


@pytest.mark.parametrize("strategy", ["priority", "cost", "latency", "weighted", "least-busy"])
def test_a_model_of_one_target_serves_whatever_its_strategy(tmp_path, strategy) -> None:
    route = {
        "apiVersion": "llmroute.dev/v1alpha1",
        "kind": "LLMRoute",
        "metadata": {"name": "one", "namespace": "team-a"},
        "spec": {
            "models": [
                {
                    "name": "only",
                    "strategy": strategy,
                    "targets": [{"provider": "ollama", "model": "phi3"}],
                }
            ]
        },
    }
    rendered = render_manifest(route)
    (config_map,) = [o for o in rendered.objects if o["kind"] == "ConfigMap"]
    path = tmp_path / QUOTA_ROUTING_FILE
    path.write_text(config_map["data"][QUOTA_ROUTING_FILE])
    (configured,) = rendered.config["model_list"]
    kept = QuotaRoutingFile(path).filter("only", [configured])
    assert [d["model_info"]["id"] for d in kept] == [configured["model_info"]["id"]]
