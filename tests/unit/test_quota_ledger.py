"""The spend ledger: deltas of the proxies' counters, resets, replicas, periods, states."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmroute.quota.counters import (
    Usage,
    counter_samples,
    parse_metrics,
    process_start_seconds,
    usage_by_deployment,
)
from llmroute.quota.ledger import (
    Ledger,
    ReplicaScrape,
    advance,
    budget_state,
    percent_used,
)

METRICS = Path(__file__).parent / "data" / "litellm_metrics.txt"
UTC = dt.UTC
NOW = dt.datetime(2026, 3, 14, 12, 0, tzinfo=UTC)
MONTH_START = dt.datetime(2026, 3, 1, tzinfo=UTC)
GPT4 = Usage(spend_usd=0.0006, input_tokens=10, output_tokens=5, requests=1)


def times(usage: Usage, n: int) -> Usage:
    return Usage(
        usage.spend_usd * n, usage.input_tokens * n, usage.output_tokens * n, usage.requests * n
    )


def scrape(uid: str = "uid-a", started: dt.datetime | None = MONTH_START, **deployments: Usage):
    return ReplicaScrape(
        uid=uid,
        pod=f"gw-litellm-{uid}",
        deployments={k.replace("_", "/"): v for k, v in deployments.items()},
        started=started,
    )


def close(actual: Usage, expected: Usage) -> bool:
    """Equal counts, and spend equal up to float rounding (the ledger adds floats)."""
    counts = ("input_tokens", "output_tokens", "requests")
    return [getattr(actual, c) for c in counts] == [getattr(expected, c) for c in counts] and (
        actual.spend_usd == pytest.approx(expected.spend_usd, rel=1e-9, abs=1e-15)
    )


def later(minutes: float) -> dt.datetime:
    return NOW + dt.timedelta(minutes=minutes)


def sync(ledger: Ledger, *scrapes: ReplicaScrape, matched=("smart/0",), now=NOW) -> Ledger:
    return advance(ledger, scrapes, matched, period="monthly", now=now)


# -- reading a real exposition -------------------------------------------------------


def test_counters_of_a_real_proxy_by_deployment() -> None:
    families = parse_metrics(METRICS.read_text())
    usage = usage_by_deployment(counter_samples(families))
    assert set(usage) == {
        "smart/openai/gpt-4",
        "smart/openai-compatible/gpt-4o",
        "cheap/openai/gpt-4o-mini",
    }
    # gpt-4 from the price map: 6 requests of 10 + 5 tokens at 0.0006 USD each.
    assert usage["smart/openai/gpt-4"].requests == 6
    assert usage["smart/openai/gpt-4"].input_tokens == 60
    assert usage["smart/openai/gpt-4"].output_tokens == 30
    assert usage["smart/openai/gpt-4"].spend_usd == pytest.approx(0.0036)
    # gpt-4o served the two requests gpt-4 failed, at the spec's own pricing.
    assert usage["smart/openai-compatible/gpt-4o"] == Usage(
        pytest.approx(2 * (10 * 2.5 + 5 * 10) / 1e6), 20, 10, 2
    )
    assert usage["cheap/openai/gpt-4o-mini"] == Usage(pytest.approx(0.06), 30, 15, 3)
    assert process_start_seconds(families) is not None


def test_counters_of_one_caller_or_task_under_their_ledger_keys() -> None:
    samples = counter_samples(parse_metrics(METRICS.read_text()))
    billing = usage_by_deployment(samples, caller="billing")
    assert {k: u.requests for k, u in billing.items()} == {
        "smart/openai/gpt-4|caller=billing": 5,
        "smart/openai-compatible/gpt-4o|caller=billing": 2,
    }
    assert billing["smart/openai/gpt-4|caller=billing"].spend_usd == pytest.approx(0.003)
    triage = usage_by_deployment(samples, tag="triage")
    assert {k: u.requests for k, u in triage.items()} == {
        "smart/openai/gpt-4|task=triage": 1,
        "cheap/openai/gpt-4o-mini|task=triage": 2,
    }
    both = usage_by_deployment(samples, caller="billing", tag="summarize")
    assert {k: u.requests for k, u in both.items()} == {
        "smart/openai/gpt-4|caller=billing|task=summarize": 2
    }
    # The master key is no declared caller; a caller nobody used has no series.
    assert usage_by_deployment(samples, caller="nobody") == {}
    # What one caller's ledger reads, summed over callers, is the deployment's whole spend.
    everyone = usage_by_deployment(samples)
    callers = ("billing", "support", "_master")
    for deployment, usage in everyone.items():
        parts = [
            usage_by_deployment(samples, caller=c).get(f"{deployment}|caller={c}", Usage())
            for c in callers
        ]
        assert sum(p.requests for p in parts) == usage.requests


def test_series_order_does_not_change_the_floats() -> None:
    samples = counter_samples(parse_metrics(METRICS.read_text()))
    # The ledger compares counters exactly, so summing must not depend on exposition order.
    assert usage_by_deployment(samples) == usage_by_deployment(list(reversed(samples)))


# -- counting ------------------------------------------------------------------------


def test_first_sync_counts_a_replica_that_started_in_the_period() -> None:
    ledger = sync(Ledger(), scrape(smart_0=times(GPT4, 3), smart_1=times(GPT4, 7)))
    assert close(ledger.total, times(GPT4, 3))
    assert (ledger.period_start, ledger.period_end) == (
        MONTH_START,
        dt.datetime(2026, 4, 1, tzinfo=UTC),
    )


def test_a_replica_from_before_the_period_only_sets_the_baseline() -> None:
    old = dt.datetime(2026, 2, 20, tzinfo=UTC)
    ledger = sync(Ledger(), scrape(started=old, smart_0=times(GPT4, 3)))
    assert close(ledger.total, Usage())
    ledger = sync(ledger, scrape(started=old, smart_0=times(GPT4, 5)), now=later(1))
    assert close(ledger.total, times(GPT4, 2))


def test_deltas_add_up_across_syncs_and_replicas() -> None:
    ledger = sync(Ledger(), scrape("a", smart_0=times(GPT4, 1)), scrape("b"))
    ledger = sync(
        ledger,
        scrape("a", smart_0=times(GPT4, 4)),
        scrape("b", smart_0=times(GPT4, 2)),
        now=later(1),
    )
    assert ledger.total.requests == 6
    assert ledger.total.spend_usd == pytest.approx(6 * 0.0006)


def test_the_same_scrape_twice_adds_nothing() -> None:
    scrapes = (scrape("a", smart_0=times(GPT4, 4)), scrape("b", smart_0=times(GPT4, 2)))
    once = sync(Ledger(), *scrapes)
    twice = sync(once, *scrapes, now=later(1))
    assert twice.total == once.total


def test_only_matched_deployments_count_but_all_keep_a_baseline() -> None:
    ledger = sync(Ledger(), scrape(smart_0=GPT4, cheap_0=times(GPT4, 10)))
    assert close(ledger.total, GPT4)
    # The quota now matches cheap/0 too: only what cheap/0 served since counts.
    ledger = sync(
        ledger,
        scrape(smart_0=GPT4, cheap_0=times(GPT4, 11)),
        matched=("smart/0", "cheap/0"),
        now=later(1),
    )
    assert close(ledger.total, times(GPT4, 2))


def test_a_deployment_that_appears_counts_from_zero() -> None:
    ledger = sync(Ledger(), scrape(smart_1=GPT4))
    ledger = sync(ledger, scrape(smart_1=GPT4, smart_0=times(GPT4, 2)), now=later(1))
    assert close(ledger.total, times(GPT4, 2))


# -- resets and replicas -------------------------------------------------------------


def test_counters_that_went_down_count_the_new_value_from_zero() -> None:
    ledger = sync(Ledger(), scrape(smart_0=times(GPT4, 5)))
    ledger = sync(ledger, scrape(smart_0=times(GPT4, 2)), now=later(1))
    assert close(ledger.total, times(GPT4, 7))


def test_a_restarted_container_is_a_reset_even_when_counters_grew_past_the_old() -> None:
    ledger = sync(Ledger(), scrape(smart_0=times(GPT4, 2)))
    restarted = ReplicaScrape(
        uid="uid-a",
        pod="gw-litellm-uid-a",
        deployments={"smart/0": times(GPT4, 3)},
        started=later(0.5),
        restarts=1,
    )
    ledger = sync(ledger, restarted, now=later(1))
    assert close(ledger.total, times(GPT4, 5))


def test_a_new_process_is_a_reset() -> None:
    first = ReplicaScrape("u", "p", {"smart/0": times(GPT4, 2)}, MONTH_START, 0, 100.0)
    ledger = sync(Ledger(), first)
    second = ReplicaScrape("u", "p", {"smart/0": times(GPT4, 3)}, MONTH_START, 0, 200.0)
    assert close(sync(ledger, second, now=later(1)).total, times(GPT4, 5))
    same = ReplicaScrape("u", "p", {"smart/0": times(GPT4, 3)}, MONTH_START, 0, 100.0)
    assert close(sync(ledger, same, now=later(1)).total, times(GPT4, 3))


def test_a_series_that_disappears_means_a_new_process() -> None:
    ledger = sync(Ledger(), scrape(smart_0=times(GPT4, 2), smart_1=GPT4))
    ledger = sync(ledger, scrape(smart_0=times(GPT4, 3)), now=later(1))
    assert close(ledger.total, times(GPT4, 5))


def test_a_new_pod_uid_counts_from_zero_and_a_vanished_one_is_dropped() -> None:
    ledger = sync(Ledger(), scrape("old", smart_0=times(GPT4, 4)))
    ledger = sync(ledger, scrape("new", started=later(0.5), smart_0=GPT4), now=later(1))
    assert close(ledger.total, times(GPT4, 5))
    assert set(ledger.replicas) == {"new"}


def test_a_replica_that_did_not_answer_keeps_its_baseline() -> None:
    ledger = sync(Ledger(), scrape("a", smart_0=times(GPT4, 4)))
    silent = ReplicaScrape("a", "gw-litellm-a", None, MONTH_START)
    ledger2 = sync(ledger, silent, now=later(1))
    assert ledger2.replicas == ledger.replicas
    assert ledger2.total == ledger.total
    ledger3 = sync(ledger2, scrape("a", smart_0=times(GPT4, 6)), now=later(2))
    assert close(ledger3.total, times(GPT4, 6))


def test_a_silent_replica_never_seen_is_not_recorded() -> None:
    ledger = sync(Ledger(), ReplicaScrape("a", "gw-litellm-a", None, MONTH_START))
    assert ledger.replicas == {}


# -- periods -------------------------------------------------------------------------


def test_rollover_resets_totals_and_keeps_the_baseline() -> None:
    end_of_march = dt.datetime(2026, 3, 31, 23, 59, 50, tzinfo=UTC)
    april = dt.datetime(2026, 4, 1, 0, 0, 5, tzinfo=UTC)
    ledger = sync(Ledger(), scrape(smart_0=times(GPT4, 10)), now=end_of_march)
    assert close(ledger.total, times(GPT4, 10))
    ledger = sync(ledger, scrape(smart_0=times(GPT4, 12)), now=april)
    # The 2 requests around the boundary are not charged to April.
    assert close(ledger.total, Usage())
    assert ledger.period_start == dt.datetime(2026, 4, 1, tzinfo=UTC)
    assert ledger.period_end == dt.datetime(2026, 5, 1, tzinfo=UTC)
    ledger = sync(ledger, scrape(smart_0=times(GPT4, 13)), now=april + dt.timedelta(seconds=15))
    assert close(ledger.total, GPT4)


def test_rollover_counts_a_replica_that_started_after_the_boundary() -> None:
    end_of_march = dt.datetime(2026, 3, 31, 23, 59, 50, tzinfo=UTC)
    april = dt.datetime(2026, 4, 1, 0, 0, 5, tzinfo=UTC)
    ledger = sync(Ledger(), scrape("old", smart_0=times(GPT4, 10)), now=end_of_march)
    fresh = scrape("new", started=april - dt.timedelta(seconds=2), smart_0=GPT4)
    ledger = sync(ledger, fresh, now=april)
    assert close(ledger.total, GPT4)


def test_a_changed_period_starts_a_new_one() -> None:
    ledger = sync(Ledger(), scrape(smart_0=times(GPT4, 10)))
    daily = advance(ledger, [scrape(smart_0=times(GPT4, 11))], ["smart/0"], period="daily", now=NOW)
    assert close(daily.total, Usage())
    assert daily.period_start == dt.datetime(2026, 3, 14, tzinfo=UTC)


# -- status round trip and state -------------------------------------------------------


def test_the_ledger_round_trips_through_a_json_status() -> None:
    ledger = sync(
        Ledger(),
        ReplicaScrape("a", "gw-a", {"smart/0": times(GPT4, 3)}, MONTH_START, 2, 1.7e9),
        scrape("b", smart_0=GPT4, cheap_0=GPT4),
    )
    status = json.loads(json.dumps(ledger.to_status()))
    assert status["periodStart"] == "2026-03-01T00:00:00Z"
    assert status["periodEnd"] == "2026-04-01T00:00:00Z"
    assert status["spentUSD"] == pytest.approx(0.0024)
    assert (status["requests"], status["inputTokens"], status["outputTokens"]) == (4, 40, 20)
    assert status["replicas"]["a"] == {
        "pod": "gw-a",
        "seen": "2026-03-14T12:00:00Z",
        "restarts": 2,
        "processStart": 1.7e9,
        "deployments": {
            "smart/0": {
                "spendUSD": pytest.approx(0.0018),
                "inputTokens": 30,
                "outputTokens": 15,
                "requests": 3,
            }
        },
    }
    again = Ledger.from_status(status)
    assert again.replicas == ledger.replicas
    assert again.period_start == ledger.period_start
    # Applying the same scrapes to the stored ledger adds nothing.
    same = sync(
        again,
        ReplicaScrape("a", "gw-a", {"smart/0": times(GPT4, 3)}, MONTH_START, 2, 1.7e9),
        scrape("b", smart_0=GPT4, cheap_0=GPT4),
        now=later(1),
    )
    assert same.total == again.total


def test_an_unreadable_status_is_not_trusted() -> None:
    ledger = Ledger.from_status(
        {
            "periodStart": "not a time",
            "spentUSD": "lots",
            "replicas": {"a": {"pod": "x"}, "b": "nonsense"},
        }
    )
    assert ledger == Ledger()


@pytest.mark.parametrize(
    ("spent", "state"),
    [(0, "Ok"), (79.99, "Ok"), (80, "SoftLimited"), (99.99, "SoftLimited"), (100, "Exhausted")],
)
def test_states(spent: float, state: str) -> None:
    assert budget_state(spent, 100, 80) == state


def test_state_edges_are_exact() -> None:
    # 0.1 * 3 is 0.30000000000000004 in floats: at or over the limit either way.
    assert budget_state(0.1 * 3, 0.3, 80) == "Exhausted"
    assert budget_state(0.24, 0.3, 80) == "SoftLimited"
    assert percent_used(0.2, 0.3) == 66.67


# -- properties ----------------------------------------------------------------------

deployment_ids = st.sampled_from(["smart/0", "smart/1", "cheap/0"])
serves = st.lists(st.tuples(st.integers(0, 2), deployment_ids, st.integers(1, 50)), max_size=6)
disruptions = st.one_of(
    st.none(), st.tuples(st.sampled_from(["restart", "replace"]), st.integers(0, 2))
)
everyone = frozenset({0, 1, 2})
# One round: replicas serve, one may restart or be replaced, they serve again, a sync reads
# the replicas that answer (usually all of them).
rounds = st.lists(
    st.tuples(serves, disruptions, serves, st.just(everyone) | st.frozensets(st.integers(0, 2))),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(rounds=rounds, matched=st.frozensets(deployment_ids))
def test_the_ledger_counts_every_observed_request_exactly_once(rounds, matched) -> None:
    """Three replicas serve, restart and get replaced between syncs at random.

    Every request a replica served is counted once its process is observed after it; what a
    process served after its last observation is lost when it restarts or goes away, as
    documented.
    """
    replicas = [{"gen": 0, "restarts": 0, "counts": {}} for _ in range(3)]
    pending = [0, 0, 0]  # matched requests served since each process was last observed
    expected = 0
    ledger = Ledger()
    clock = NOW

    def serve(batch: list[tuple[int, str, int]]) -> None:
        for i, deployment, n in batch:
            counts = replicas[i]["counts"]
            counts[deployment] = counts.get(deployment, 0) + n
            if deployment in matched:
                pending[i] += n

    for before, disruption, after, answering in rounds:
        serve(before)
        if disruption is not None:
            kind, i = disruption
            if kind == "restart":
                replicas[i].update(restarts=replicas[i]["restarts"] + 1, counts={})
            else:
                replicas[i].update(gen=replicas[i]["gen"] + 1, restarts=0, counts={})
            pending[i] = 0
        serve(after)
        clock += dt.timedelta(seconds=15)
        scrapes = []
        for i, replica in enumerate(replicas):
            answers = i in answering
            counts = {d: times(GPT4, n) for d, n in replica["counts"].items()}
            scrapes.append(
                ReplicaScrape(
                    uid=f"r{i}-{replica['gen']}",
                    pod=f"r{i}",
                    deployments=counts if answers else None,
                    started=MONTH_START,
                    restarts=replica["restarts"],
                )
            )
            if answers:
                expected += pending[i]
                pending[i] = 0
        previous = ledger
        ledger = advance(ledger, scrapes, matched, period="monthly", now=clock)
        # Idempotent: the same scrapes again change nothing.
        assert advance(ledger, scrapes, matched, period="monthly", now=clock) == ledger
        assert ledger.total.requests >= previous.total.requests
        assert ledger.total.requests == expected
    assert ledger.total.input_tokens == 10 * expected
    assert ledger.total.spend_usd == pytest.approx(0.0006 * expected)
