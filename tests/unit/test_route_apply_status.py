"""What a route's status says when the API server refuses its objects, and how it is patched
(llmroute.route.status, pure)."""

from __future__ import annotations

from llmroute.conditions import set_condition
from llmroute.route.status import (
    Refusal,
    applied_condition,
    proxy_condition,
    refusal_condition,
    status_changed,
    status_patch,
    with_ready,
)

AVAILABLE = {
    "spec": {"replicas": 1},
    "status": {
        "readyReplicas": 1,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}
        ],
    },
}


def condition(conditions: list[dict], type_: str) -> dict:
    return next(c for c in conditions if c["type"] == type_)


def serving(generation: int = 1) -> list[dict]:
    conditions = set_condition([], "ConfigValid", True, "Valid", "ok", generation)
    conditions = set_condition(conditions, "SecretsResolved", True, "Found", "ok", generation)
    conditions = applied_condition(conditions, None, generation)
    return with_ready(proxy_condition(conditions, AVAILABLE, generation), generation)


FORBIDDEN = Refusal(
    "delete",
    "StatefulSet",
    "gw-ollama",
    403,
    'statefulsets.apps "gw-ollama" is forbidden: User "system:serviceaccount:ops:llmroute" '
    'cannot delete resource "statefulsets" in API group "apps" in the namespace "ops"',
)
INVALID = Refusal(
    "apply",
    "Deployment",
    "gw-litellm",
    422,
    'Deployment.apps "gw-litellm" is invalid: spec.template.spec.containers[0].resources'
    '.requests: Invalid value: "2": must be less than or equal to cpu limit of 1',
)


def test_a_route_whose_objects_are_all_applied_is_ready() -> None:
    conditions = serving()
    applied = condition(conditions, "Applied")
    assert (applied["status"], applied["reason"]) == ("True", "Applied")
    assert condition(conditions, "Ready")["status"] == "True"


def test_an_apply_failure_makes_ready_false_with_the_object_and_the_apis_message() -> None:
    conditions = with_ready(applied_condition(serving(), [FORBIDDEN], 2), 2)
    applied = condition(conditions, "Applied")
    assert (applied["status"], applied["reason"]) == ("False", "ApplyFailed")
    assert applied["message"].startswith("delete StatefulSet gw-ollama: ")
    assert 'cannot delete resource "statefulsets"' in applied["message"]
    ready = condition(conditions, "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False",
        "ApplyFailed",
        applied["message"],
    )
    # The proxy still serves; its own condition says so.
    assert condition(conditions, "ProxyAvailable")["status"] == "True"
    healed = with_ready(applied_condition(conditions, None, 3), 3)
    assert condition(healed, "Ready")["status"] == "True"


def test_a_refusal_of_the_spec_is_a_config_error_and_any_other_an_apply_failure() -> None:
    assert refusal_condition([INVALID]) == (
        "ConfigValid",
        "RejectedByAPIServer",
        f"apply Deployment gw-litellm: {INVALID.message}",
    )
    assert refusal_condition([FORBIDDEN])[:2] == ("Applied", "ApplyFailed")
    # Both: the spec must change first, so that is what the status says.
    kind, reason, message = refusal_condition([FORBIDDEN, INVALID])
    assert (kind, reason) == ("ConfigValid", "RejectedByAPIServer")
    assert "Deployment gw-litellm" in message and "StatefulSet" not in message


def test_the_message_of_several_refusals_names_each_object() -> None:
    other = Refusal("apply", "StatefulSet", "gw-ollama", 422, "tolerations[0].operator: Invalid")
    message = refusal_condition([INVALID, other])[2]
    assert "Deployment gw-litellm: " in message and "; apply StatefulSet gw-ollama: " in message


def test_a_removed_status_field_is_sent_as_null() -> None:
    current = {"observedGeneration": 1, "ollama": {"models": []}, "kopf": {"progress": {}}}
    wanted = {"observedGeneration": 1, "kopf": {"progress": {}}}
    # kopf's bookkeeping is kopf's to write: never in the patch.
    assert status_patch(current, wanted) == {"observedGeneration": 1, "ollama": None}
    assert status_changed(current, wanted)


def test_an_unchanged_status_is_not_patched() -> None:
    status = {"observedGeneration": 2, "conditions": serving(2), "kopf": {"dummy": "x"}}
    assert not status_changed(status, dict(status))
    # kopf's own bookkeeping does not count, nor does a field that is absent on both sides.
    assert not status_changed(status, {**status, "kopf": {"other": 1}})
    assert not status_changed(status, {**status, "ollama": None})
    assert status_changed({**status, "ollama": {"models": []}}, {**status, "ollama": None})
