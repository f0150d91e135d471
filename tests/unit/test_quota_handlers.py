"""The ModelQuota handlers' own decisions: sync interval, events, when a route is re-rendered.

The cluster side (reading, scraping, writing status) is covered by tests/e2e/test_quota.py.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from llmroute.handlers import quota as handlers
from llmroute.quota.status import QuotaEvent, SyncResult
from llmroute.quota.sync import SyncOutcome

LOGGER = logging.getLogger("test")
NO_CHILDREN: dict = {}  # the operator's index of optional children, empty


@pytest.mark.parametrize(
    ("value", "seconds"), [(None, 15.0), ("2", 2.0), ("0.5", 0.5), ("0", 15.0), ("soon", 15.0)]
)
def test_sync_interval_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str | None, seconds: float
) -> None:
    if value is None:
        monkeypatch.delenv(handlers.SYNC_INTERVAL_ENV, raising=False)
    else:
        monkeypatch.setenv(handlers.SYNC_INTERVAL_ENV, value)
    assert handlers.sync_interval() == seconds


def outcome(*, written: bool, event: QuotaEvent | None, rerender: bool) -> SyncOutcome:
    quota = {
        "apiVersion": "llmroute.dev/v1alpha1",
        "kind": "ModelQuota",
        "metadata": {"name": "q", "namespace": "ns", "uid": "u"},
    }
    result = SyncResult(
        status={},
        write=True,
        previous_state="Ok",
        state="Exhausted",
        event=event,
        rerender_route=rerender,
    )
    return SyncOutcome(quota=quota, route_name="gw", result=result, written=written)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    recorded: dict[str, list[Any]] = {"events": [], "rerenders": []}
    monkeypatch.setattr(handlers.state, "api_client", lambda: None)
    monkeypatch.setattr(
        handlers.kopf, "event", lambda obj, **kw: recorded["events"].append((obj, kw))
    )
    monkeypatch.setattr(
        handlers,
        "rerender_route",
        lambda namespace, name, index, logger: recorded["rerenders"].append((namespace, name)),
    )
    return recorded


EXHAUSTED = QuotaEvent("Warning", "BudgetExhausted", "Exhausted: ...")


def test_a_written_state_change_rerenders(monkeypatch, calls) -> None:
    done = outcome(written=True, event=EXHAUSTED, rerender=True)
    monkeypatch.setattr(handlers, "sync_quota", lambda api, ns, name: done)
    assert handlers.sync("ns", "q", NO_CHILDREN, LOGGER) is done
    # The sync stored the event itself, before the status (tests/unit/test_quota_sync.py);
    # kopf's queue would post it after the status, or not at all if the post failed.
    assert calls["events"] == []
    assert calls["rerenders"] == [("ns", "gw")]


def test_nothing_is_rerendered_when_the_write_lost_a_race(monkeypatch, calls) -> None:
    # The next sync computes the same change again and acts on it then, once.
    done = outcome(written=False, event=EXHAUSTED, rerender=True)
    monkeypatch.setattr(handlers, "sync_quota", lambda api, ns, name: done)
    handlers.sync("ns", "q", NO_CHILDREN, LOGGER)
    assert calls == {"events": [], "rerenders": []}


def test_change_handlers_leave_the_rerender_to_themselves(monkeypatch, calls) -> None:
    done = outcome(written=True, event=EXHAUSTED, rerender=True)
    monkeypatch.setattr(handlers, "sync_quota", lambda api, ns, name: done)
    handlers.quota_changed(
        name="q",
        namespace="ns",
        old={"spec": {"routeRef": {"name": "before"}}},
        new={"spec": {"routeRef": {"name": "gw"}}},
        optional_children=NO_CHILDREN,
        logger=LOGGER,
    )
    # Both the route it left and the one it references now, each once.
    assert calls["rerenders"] == [("ns", "before"), ("ns", "gw")]


def test_a_deleted_quota_rerenders_its_route(calls) -> None:
    handlers.quota_deleted(
        name="q",
        namespace="ns",
        spec={"routeRef": {"name": "gw"}},
        optional_children=NO_CHILDREN,
        logger=LOGGER,
    )
    assert calls["rerenders"] == [("ns", "gw")]
