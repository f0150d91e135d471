"""A ModelQuota's status after a sync: ledger, state, conditions, events, write decisions."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from typing import Any

import pytest

from llmroute.api.quota import (
    QuotaSpec,
    QuotaSpecError,
    matched_deployments,
    stored_route_scopes,
    stored_route_targets,
)
from llmroute.api.route import target_identity
from llmroute.quota.counters import Usage
from llmroute.quota.ledger import ReplicaScrape
from llmroute.quota.status import next_status, transition_event

UTC = dt.UTC
NOW = dt.datetime(2026, 3, 14, 12, 0, tzinfo=UTC)
STARTED = dt.datetime(2026, 3, 2, tzinfo=UTC)
# One request of 10 + 5 tokens at 1 USD: the arithmetic stays readable.
REQUEST = Usage(spend_usd=1.0, input_tokens=10, output_tokens=5, requests=1)

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
                    {"provider": "openai-compatible", "model": "gpt-4", "apiBase": "http://x"},
                ],
            },
            {"name": "cheap", "targets": [{"provider": "openai", "model": "gpt-4o-mini"}]},
        ]
    },
}


# The deployment ids of ROUTE's targets, by model and position.
IDS = {
    "smart_0": "smart/anthropic/claude-sonnet-4-5",
    "smart_1": "smart/openai/gpt-4",
    "smart_2": "smart/openai-compatible/gpt-4@" + target_identity("", "", "http://x")[-8:],
    "cheap_0": "cheap/openai/gpt-4o-mini",
}


def quota(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "llmroute.dev/v1alpha1",
        "kind": "ModelQuota",
        "metadata": {"name": "openai-budget", "namespace": "team-a", "generation": 3},
        "spec": {
            "routeRef": {"name": "gw"},
            "match": {"provider": "openai"},
            "budget": {"limitUSD": 10},
            **spec,
        },
    }


def replica(uid: str = "u1", n: int | None = 0, **more: int) -> ReplicaScrape:
    deployments = None
    if n is not None:
        deployments = {IDS["smart_1"]: Usage(n * 1.0, 10 * n, 5 * n, n)}
        deployments.update({IDS[k]: Usage(v * 1.0, 0, 0, v) for k, v in more.items()})
    return ReplicaScrape(uid=uid, pod=f"gw-litellm-{uid}", deployments=deployments, started=STARTED)


def run(obj: dict, *scrapes: ReplicaScrape, now: dt.datetime = NOW, route=ROUTE, errors=None):
    targets = stored_route_targets(route) if route is not None else None
    result = next_status(obj, targets=targets, scrapes=list(scrapes), now=now, errors=errors)
    json.dumps(result.status)  # the status is JSON as it is
    return result


def stored(obj: dict, result) -> dict:
    return {**copy.deepcopy(obj), "status": result.status}


def condition(status: dict, type_: str) -> dict:
    return next(c for c in status["conditions"] if c["type"] == type_)


# -- spec ----------------------------------------------------------------------------


def test_match_selects_targets_by_provider_model_and_model_name() -> None:
    def ids(**match: str) -> set[str]:
        spec = QuotaSpec.from_quota(quota(match=match))
        return set(matched_deployments(stored_route_targets(ROUTE), spec))

    def stable(*names: str) -> set[str]:
        # each target's id, and the position id proxies of earlier releases gave it
        return {IDS[n] for n in names} | {n.replace("_", "/") for n in names}

    assert ids(provider="openai") == stable("smart_1", "cheap_0")
    assert ids(model="gpt-4") == stable("smart_1", "smart_2")
    assert ids(provider="openai-compatible") == stable("smart_2")
    assert ids(modelName="smart") == stable("smart_0", "smart_1", "smart_2")
    assert ids(provider="openai", modelName="smart") == stable("smart_1")
    assert ids(provider="groq") == set()


def test_spec_defaults_and_errors() -> None:
    spec = QuotaSpec.from_quota(quota())
    assert (spec.period, spec.soft_limit_percent, spec.action, spec.enforcement) == (
        "monthly",
        80,
        "fallback",
        "enforce",
    )
    with pytest.raises(QuotaSpecError, match=re.escape("spec.budget.limitUSD")):
        QuotaSpec.from_quota(quota(budget={"limitUSD": 0}))
    with pytest.raises(QuotaSpecError, match=re.escape("spec.match")):
        QuotaSpec.from_quota(quota(match={}))
    with pytest.raises(QuotaSpecError, match=re.escape("spec.budget.period")):
        QuotaSpec.from_quota(quota(budget={"limitUSD": 1, "period": "yearly"}))


# -- status --------------------------------------------------------------------------


def test_first_sync_writes_the_ledger_and_the_state() -> None:
    result = run(quota(), replica(n=3, cheap_0=2, smart_0=50))
    status = result.status
    assert status["spentUSD"] == 5.0
    assert status["percentUsed"] == 50.0
    assert status["state"] == "Ok"
    assert (status["requests"], status["inputTokens"], status["outputTokens"]) == (5, 30, 15)
    assert status["periodStart"] == "2026-03-01T00:00:00Z"
    assert status["periodEnd"] == "2026-04-01T00:00:00Z"
    assert status["lastSync"] == "2026-03-14T12:00:00Z"
    assert status["observedGeneration"] == 3
    assert set(status["replicas"]) == {"u1"}
    assert condition(status, "Synced")["status"] == "True"
    ready = condition(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Enforced")
    assert result.write
    assert result.event is None  # Ok from the start: nothing to announce
    assert not result.rerender_route


def test_crossing_the_soft_limit_posts_an_event_and_rerenders() -> None:
    first = run(quota(), replica(n=7))
    second = run(stored(quota(), first), replica(n=8), now=NOW + dt.timedelta(seconds=15))
    assert second.status["state"] == "SoftLimited"
    assert second.status["percentUsed"] == 80.0
    assert (second.previous_state, second.state) == ("Ok", "SoftLimited")
    assert second.event is not None
    assert (second.event.type, second.event.reason) == ("Warning", "SoftLimitReached")
    assert "$8.00 of $10.00 (80%)" in second.event.message
    assert "move behind" in second.event.message
    assert second.rerender_route


def test_exhausted_event_says_what_the_action_does() -> None:
    fallback = run(quota(), replica(n=12))
    assert fallback.state == "Exhausted"
    assert fallback.event is not None and fallback.event.reason == "BudgetExhausted"
    assert "falls back" in fallback.event.message
    reject = run(quota(action="reject"), replica(n=12))
    assert reject.event is not None and "429" in reject.event.message


def test_shadow_mode_announces_but_does_not_rerender() -> None:
    result = run(quota(enforcement="shadow"), replica(n=12))
    assert result.state == "Exhausted"
    assert result.event is not None
    assert "shadow mode, routing unchanged" in result.event.message
    assert not result.rerender_route
    assert condition(result.status, "Ready")["reason"] == "Shadow"


def test_rollover_back_to_ok_is_announced() -> None:
    march = run(quota(), replica(n=12), now=dt.datetime(2026, 3, 31, 23, 59, 55, tzinfo=UTC))
    april = run(
        stored(quota(), march), replica(n=12), now=dt.datetime(2026, 4, 1, 0, 0, 10, tzinfo=UTC)
    )
    assert april.status["spentUSD"] == 0
    assert april.status["periodStart"] == "2026-04-01T00:00:00Z"
    assert (april.previous_state, april.state) == ("Exhausted", "Ok")
    assert april.event is not None and april.event.reason == "BudgetOk"
    assert april.event.type == "Normal"
    assert april.rerender_route


def test_a_raised_limit_is_applied_at_the_next_sync() -> None:
    exhausted = run(quota(), replica(n=12))
    raised = quota(budget={"limitUSD": 100})
    raised["status"] = exhausted.status
    result = run(raised, replica(n=12), now=NOW + dt.timedelta(seconds=15))
    assert result.status["spentUSD"] == 12.0
    assert result.status["percentUsed"] == 12.0
    assert (result.previous_state, result.state) == ("Exhausted", "Ok")


def test_nothing_to_write_when_no_replica_answered_and_nothing_changed() -> None:
    first = run(quota(), replica(n=3))
    silent = run(stored(quota(), first), replica(n=None), now=NOW + dt.timedelta(seconds=15))
    assert silent.status["lastSync"] == first.status["lastSync"]
    assert condition(silent.status, "Synced")["reason"] == "ScrapeFailed"
    assert silent.write  # the Synced condition changed
    again = run(stored(quota(), silent), replica(n=None), now=NOW + dt.timedelta(seconds=30))
    assert not again.write
    answered = run(stored(quota(), again), replica(n=3), now=NOW + dt.timedelta(seconds=45))
    assert answered.write
    assert answered.status["lastSync"] == "2026-03-14T12:00:45Z"
    assert answered.status["spentUSD"] == 3.0


def test_unanswered_replicas_are_named_in_the_synced_condition() -> None:
    result = run(quota(), replica("a", n=1), replica("b", n=None), errors={"b": "timed out"})
    synced = condition(result.status, "Synced")
    assert synced["status"] == "False"
    assert synced["message"] == "1 of 2 proxy replicas did not answer (gw-litellm-b: timed out)"
    assert result.status["spentUSD"] == 1.0


def test_no_replicas_and_no_route() -> None:
    result = run(quota())
    assert condition(result.status, "Synced")["reason"] == "NoProxyReplicas"
    assert "lastSync" not in result.status
    gone = run(quota(), replica(n=3), route=None)
    assert gone.status["spentUSD"] == 0
    assert gone.status["replicas"] == {}
    assert condition(gone.status, "Ready")["reason"] == "RouteNotFound"
    assert condition(gone.status, "Ready")["status"] == "False"


def test_invalid_spec_keeps_the_ledger() -> None:
    first = run(quota(), replica(n=3))
    broken = stored(quota(match={}), first)
    result = run(broken, replica(n=5))
    assert result.state is None
    assert result.status["spentUSD"] == 3.0
    ready = condition(result.status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")


def test_conditions_keep_their_transition_time_while_unchanged() -> None:
    first = run(quota(), replica(n=1))
    later = run(stored(quota(), first), replica(n=2), now=NOW + dt.timedelta(minutes=5))
    for type_ in ("Ready", "Synced"):
        assert (
            condition(later.status, type_)["lastTransitionTime"]
            == condition(first.status, type_)["lastTransitionTime"]
        )
    assert [c["type"] for c in later.status["conditions"]] == ["Ready", "Synced"]


def test_no_event_without_a_change() -> None:
    spec = QuotaSpec.from_quota(quota())
    assert transition_event("SoftLimited", "SoftLimited", spec, 9) is None
    assert transition_event(None, "Ok", spec, 0) is None
    event = transition_event(None, "Exhausted", spec, 0.004)
    assert event is not None and "$0.004000 of $10.00" in event.message


# -- quotas scoped to a caller or a task --------------------------------------------------

SCOPED_ROUTE: dict[str, Any] = {
    **ROUTE,
    "spec": {
        **ROUTE["spec"],
        "tasks": ["summarize"],
        "auth": {"callers": [{"name": "alice", "keySecretRef": {"name": "k", "key": "alice"}}]},
    },
}


def scoped(**match: Any) -> dict[str, Any]:
    return quota(match=match, action="reject")


def run_scoped(obj: dict, *scrapes: ReplicaScrape, route=SCOPED_ROUTE):
    return next_status(
        obj,
        targets=stored_route_targets(route),
        scopes=stored_route_scopes(route),
        scrapes=list(scrapes),
        now=NOW,
    )


def test_a_caller_quota_counts_that_callers_series_of_the_matched_targets() -> None:
    spec = QuotaSpec.from_quota(scoped(caller="alice", provider="openai"))
    keys = matched_deployments(stored_route_targets(SCOPED_ROUTE), spec)
    assert f"{IDS['smart_1']}|caller=alice" in keys
    assert not any(k.startswith(IDS["smart_0"]) for k in keys)
    alice = ReplicaScrape(
        uid="u1",
        pod="gw-litellm-u1",
        deployments={
            f"{IDS['smart_1']}|caller=alice": Usage(4.0, 40, 20, 4),
            f"{IDS['smart_0']}|caller=alice": Usage(100.0, 0, 0, 1),  # not matched
        },
        started=STARTED,
    )
    result = run_scoped(scoped(caller="alice", provider="openai"), alice)
    assert (result.status["spentUSD"], result.status["requests"]) == (4.0, 4)
    ready = next(c for c in result.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Enforced")


def test_a_caller_quota_alone_matches_every_target() -> None:
    spec = QuotaSpec.from_quota(scoped(caller="alice"))
    keys = matched_deployments(stored_route_targets(SCOPED_ROUTE), spec)
    assert {f"{IDS[k]}|caller=alice" for k in IDS} <= keys


@pytest.mark.parametrize(
    ("match", "reason", "named"),
    [
        ({"caller": "mallory"}, "CallerNotDeclared", "spec.match.caller"),
        ({"tag": "translate"}, "TaskNotDeclared", "spec.match.tag"),
    ],
)
def test_a_caller_or_task_the_route_does_not_declare_is_not_ready(match, reason, named) -> None:
    result = run_scoped(scoped(**match), replica(n=2))
    ready = next(c for c in result.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", reason)
    assert named in ready["message"]
    assert result.status["spentUSD"] == 0


def test_a_scoped_quota_must_reject() -> None:
    with pytest.raises(QuotaSpecError) as error:
        QuotaSpec.from_quota(quota(match={"caller": "alice"}))
    assert error.value.field == "spec.action"


def test_scoped_events_say_what_the_gateway_does() -> None:
    spec = QuotaSpec.from_quota(scoped(caller="alice", tag="summarize"))
    soft = transition_event("Ok", "SoftLimited", spec, 8.5)
    assert soft is not None and "still served" in soft.message
    exhausted = transition_event("SoftLimited", "Exhausted", spec, 10)
    assert exhausted is not None
    assert "caller 'alice' for task 'summarize'" in exhausted.message
    assert "429" in exhausted.message


@pytest.mark.parametrize(
    "spec", [None, [], {"auth": []}, {"auth": {"callers": "x"}, "tasks": "y"}, {"auth": None}]
)
def test_declared_callers_and_tasks_are_read_leniently(spec) -> None:
    assert stored_route_scopes({"spec": spec}) == (frozenset(), frozenset())
