"""From ModelQuota objects to the renderer's QuotaEffects, and what they do to a route."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmroute.api.quota import QuotaEffect, quota_effects
from manifests import render_manifest

ROUTE: dict[str, Any] = {
    "apiVersion": "llmroute.dev/v1alpha1",
    "kind": "LLMRoute",
    "metadata": {"name": "gw", "namespace": "team-a"},
    "spec": {
        "models": [
            {
                "name": "smart",
                "targets": [
                    {"provider": "anthropic", "model": "claude-sonnet-4-5"},
                    {"provider": "openai", "model": "gpt-4"},
                ],
            }
        ]
    },
}


def quota(
    name: str,
    route: str = "gw",
    state: str | None = None,
    deleting: bool = False,
    **spec: Any,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": {
            "routeRef": {"name": route},
            "match": {"provider": "anthropic"},
            "budget": {"limitUSD": 10},
            **spec,
        },
    }
    if state is not None:
        obj["status"] = {"state": state}
    if deleting:
        obj["metadata"]["deletionTimestamp"] = "2026-03-14T12:00:00Z"
    return obj


def test_effects_of_the_routes_quotas_in_name_order() -> None:
    effects = quota_effects(
        [
            quota("b", state="Exhausted", action="reject", rpm=100),
            quota("other-route", route="elsewhere", state="Exhausted"),
            quota("a"),
            quota("going", state="Exhausted", deleting=True),
        ],
        "gw",
    )
    assert effects == [
        QuotaEffect(provider="anthropic", state="Ok", name="a"),
        QuotaEffect(provider="anthropic", state="Exhausted", action="reject", rpm=100, name="b"),
    ]


def test_a_quota_that_cannot_be_read_is_left_out() -> None:
    effects = quota_effects([quota("bad", state="Broke"), quota("good", state="SoftLimited")], "gw")
    assert [e.name for e in effects] == ["good"]


@pytest.mark.parametrize(
    ("state", "enforcement", "levels"),
    [
        ("Ok", "enforce", {"smart/anthropic/claude-sonnet-4-5": 1, "smart/openai/gpt-4": 2}),
        (
            "SoftLimited",
            "enforce",
            {"smart/anthropic/claude-sonnet-4-5": 2, "smart/openai/gpt-4": 1},
        ),
        (
            "Exhausted",
            "enforce",
            {"smart/anthropic/claude-sonnet-4-5": None, "smart/openai/gpt-4": 1},
        ),
        ("Exhausted", "shadow", {"smart/anthropic/claude-sonnet-4-5": 1, "smart/openai/gpt-4": 2}),
    ],
)
def test_states_shape_the_quota_routing_file_not_the_config(
    state: str, enforcement: str, levels: dict[str, int | None]
) -> None:
    effects = quota_effects([quota("budget", state=state, enforcement=enforcement)], "gw")
    rendered = render_manifest(ROUTE, quotas=effects)
    (config_map,) = [o for o in rendered.objects if o["kind"] == "ConfigMap"]
    assert json.loads(config_map["data"]["llmroute_quota.json"]) == {"models": {"smart": levels}}
    # The config, and so the pods, stay as they are without the quota.
    unlimited = render_manifest(ROUTE)
    assert rendered.config == unlimited.config
    assert rendered.config_hash == unlimited.config_hash
