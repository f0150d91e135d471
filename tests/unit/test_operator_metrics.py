"""The operator's own metrics: handler counters and the gauges mirrored from objects."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from llmroute import metrics
from llmroute.metrics import ObjectState, QuotaSample, observed_reconcile, parse_listen_address


def samples(collector: ObjectState) -> dict[tuple[str, tuple], float]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def route(name: str, **conditions: str) -> dict:
    return {
        "metadata": {"namespace": "team", "name": name},
        "status": {"conditions": [{"type": t, "status": s} for t, s in conditions.items()]},
    }


def quota(name: str = "gpt4", **status) -> dict:
    return {
        "metadata": {"namespace": "team", "name": name},
        "spec": {
            "routeRef": {"name": "gw"},
            "match": {"model": "gpt-4"},
            "budget": {"limitUSD": 10, "softLimitPercent": 80},
        },
        "status": status,
    }


def value(collected: dict, name: str, **labels: str) -> float | None:
    return collected.get((name, tuple(sorted(labels.items()))))


def test_route_conditions_are_one_for_the_status_they_have() -> None:
    state = ObjectState()
    state.route_seen(route("gw", Ready="True", ProxyAvailable="False"))
    got = samples(state)
    base = {"namespace": "team", "route": "gw"}
    assert value(got, "llmroute_route_condition", **base, condition="Ready", status="True") == 1
    assert value(got, "llmroute_route_condition", **base, condition="Ready", status="False") == 0
    assert (
        value(got, "llmroute_route_condition", **base, condition="ProxyAvailable", status="False")
        == 1
    )
    assert value(got, "llmroute_operator_info", version=metrics.__version__) == 1


def test_a_deleted_route_leaves_no_series() -> None:
    state = ObjectState()
    state.route_seen(route("gw", Ready="True"))
    state.route_gone(route("gw"))
    assert not [k for k in samples(state) if k[0] == "llmroute_route_condition"]


def test_quota_spend_limit_state_and_last_sync() -> None:
    state = ObjectState()
    state.quota_seen(
        quota(
            spentUSD=8.5,
            state="SoftLimited",
            lastSync="2026-11-30T12:00:00Z",
            conditions=[{"type": "Synced", "status": "True"}],
        )
    )
    got = samples(state)
    base = {"namespace": "team", "quota": "gpt4", "route": "gw"}
    assert value(got, "llmroute_quota_spend_usd", **base) == 8.5
    assert value(got, "llmroute_quota_limit_usd", **base) == 10
    assert value(got, "llmroute_quota_soft_limit_ratio", **base) == 0.8
    assert value(got, "llmroute_quota_state", **base, state="SoftLimited") == 1
    assert value(got, "llmroute_quota_state", **base, state="Ok") == 0
    assert value(got, "llmroute_quota_last_sync_timestamp_seconds", **base) == 1796040000
    assert value(got, "llmroute_quota_condition", **base, condition="Synced", status="True") == 1


def test_a_quota_never_synced_has_spend_zero_and_no_last_sync() -> None:
    state = ObjectState()
    state.quota_seen(quota())
    got = samples(state)
    base = {"namespace": "team", "quota": "gpt4", "route": "gw"}
    assert value(got, "llmroute_quota_spend_usd", **base) == 0
    assert value(got, "llmroute_quota_last_sync_timestamp_seconds", **base) is None


def test_a_quota_with_an_unreadable_spec_is_dropped() -> None:
    broken = quota()
    del broken["spec"]["budget"]
    assert QuotaSample.from_quota(broken) is None
    state = ObjectState()
    state.quota_seen(quota())
    state.quota_seen(broken)
    assert not [k for k in samples(state) if k[0].startswith("llmroute_quota")]


def _count(name: str, kind: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, {"kind": kind}) or 0.0


def test_observed_reconcile_counts_runs_failures_and_durations() -> None:
    kind = "TestKind"

    @observed_reconcile(kind)
    def handler(fail: bool) -> str:
        if fail:
            raise RuntimeError("boom")
        return "done"

    assert handler(fail=False) == "done"
    with pytest.raises(RuntimeError):
        handler(fail=True)
    assert _count("llmroute_reconciles_total", kind) == 2
    assert _count("llmroute_reconcile_failures_total", kind) == 1
    assert _count("llmroute_reconcile_duration_seconds_count", kind) == 2
    assert handler.__name__ == "handler"  # kopf names handlers after their function


@pytest.mark.parametrize(
    ("address", "expected"),
    [("127.0.0.1:8081", ("127.0.0.1", 8081)), (":9000", ("0.0.0.0", 9000))],
)
def test_listen_address(address: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(address) == expected


@pytest.mark.parametrize("address", ["8081", "host:", "host:http", "h:70000"])
def test_bad_listen_address(address: str) -> None:
    with pytest.raises(ValueError):
        parse_listen_address(address)
