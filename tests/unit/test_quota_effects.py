"""From ModelQuota objects to the renderer's QuotaEffects, and what they do to a route."""

from __future__ import annotations

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
    ("state", "enforcement", "targets"),
    [
        ("Ok", "enforce", ["anthropic/claude-sonnet-4-5", "openai/gpt-4"]),
        ("SoftLimited", "enforce", ["openai/gpt-4", "anthropic/claude-sonnet-4-5"]),
        ("Exhausted", "enforce", ["openai/gpt-4"]),
        ("Exhausted", "shadow", ["anthropic/claude-sonnet-4-5", "openai/gpt-4"]),
    ],
)
def test_states_shape_the_rendered_routing(
    state: str, enforcement: str, targets: list[str]
) -> None:
    effects = quota_effects([quota("budget", state=state, enforcement=enforcement)], "gw")
    config = render_manifest(ROUTE, quotas=effects).config
    chain = sorted(config["model_list"], key=lambda d: d["litellm_params"].get("order", 0))
    assert [d["litellm_params"]["model"] for d in chain] == targets
