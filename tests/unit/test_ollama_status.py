"""The Ollama part of a route's status (route/ollama.py): the pure parts, and /api/tags
read from the real Ollama on loopback, serving the tiny local model."""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import pytest

from built_tools import require_tools
from llmroute.api.route import parse_route
from llmroute.route.ollama import (
    OllamaState,
    fetch_tags,
    keep_claim_templates,
    normalise_model_name,
    observe_ollama,
    ollama_state,
    pod_problem,
    presence_from_tags,
    read_presence,
    statefulset_readiness,
    wanted_models,
    with_ollama_condition,
)
from localcluster.tinymodel import local_ollama


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("llama3.2", "llama3.2:latest"),
        ("Llama3.2", "llama3.2:latest"),
        ("library/llama3.2", "llama3.2"),
        ("registry.ollama.ai/library/llama3.2:latest", "llama3.2"),
        ("registry.ollama.ai/jmorgan/tiny", "jmorgan/tiny:latest"),
        (
            "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
            "hf.co/bartowski/llama-3.2-1b-instruct-gguf:q4_k_m",
        ),
        ("localhost:5000/team/model", "localhost:5000/team/model:latest"),
    ],
)
def test_names_that_are_the_same_model(a: str, b: str) -> None:
    assert normalise_model_name(a) == normalise_model_name(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("llama3.2", "llama3.2:1b"),
        ("qwen2.5:7b", "qwen2.5:14b"),
        ("jmorgan/tiny", "tiny"),
        ("localhost:5000/model", "model"),
    ],
)
def test_names_that_are_different_models(a: str, b: str) -> None:
    assert normalise_model_name(a) != normalise_model_name(b)


def tags(*names: str) -> dict[str, Any]:
    return {"models": [{"name": n, "model": n, "size": 1, "details": {}} for n in names]}


def test_presence_from_tags_in_the_order_asked() -> None:
    answer = tags("llama3.2:latest", "nomic-embed-text:latest")
    assert presence_from_tags(answer, ["qwen2.5:7b", "llama3.2", "nomic-embed-text"]) == [
        {"name": "qwen2.5:7b", "present": "False"},
        {"name": "llama3.2", "present": "True"},
        {"name": "nomic-embed-text", "present": "True"},
    ]
    assert presence_from_tags({"models": []}, ["llama3.2"]) == [
        {"name": "llama3.2", "present": "False"}
    ]


def test_something_else_than_tags_is_an_error() -> None:
    with pytest.raises(ValueError):
        presence_from_tags({"error": "nope"}, ["llama3.2"])


def test_presence_is_unknown_when_no_ollama_answers() -> None:
    def fetch(url: str) -> dict[str, Any]:
        raise ConnectionRefusedError(111, "Connection refused")

    presence, why = read_presence(["http://10.0.0.1:11434"], ["llama3.2"], fetch)
    assert presence == [{"name": "llama3.2", "present": "Unknown"}]
    assert why is not None and "10.0.0.1" in why
    presence, why = read_presence([], ["llama3.2"], fetch)
    assert presence == [{"name": "llama3.2", "present": "Unknown"}]
    assert why == "no running Ollama pod to ask"


def test_the_first_ollama_that_answers_is_believed() -> None:
    answers = {"http://b": tags("llama3.2:latest")}

    def fetch(url: str) -> dict[str, Any]:
        if url not in answers:
            raise TimeoutError("timed out")
        return answers[url]

    presence, why = read_presence(["http://a", "http://b"], ["llama3.2"], fetch)
    assert presence == [{"name": "llama3.2", "present": "True"}]
    assert why is None


def test_wanted_models_are_the_declared_ones_then_the_targets() -> None:
    route = parse_route(
        {
            "metadata": {"name": "gw", "namespace": "ns"},
            "spec": {
                "models": [
                    {
                        "name": "local",
                        "targets": [
                            {"provider": "ollama", "model": "llama3.2:latest"},
                            {"provider": "ollama", "model": "phi3"},
                            {"provider": "ollama", "model": "far", "apiBase": "http://box:11434"},
                        ],
                    }
                ],
                "ollama": {"models": ["llama3.2", "nomic-embed-text"]},
            },
        }
    )
    assert wanted_models(route) == ["llama3.2", "nomic-embed-text", "phi3"]


