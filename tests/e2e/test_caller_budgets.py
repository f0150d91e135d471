"""Budgets per caller against the real control plane and a real litellm proxy.

Two declared callers share one route. A ModelQuota with match.caller counts only one caller's
spend (LiteLLM's counters carry the caller's name, set by the gateway's auth hook) and, once
that budget is spent, the gateway refuses that caller with 429 naming the quota, through the
live auth policy file: the operator updates the ConfigMap, the hook re-reads the mounted file,
and the proxy pod that served before serves on (no roll, no restart). The other caller is
unaffected.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from kubernetes import client

from llmroute.api import GROUP, QUOTA_PLURAL, ROUTE_PLURAL, VERSION
from localcluster import FakeOpenAI, ProcessInfo, ProcessRunner, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]

UPSTREAM_KEY = "sk-upstream-caller-budget-e2e"
CALLER_KEYS = {"alice": "sk-caller-alice-e2e", "bob": "sk-caller-bob-e2e"}
# FakeOpenAI answers with 10 prompt + 5 completion tokens; at 1000 / 2000 USD per million
# tokens a request costs 0.01 + 0.01 = 0.02 USD.
PRICE_PER_REQUEST = 0.02
# The operator syncs every 15 s; the runner refreshes mounted ConfigMaps every second.
SYNC_TIMEOUT = 120


@pytest.fixture
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(required_key=UPSTREAM_KEY) as fake:
        yield fake


def route_manifest(upstream: FakeOpenAI) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LLMRoute",
        "metadata": {"name": "gw"},
        "spec": {
            "models": [
                {
                    "name": "smart",
                    "targets": [
                        {
                            "provider": "openai",
                            "model": "gpt-4",
                            "apiBase": upstream.api_base,
                            "apiKeySecretRef": {"name": "provider-keys", "key": "openai"},
                            "pricing": {"inputPerMillionUSD": 1000, "outputPerMillionUSD": 2000},
                        }
                    ],
                }
            ],
            "router": {"numRetries": 0},
            "auth": {
                "callers": [
                    {"name": name, "keySecretRef": {"name": "caller-keys", "key": name}}
                    for name in CALLER_KEYS
                ]
            },
        },
    }


QUOTA = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": "ModelQuota",
    "metadata": {"name": "alice-budget"},
    "spec": {
        "routeRef": {"name": "gw"},
        "match": {"caller": "alice"},
        "budget": {"limitUSD": 0.03, "period": "daily"},
        "action": "reject",
    },
}


def proxy_pods(core: client.CoreV1Api, namespace: str) -> list[client.V1Pod]:
    pods = core.list_namespaced_pod(namespace, label_selector="llmroute.dev/route=gw").items
    return [p for p in pods if p.metadata.deletion_timestamp is None]


def serving_pod(core: client.CoreV1Api, runner: ProcessRunner, namespace: str) -> ProcessInfo:
    def probe() -> ProcessInfo | None:
        live = [p for p in proxy_pods(core, namespace) if p.status.phase == "Running"]
        if len(live) != 1:
            return None
        return runner.wait_serving(live[0].metadata.name, timeout=60)

    return wait_for(probe, timeout=SYNC_TIMEOUT, what="one serving proxy pod")


def chat(pod: ProcessInfo, caller: str) -> str:
    caller_client = openai.OpenAI(api_key=CALLER_KEYS[caller], base_url=pod.url, max_retries=0)
    response = caller_client.chat.completions.create(
        model="smart", messages=[{"role": "user", "content": f"hello from {caller}"}]
    )
    return response.choices[0].message.content or ""


def quota_status(custom: client.CustomObjectsApi, namespace: str) -> dict[str, Any]:
    quota = custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, QUOTA_PLURAL, "alice-budget"
    )
    return quota.get("status") or {}


def test_a_caller_over_its_budget_gets_429_and_the_other_caller_is_served(
    api, namespace, process_runner, upstream
):
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    core.create_namespaced_secret(
        namespace,
        {"metadata": {"name": "provider-keys"}, "stringData": {"openai": UPSTREAM_KEY}},
    )
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "caller-keys"}, "stringData": CALLER_KEYS}
    )
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, ROUTE_PLURAL, route_manifest(upstream)
    )
    pod = serving_pod(core, process_runner, namespace)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, QUOTA_PLURAL, QUOTA)
    wait_for(
        lambda: quota_status(custom, namespace).get("lastSync"),
        timeout=SYNC_TIMEOUT,
        what="the quota's first sync",
    )
    route = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, ROUTE_PLURAL, "gw")
    config_hash = route["status"]["configHash"]

    # Only alice's spend counts against alice's budget: bob's requests are not in it.
    assert chat(pod, "bob")
    assert chat(pod, "alice")
    assert chat(pod, "alice")
    assert chat(pod, "bob")
    status = wait_for(
        lambda: (s := quota_status(custom, namespace)).get("state") == "Exhausted" and s,
        timeout=SYNC_TIMEOUT,
        what="alice's budget exhausted",
    )
    assert status["requests"] == 2
    assert (status["inputTokens"], status["outputTokens"]) == (20, 10)
    assert status["spentUSD"] == pytest.approx(2 * PRICE_PER_REQUEST, abs=0.001)

    # The gateway refuses alice, naming the quota, once the operator has updated the policy
    # the hook re-reads; until then her requests are still served (and counted).
    def refused() -> openai.RateLimitError | None:
        try:
            chat(pod, "alice")
        except openai.RateLimitError as error:
            return error
        return None

    error = wait_for(refused, timeout=SYNC_TIMEOUT, interval=1.0, what="alice refused with 429")
    assert "alice-budget" in str(error)
    seen = len(upstream.inference_requests())
    with pytest.raises(openai.RateLimitError):
        chat(pod, "alice")
    assert len(upstream.inference_requests()) == seen  # refused before any upstream call

    # bob is unaffected.
    assert chat(pod, "bob")
    assert len(upstream.inference_requests()) == seen + 1

    # Live: the same proxy pod, never restarted, with the same config, served throughout.
    pods = proxy_pods(core, namespace)
    assert [p.metadata.uid for p in pods] == [pod.uid]
    info = process_runner.process(pods[0].metadata.name)
    assert info is not None and info.pid == pod.pid and info.restarts == 0
    route = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, ROUTE_PLURAL, "gw")
    assert route["status"]["configHash"] == config_hash
    ready = next(c for c in quota_status(custom, namespace)["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Enforced")
