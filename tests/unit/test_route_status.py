"""An LLMRoute's status machine (llmroute.route.status): conditions from what was observed."""

from __future__ import annotations

from llmroute.api.quota import ACTIONS, ENFORCEMENTS, STATES
from llmroute.conditions import set_condition
from llmroute.route.status import (
    CONDITION_ORDER,
    proxy_condition,
    status_changed,
    with_ready,
)


def deployment(available: str | None, ready: int = 1, replicas: int = 1) -> dict:
    status: dict = {"readyReplicas": ready}
    if available is not None:
        status["conditions"] = [
            {"type": "Available", "status": available, "reason": "MinimumReplicasAvailable"}
        ]
    return {"spec": {"replicas": replicas}, "status": status}


def condition(conditions: list[dict], type_: str) -> dict:
    return next(c for c in conditions if c["type"] == type_)


def test_proxy_available_follows_the_deployment() -> None:
    missing = condition(proxy_condition([], None, 3), "ProxyAvailable")
    assert (missing["status"], missing["reason"]) == ("False", "NoDeployment")
    pending = condition(proxy_condition([], deployment(None), 3), "ProxyAvailable")
    assert (pending["status"], pending["reason"]) == ("Unknown", "Pending")
    up = condition(
        proxy_condition([], deployment("True", ready=2, replicas=2), 3), "ProxyAvailable"
    )
    assert (up["status"], up["reason"], up["message"]) == (
        "True",
        "MinimumReplicasAvailable",
        "2/2 proxy replicas ready",
    )
    assert up["observedGeneration"] == 3


def test_ready_sums_up_the_others_in_order() -> None:
    conditions = set_condition([], "ConfigValid", True, "Valid", "ok", 1)
    conditions = proxy_condition(conditions, deployment("True"), 1)
    ready = with_ready(conditions, 1)
    assert [c["type"] for c in ready] == ["Ready", "ConfigValid", "ProxyAvailable"]
    assert condition(ready, "Ready")["status"] == "True"

    failing = with_ready(
        set_condition(ready, "SecretsResolved", False, "SecretNotFound", "x", 1), 1
    )
    assert [c["type"] for c in failing] == [
        t
        for t in CONDITION_ORDER
        if t not in ("Applied", "OllamaReady", "Exposed", "LimitsExact", "OperatorAccess")
    ]
    assert (condition(failing, "Ready")["status"], condition(failing, "Ready")["reason"]) == (
        "False",
        "SecretsResolvedNotTrue",
    )


def test_ready_waits_for_the_proxy() -> None:
    ready = condition(
        with_ready(set_condition([], "ConfigValid", True, "Valid", "ok", 1), 1), "Ready"
    )
    assert (ready["status"], ready["reason"]) == ("False", "Pending")


def test_transition_time_moves_only_on_a_change() -> None:
    long_ago = "2020-01-01T00:00:00Z"
    first = [
        {**c, "lastTransitionTime": long_ago} for c in proxy_condition([], deployment("True"), 1)
    ]
    again = proxy_condition(first, deployment("True", ready=1), 2)
    assert condition(again, "ProxyAvailable")["lastTransitionTime"] == long_ago
    down = proxy_condition(first, deployment("False"), 2)
    assert condition(down, "ProxyAvailable")["lastTransitionTime"] != long_ago
    assert not status_changed({"conditions": first}, {"conditions": first, "kopf": {"x": 1}})
    assert status_changed({"conditions": first}, {"conditions": again})


def test_quota_enums_are_the_crds_in_the_order_the_names_assume() -> None:
    assert STATES == ("Ok", "SoftLimited", "Exhausted")
    assert ACTIONS == ("fallback", "reject")
    assert ENFORCEMENTS == ("enforce", "shadow")