def sts(ready: int, *, updated: int | None = None, generation: int = 2, observed: int = 2) -> dict:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": 1},
        "status": {
            "observedGeneration": observed,
            "readyReplicas": ready,
            "updatedReplicas": ready if updated is None else updated,
        },
    }


def test_statefulset_readiness() -> None:
    assert statefulset_readiness(None)[:2] == (False, "NoStatefulSet")
    assert statefulset_readiness(sts(1))[:2] == (True, "Ready")
    assert statefulset_readiness(sts(0))[:2] == (False, "NotReady")
    # Ready, but on the old template: a models change is rolling out.
    assert statefulset_readiness(sts(1, updated=0))[:2] == (False, "NotReady")
    assert statefulset_readiness(sts(1, observed=1))[:2] == (None, "Progressing")


def crashing_pod(message: str = "llmroute-ollama: cannot pull nope") -> dict:
    return {
        "metadata": {"name": "gw-ollama-0"},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "ollama",
                    "restartCount": 3,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
                    "lastState": {"terminated": {"exitCode": 1, "message": message}},
                }
            ],
        },
    }


def test_pod_problems_are_named() -> None:
    assert pod_problem(crashing_pod()) == (
        "pod gw-ollama-0: container ollama CrashLoopBackOff after 3 restarts: "
        "llmroute-ollama: cannot pull nope"
    )
    unscheduled = {
        "metadata": {"name": "gw-ollama-0"},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "pod has unbound immediate PersistentVolumeClaims",
                }
            ],
        },
    }
    assert "unbound immediate PersistentVolumeClaims" in (pod_problem(unscheduled) or "")
    starting = crashing_pod()
    starting["status"]["containerStatuses"][0]["state"] = {"running": {}}
    assert pod_problem(starting) is None


def present(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"name": n, "present": p} for n, p in pairs]


def test_managed_state() -> None:
    yes = present(("llama3.2", "True"))
    state = ollama_state(managed=True, statefulset=sts(1), pods=[], presence=yes, unreachable=None)
    assert (state.status, state.reason) == (True, "Ready")
    assert state.status_field() == {"models": yes}
    # Pulling: not Ready, and nothing is wrong.
    state = ollama_state(
        managed=True,
        statefulset=sts(0),
        pods=[],
        presence=present(("llama3.2", "False")),
        unreachable=None,
    )
    assert (state.status, state.reason) == (False, "NotReady")
    # A failed pull says which model and why.
    state = ollama_state(
        managed=True,
        statefulset=sts(0),
        pods=[crashing_pod()],
        presence=present(("nope", "Unknown")),
        unreachable="connection refused",
    )
    assert (state.status, state.reason) == (False, "PodFailing")
    assert "cannot pull nope" in state.message
    # Ready, but a target's model is not on the volume.
    state = ollama_state(
        managed=True,
        statefulset=sts(1),
        pods=[],
        presence=present(("llama3.2", "True"), ("phi3", "False")),
        unreachable=None,
    )
    assert (state.status, state.reason) == (False, "ModelMissing")
    assert "phi3" in state.message
    # Ready, and Ollama cannot be asked: presence stays Unknown, never guessed.
    unknown = present(("llama3.2", "Unknown"))
    state = ollama_state(
        managed=True, statefulset=sts(1), pods=[], presence=unknown, unreachable="timed out"
    )
    assert (state.status, state.models) == (True, unknown)
    assert "unknown (timed out)" in state.message


def test_external_state() -> None:
    def state(presence, unreachable=None) -> OllamaState:
        return ollama_state(
            managed=False, statefulset=None, pods=[], presence=presence, unreachable=unreachable
        )

    assert state(present(("a", "True"))).status is True
    assert (state(present(("a", "False"))).status, state(present(("a", "False"))).reason) == (
        False,
        "ModelMissing",
    )
    unreachable = state(present(("a", "Unknown")), "connection refused")
    assert (unreachable.status, unreachable.reason) == (None, "Unreachable")


def test_condition_is_set_or_removed() -> None:
    state = OllamaState(True, "Ready", "1/1", [])
    conditions = with_ollama_condition([], state, 3)
    assert conditions[0]["type"] == "OllamaReady"
    assert conditions[0]["status"] == "True"
    assert conditions[0]["observedGeneration"] == 3
    assert with_ollama_condition(conditions, None, 3) == []


