"""`llmroute usage` rows from a real proxy's /metrics (tests/unit/data/litellm_metrics.txt)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmroute.cli.usage import USAGE_DIMENSIONS, group_usage, usage_table
from llmroute.quota.counters import Usage, counter_samples, parse_metrics
from llmroute.quota.ledger import ReplicaScrape
from llmroute.quota.scrape import ProxyReplica, ReplicaMetrics
from llmroute.quota.usage import route_usage, usage_rows

METRICS = (Path(__file__).parent / "data" / "litellm_metrics.txt").read_text()
GPT4_REQUEST = 0.0006  # openai/gpt-4 in LiteLLM's price map, 10 + 5 tokens
GPT4O_REQUEST = (10 * 2.5 + 5 * 10) / 1e6  # the spec's pricing per million
MINI_REQUEST = (10 * 1000 + 5 * 2000) / 1e6

# The route the fixture was recorded from (see the fixture's header).
ROUTE: dict[str, Any] = {
    "metadata": {"name": "gw", "namespace": "team-a"},
    "spec": {
        "models": [
            {
                "name": "smart",
                "targets": [
                    {"provider": "openai", "model": "gpt-4"},
                    {"provider": "openai-compatible", "model": "gpt-4o"},
                ],
                "fallbacks": ["cheap"],
            },
            {"name": "cheap", "targets": [{"provider": "openai", "model": "gpt-4o-mini"}]},
        ],
        "tasks": ["summarize", "triage"],
    },
}


def replica_metrics(name: str) -> ReplicaMetrics:
    replica = ProxyReplica(name, f"uid-{name}", "127.0.1.2", True, True, None, 0)
    return ReplicaMetrics(replica, tuple(parse_metrics(METRICS)))


def rows_by_key(rows) -> dict[tuple[str, str, str, str], Usage]:
    return {(r.model, r.target, r.caller, r.task): r.usage for r in rows}


def test_rows_per_model_target_caller_and_task() -> None:
    rows = route_usage(ROUTE, [replica_metrics("a")])
    assert {(r.namespace, r.route) for r in rows} == {("team-a", "gw")}
    usage = rows_by_key(rows)
    assert set(usage) == {
        ("smart", "openai/gpt-4", "billing", ""),
        ("smart", "openai/gpt-4", "billing", "summarize"),
        ("smart", "openai/gpt-4", "support", "triage"),
        ("smart", "openai-compatible/gpt-4o", "billing", ""),
        ("cheap", "openai/gpt-4o-mini", "support", "triage"),
        ("cheap", "openai/gpt-4o-mini", "_master", ""),
    }
    plain = usage[("smart", "openai/gpt-4", "billing", "")]
    assert (plain.requests, plain.input_tokens, plain.output_tokens) == (3, 30, 15)
    assert plain.spend_usd == pytest.approx(3 * GPT4_REQUEST)
    # The two requests gpt-4 failed were served by the next target and are charged there.
    fallback = usage[("smart", "openai-compatible/gpt-4o", "billing", "")]
    assert fallback.requests == 2
    assert fallback.spend_usd == pytest.approx(2 * GPT4O_REQUEST)
    triage = usage[("cheap", "openai/gpt-4o-mini", "support", "triage")]
    assert triage.requests == 2
    assert triage.spend_usd == pytest.approx(2 * MINI_REQUEST)
    assert sum(u.requests for u in usage.values()) == 11
    # Targets in spec order (gpt-4 before gpt-4o), whatever their ids sort like.
    smart = [r.deployment for r in rows if r.model == "smart"]
    assert list(dict.fromkeys(smart)) == ["smart/openai/gpt-4", "smart/openai-compatible/gpt-4o"]


def test_replicas_add_up() -> None:
    one = rows_by_key(route_usage(ROUTE, [replica_metrics("a")]))
    two = rows_by_key(route_usage(ROUTE, [replica_metrics("a"), replica_metrics("b")]))
    assert set(one) == set(two)
    for key, usage in one.items():
        assert two[key].requests == 2 * usage.requests
        assert two[key].spend_usd == pytest.approx(2 * usage.spend_usd)


def test_silent_replicas_are_skipped() -> None:
    silent = ReplicaMetrics(ProxyReplica("c", "uc", None, False, False, None, 0), None, "down")
    assert route_usage(ROUTE, [silent]) == []
    assert isinstance(silent.to_scrape(), ReplicaScrape)


def test_without_declared_tasks_the_tag_labels_name_them() -> None:
    rows = usage_rows(
        [counter_samples(parse_metrics(METRICS))], namespace="team-a", route="gw", tasks=None
    )
    assert {r.task for r in rows} == {"", "summarize", "triage"}
    # Without the spec a target is described by LiteLLM's labels (provider, then model).
    assert {r.target for r in rows} == {"openai/gpt-4", "openai/gpt-4o", "openai/gpt-4o-mini"}


def test_table() -> None:
    rows = route_usage(ROUTE, [replica_metrics("a")])
    text = usage_table(group_usage(rows, USAGE_DIMENSIONS), USAGE_DIMENSIONS)
    lines = text.splitlines()
    assert lines[0].split() == [
        "NAMESPACE",
        "ROUTE",
        "MODEL",
        "TARGET",
        "CALLER",
        "TASK",
        "REQUESTS",
        "INPUT",
        "TOKENS",
        "OUTPUT",
        "TOKENS",
        "SPEND",
        "USD",
    ]
    # A line per row (each target of the fixture's route is a distinct provider/model), then
    # the TOTAL line.
    assert len(lines) == 1 + len(rows) + 1
    assert lines[-1].split()[:2] == ["TOTAL", str(sum(r.usage.requests for r in rows))]
    assert lines[1].split()[:2] == ["team-a", "gw"]
    assert any(line.split()[4:7] == ["_master", "-", "1"] for line in lines[1:])
    columns = [
        "NAMESPACE",
        "ROUTE",
        "MODEL",
        "TARGET",
        "CALLER",
        "TASK",
        "REQUESTS",
        "INPUT TOKENS",
        "OUTPUT TOKENS",
        "SPEND USD",
    ]
    assert usage_table([], USAGE_DIMENSIONS) == "   ".join(columns)
    assert rows[0].to_json()["spendUSD"] == rows[0].usage.spend_usd
