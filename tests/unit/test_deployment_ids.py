"""Deployment ids (LiteLLM model_info.id, the model_id of every counter) follow the target,
not its position: reordering targets keeps each id, so spend is charged to the right quota."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from llmroute.api.quota import QuotaSpec, matched_deployments, stored_route_targets
from llmroute.quota.counters import Usage
from llmroute.quota.ledger import Ledger, ReplicaScrape, advance
from manifests import render_manifest

NOW = dt.datetime(2026, 3, 14, 12, 0, tzinfo=dt.UTC)
STARTED = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)

ROUTE: dict[str, Any] = {
    "apiVersion": "llmroute.dev/v1alpha1",
    "kind": "LLMRoute",
    "metadata": {"name": "gw", "namespace": "team-a"},
    "spec": {
        "models": [
            {
                "name": "smart",
                "targets": [
                    {
                        "provider": "anthropic",
                        "model": "claude-sonnet-4-5",
                        "apiKeySecretRef": {"name": "k", "key": "anthropic"},
                    },
                    {
                        "provider": "openai",
                        "model": "gpt-4o",
                        "apiKeySecretRef": {"name": "k", "key": "openai"},
                    },
                    {
                        "provider": "openai-compatible",
                        "model": "gpt-4o",
                        "apiBase": "http://vllm.internal:8000/v1",
                    },
                    # the same provider model again, with another key
                    {
                        "provider": "openai",
                        "model": "gpt-4o",
                        "apiKeySecretRef": {"name": "k", "key": "openai-2"},
                    },
                ],
            }
        ]
    },
}


def reordered(route: dict[str, Any], order: list[int]) -> dict[str, Any]:
    changed = copy.deepcopy(route)
    targets = changed["spec"]["models"][0]["targets"]
    changed["spec"]["models"][0]["targets"] = [targets[i] for i in order]
    return changed


def ids_by_target(route: dict[str, Any]) -> dict[tuple[str, str, str | None], list[str]]:
    """model_info.id of each rendered deployment, by (provider prefix/model, api_base, key)."""
    ids: dict[tuple[str, str, str | None], list[str]] = {}
    for deployment in render_manifest(route).config["model_list"]:
        params = deployment["litellm_params"]
        key = (params["model"], params.get("api_base"), params.get("api_key"))
        ids.setdefault(key, []).append(deployment["model_info"]["id"])
    return ids


def test_ids_name_the_target_and_are_unique() -> None:
    ids = [i for found in ids_by_target(ROUTE).values() for i in found]
    assert len(set(ids)) == len(ids) == 4
    assert "smart/anthropic/claude-sonnet-4-5" in ids
    assert "smart/openai/gpt-4o" in ids
    assert "smart/openai/gpt-4o#2" in ids
    # an apiBase is part of the identity, as a digest
    assert any(i.startswith("smart/openai-compatible/gpt-4o@") for i in ids)


def test_reordering_targets_keeps_every_id() -> None:
    before = ids_by_target(ROUTE)
    # The distinct targets swap places; the two alike keep their order among themselves.
    after = ids_by_target(reordered(ROUTE, [2, 1, 0, 3]))
    assert after == before
    # The two alike swapped: their ids swap too, and they match the same quotas either way.
    swapped = ids_by_target(reordered(ROUTE, [3, 2, 0, 1]))
    assert {k: sorted(v) for k, v in swapped.items() if not k[0].startswith("openai/")} == {
        k: sorted(v) for k, v in before.items() if not k[0].startswith("openai/")
    }


def test_the_stored_route_gives_the_ids_the_renderer_gives() -> None:
    rendered = [d["model_info"]["id"] for d in render_manifest(ROUTE).config["model_list"]]
    stored = [t.deployment_id for t in stored_route_targets(ROUTE)]
    assert sorted(rendered) == sorted(stored)


def test_the_ledger_charges_a_reordered_targets_spend_to_its_quota() -> None:
    """A rollout after a reorder: the old pod (old config) and the new one (new config) both
    serve openai; the openai quota counts both, the anthropic one neither."""
    new_spec = reordered(ROUTE, [1, 0, 2, 3])
    openai_id = next(
        t.deployment_id for t in stored_route_targets(new_spec) if t.provider == "openai"
    )
    anthropic_id = next(
        t.deployment_id for t in stored_route_targets(new_spec) if t.provider == "anthropic"
    )
    # The old pod rendered ROUTE, the new one the reordered spec: the same id for openai.
    assert openai_id in [t.deployment_id for t in stored_route_targets(ROUTE)]
    request = Usage(spend_usd=1.0, input_tokens=10, output_tokens=5, requests=1)
    old_pod = ReplicaScrape("old", "gw-litellm-old", {openai_id: request}, STARTED)
    new_pod = ReplicaScrape("new", "gw-litellm-new", {openai_id: request}, STARTED)

    def spent(match: dict[str, str]) -> float:
        quota = QuotaSpec.from_quota(
            {
                "metadata": {"name": "q"},
                "spec": {"routeRef": {"name": "gw"}, "match": match, "budget": {"limitUSD": 10}},
            }
        )
        # The ledger matches against the route as it is now: the reordered spec.
        matched = matched_deployments(stored_route_targets(new_spec), quota)
        ledger = advance(Ledger(), [old_pod, new_pod], matched, period="monthly", now=NOW)
        return ledger.total.spend_usd

    assert spent({"provider": "openai"}) == 2.0
    assert spent({"provider": "anthropic"}) == 0.0
    assert anthropic_id != openai_id


def test_proxies_of_an_earlier_release_are_counted_by_position() -> None:
    # Before ids were stable a target's id was "<model>/<position>"; during the upgrade's
    # rollout such proxies still run, and their spend counts for the target at that position.
    quota = QuotaSpec.from_quota(
        {
            "metadata": {"name": "q"},
            "spec": {
                "routeRef": {"name": "gw"},
                "match": {"provider": "anthropic"},
                "budget": {"limitUSD": 10},
            },
        }
    )
    matched = matched_deployments(stored_route_targets(ROUTE), quota)
    assert matched == {"smart/anthropic/claude-sonnet-4-5", "smart/0"}
