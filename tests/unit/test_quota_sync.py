"""One sync's writes: the event announcing a state change is stored before the status records
the change, under a name that makes announcing the same change again a no-op.

So a user who sees the new state finds its event, a sync that loses its status write (or an
operator that stops in between) announces nothing twice, and none is lost.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from llmroute.quota import sync as quota_sync
from llmroute.quota.status import QuotaEvent, SyncResult, transition_event_object

NOW = dt.datetime(2026, 3, 14, 12, 0, tzinfo=dt.UTC)
EXHAUSTED = QuotaEvent("Warning", "BudgetExhausted", "Exhausted: $12.00 of $10.00 (120%) spent")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def quota(name: str = "openai-budget", generation: int = 3, uid: str = "uid-1") -> dict:
    return {
        "apiVersion": "llmroute.dev/v1alpha1",
        "kind": "ModelQuota",
        "metadata": {
            "name": name,
            "namespace": "team-a",
            "uid": uid,
            "generation": generation,
            "resourceVersion": "41",
        },
        "spec": {"routeRef": {"name": "gw"}, "budget": {"limitUSD": 10}},
        "status": {"state": "SoftLimited", "periodStart": "2026-03-01T00:00:00Z"},
    }


def result(
    state: str = "Exhausted",
    event: QuotaEvent | None = EXHAUSTED,
    period_start: str = "2026-03-01T00:00:00Z",
    previous: str = "SoftLimited",
    write: bool = True,
) -> SyncResult:
    return SyncResult(
        status={"state": state, "periodStart": period_start},
        write=write,
        previous_state=previous,
        state=state,
        event=event,
        rerender_route=True,
    )


# -- the event object (pure) ----------------------------------------------------------


def test_the_event_object_announces_the_change_on_the_quota() -> None:
    event = transition_event_object(quota(), result(), NOW)
    assert event is not None
    assert event["metadata"]["namespace"] == "team-a"
    assert event["involvedObject"] == {
        "apiVersion": "llmroute.dev/v1alpha1",
        "kind": "ModelQuota",
        "name": "openai-budget",
        "namespace": "team-a",
        "uid": "uid-1",
    }
    assert (event["type"], event["reason"], event["message"]) == (
        EXHAUSTED.type,
        EXHAUSTED.reason,
        EXHAUSTED.message,
    )
    assert event["firstTimestamp"] == event["lastTimestamp"] == "2026-03-14T12:00:00Z"
    assert event["count"] == 1
    assert event["source"] == {"component": "llmroute"}


def test_no_event_object_without_a_change() -> None:
    assert transition_event_object(quota(), result(event=None), NOW) is None


def test_one_change_has_one_name_whenever_and_from_wherever_it_is_computed() -> None:
    name = transition_event_object(quota(), result(), NOW)["metadata"]["name"]
    later = NOW + dt.timedelta(seconds=15)
    # The next sync after a lost status write, or after a restart, computes the same change:
    # maybe from another previous state, with other figures in the message, at another time.
    again = result(previous="Ok", event=QuotaEvent("Warning", "BudgetExhausted", "other"))
    assert transition_event_object(quota(), again, later)["metadata"]["name"] == name
    # A change of another state, period, spec generation or object is another event.
    others = [
        (quota(), result(state="SoftLimited")),
        (quota(), result(period_start="2026-04-01T00:00:00Z")),
        (quota(generation=4), result()),
        (quota(uid="uid-2"), result()),
    ]
    names = {transition_event_object(q, r, NOW)["metadata"]["name"] for q, r in others}
    assert name not in names and len(names) == len(others)


def test_the_event_name_is_valid_for_the_longest_quota_name() -> None:
    for quota_name in ("q", "openai-budget", "q" * 253):
        name = transition_event_object(quota(quota_name), result(), NOW)["metadata"]["name"]
        assert len(name) <= 253 and DNS_SUBDOMAIN.fullmatch(name), name


# -- the sync's order of writes ---------------------------------------------------------


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The sync's view of the cluster: one quota whose next status is `result`."""
    state: dict[str, Any] = {"writes": [], "post_error": None, "result": result()}

    class Events:
        def __init__(self, api: object) -> None:
            pass

        def create_namespaced_event(self, namespace: str, body: dict) -> dict:
            state["writes"].append(("event", body["metadata"]["name"]))
            if state["post_error"] is not None:
                raise ApiException(status=state["post_error"])
            return body

    def write_status(api: object, obj: dict, status: dict) -> bool:
        state["writes"].append(("status", status["state"]))
        return True

    monkeypatch.setattr(quota_sync.client, "CoreV1Api", Events)
    monkeypatch.setattr(quota_sync, "write_status", write_status)
    monkeypatch.setattr(
        quota_sync, "_get", lambda api, ns, plural, name: quota() if plural == "modelquotas" else {}
    )
    monkeypatch.setattr(quota_sync, "scrape_route", lambda api, ns, route, fetch: [])
    monkeypatch.setattr(quota_sync, "next_status", lambda *a, **kw: state["result"])
    return state


def sync() -> quota_sync.SyncOutcome | None:
    return quota_sync.sync_quota(object(), "team-a", "openai-budget", now=NOW)  # type: ignore[arg-type]


def test_the_event_is_stored_before_the_status_records_the_change(cluster) -> None:
    outcome = sync()
    assert outcome is not None and outcome.written
    name = transition_event_object(quota(), result(), NOW)["metadata"]["name"]
    assert cluster["writes"] == [("event", name), ("status", "Exhausted")]


def test_a_change_announced_already_is_not_announced_twice(cluster) -> None:
    # The event exists: an earlier sync posted it and then lost its status write, or stopped.
    cluster["post_error"] = 409
    outcome = sync()
    assert outcome is not None and outcome.written
    assert [what for what, _ in cluster["writes"]] == ["event", "status"]


def test_a_refused_event_leaves_the_change_for_the_next_sync(cluster) -> None:
    # Not recorded in the status, the change is computed and announced again next time.
    cluster["post_error"] = 500
    with pytest.raises(ApiException):
        sync()
    assert [what for what, _ in cluster["writes"]] == ["event"]


def test_no_event_without_a_change(cluster) -> None:
    cluster["result"] = result(event=None, state="SoftLimited")
    sync()
    assert cluster["writes"] == [("status", "SoftLimited")]


def test_nothing_written_when_nothing_changed(cluster) -> None:
    cluster["result"] = result(write=False)
    outcome = sync()
    assert outcome is not None and not outcome.written
    assert cluster["writes"] == []