def test_fetch_tags_from_the_real_ollama() -> None:
    require_tools("ollama")
    with local_ollama(["llama3.2"]) as url:
        presence, why = read_presence([url], ["llama3.2:latest", "qwen2.5:7b"], fetch_tags)
    assert why is None
    assert presence == present(("llama3.2:latest", "True"), ("qwen2.5:7b", "False"))
    # Stopped: nothing answers, within the short timeout.
    presence, why = read_presence([url], ["llama3.2"], fetch_tags)
    assert presence == present(("llama3.2", "Unknown"))
    assert why


def claim_template(size: str, storage_class: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
    }
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    return {"metadata": {"name": "models", "labels": {"a": "b"}}, "spec": spec}


def statefulset_with(template: dict[str, Any], *, stored: bool = False) -> dict[str, Any]:
    template = copy.deepcopy(template)
    if stored:
        # What the API server adds to a stored template.
        template.update(apiVersion="v1", kind="PersistentVolumeClaim", status={"phase": "Pending"})
        template["spec"]["volumeMode"] = "Filesystem"
    return {"spec": {"replicas": 1, "volumeClaimTemplates": [template]}}


def test_an_unchanged_volume_is_applied_as_rendered() -> None:
    desired = statefulset_with(claim_template("20Gi"))
    existing = statefulset_with(claim_template("20480Mi"), stored=True)
    assert keep_claim_templates(desired, existing) == (desired, None)
    assert keep_claim_templates(desired, None) == (desired, None)


@pytest.mark.parametrize(
    ("asked", "words"),
    [
        (claim_template("50Gi"), ["20Gi of the default class", "50Gi of the default class"]),
        (claim_template("20Gi", "ssd"), ["(asked: 20Gi of class ssd)"]),
        (claim_template("20Gi", ""), ["(asked: 20Gi of no class)"]),
    ],
)
def test_a_volume_change_keeps_the_existing_templates_and_says_so(
    asked: dict[str, Any], words: list[str]
) -> None:
    existing = statefulset_with(claim_template("20Gi"), stored=True)
    desired = statefulset_with(asked)
    desired["spec"]["template"] = {"the": "new pod template"}
    applied, message = keep_claim_templates(desired, existing)
    # Everything else is applied; the templates are the stored ones, without their status.
    assert applied["spec"]["template"] == {"the": "new pod template"}
    (kept,) = applied["spec"]["volumeClaimTemplates"]
    assert kept["spec"]["resources"] == {"requests": {"storage": "20Gi"}}
    assert "status" not in kept
    assert message is not None
    assert message.startswith("spec.ollama.storage cannot change")
    for word in words:
        assert word in message


def test_a_label_change_alone_is_not_reported() -> None:
    existing = statefulset_with(claim_template("20Gi"), stored=True)
    desired = statefulset_with(claim_template("20Gi"))
    desired["spec"]["volumeClaimTemplates"][0]["metadata"]["labels"] = {"new": "label"}
    applied, message = keep_claim_templates(desired, existing)
    assert message is None
    assert applied["spec"]["volumeClaimTemplates"][0]["metadata"]["labels"] == {"a": "b"}


def test_external_ollama_status_needs_no_cluster() -> None:
    require_tools("ollama")
    stack = contextlib.ExitStack()
    url = stack.enter_context(local_ollama(["llama3.2"]))
    route = {
        "metadata": {"name": "gw", "namespace": "ns"},
        "spec": {
            "models": [
                {
                    "name": "local",
                    "targets": [
                        {"provider": "ollama", "model": "llama3.2"},
                        {"provider": "ollama", "model": "phi3"},
                    ],
                }
            ],
            "ollama": {"external": {"url": url}},
        },
    }
    with stack:
        state = observe_ollama(None, parse_route(route))  # type: ignore[arg-type]
    assert state is not None
    assert (state.status, state.reason) == (False, "ModelMissing")
    assert state.models == present(("llama3.2", "True"), ("phi3", "False"))
    state = observe_ollama(None, parse_route(route))  # type: ignore[arg-type]
    assert state is not None
    assert (state.status, state.reason) == (None, "Unreachable")
    assert state.models == present(("llama3.2", "Unknown"), ("phi3", "Unknown"))


def test_no_ollama_no_state() -> None:
    route = {
        "metadata": {"name": "gw", "namespace": "ns"},
        "spec": {"models": [{"name": "m", "targets": [{"provider": "openai", "model": "x"}]}]},
    }
    assert observe_ollama(None, parse_route(route)) is None  # type: ignore[arg-type]
