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
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from kubernetes import client

from llmroute.api import GROUP, QUOTA_PLURAL, ROUTE_PLURAL, VERSION
from llmroute.quota.usage import gather_usage
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
            "tasks": ["summarize"],
            "auth": {
                "callers": [
                    {"name": name, "keySecretRef": {"name": "caller-keys", "key": name}}
                    for name in CALLER_KEYS
                ]
            },
        },
    }


def quota_manifest(name: str, match: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelQuota",
        "metadata": {"name": name},
        "spec": {
            "routeRef": {"name": "gw"},
            "match": match,
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


def chat(pod: ProcessInfo, caller: str, task: str | None = None) -> str:
    caller_client = openai.OpenAI(api_key=CALLER_KEYS[caller], base_url=pod.url, max_retries=0)
    response = caller_client.chat.completions.create(
        model="smart",
        messages=[{"role": "user", "content": f"hello from {caller}"}],
        extra_body={"metadata": {"tags": [f"task:{task}"]}} if task else None,
    )
    return response.choices[0].message.content or ""


def quota_status(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    quota = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, QUOTA_PLURAL, name)
    return quota.get("status") or {}


@dataclass
class Gateway:
    core: client.CoreV1Api
    custom: client.CustomObjectsApi
    runner: ProcessRunner
    namespace: str
    upstream: FakeOpenAI
    pod: ProcessInfo

    def config_hash(self) -> str:
        route = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, ROUTE_PLURAL, "gw"
        )
        return route["status"]["configHash"]

    def add_quota(self, name: str, match: dict[str, str]) -> None:
        self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, QUOTA_PLURAL, quota_manifest(name, match)
        )
        wait_for(
            lambda: quota_status(self.custom, self.namespace, name).get("lastSync"),
            timeout=SYNC_TIMEOUT,
            what=f"the first sync of {name}",
        )

    def exhausted(self, name: str) -> dict[str, Any]:
        return wait_for(
            lambda: (
                (s := quota_status(self.custom, self.namespace, name)).get("state") == "Exhausted"
                and s
            ),
            timeout=SYNC_TIMEOUT,
            what=f"{name} exhausted",
        )

    def refused(self, caller: str, task: str | None = None) -> openai.RateLimitError:
        """Wait until the gateway refuses the request (the operator has updated the policy the
        hook re-reads; until then such requests are still served, and counted)."""

        def probe() -> openai.RateLimitError | None:
            try:
                chat(self.pod, caller, task)
            except openai.RateLimitError as error:
                return error
            return None

        return wait_for(probe, timeout=SYNC_TIMEOUT, interval=1.0, what=f"{caller} refused")

    def assert_served_live(self, config_hash: str) -> None:
        """The same proxy pod, never restarted, with the same config, served throughout."""
        pods = proxy_pods(self.core, self.namespace)
        assert [p.metadata.uid for p in pods] == [self.pod.uid]
        info = self.runner.process(pods[0].metadata.name)
        assert info is not None and info.pid == self.pod.pid and info.restarts == 0
        assert self.config_hash() == config_hash


@pytest.fixture
def gateway(api, namespace, process_runner, upstream) -> Gateway:
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
    return Gateway(core, custom, process_runner, namespace, upstream, pod)


def test_a_caller_over_its_budget_gets_429_and_the_other_caller_is_served(
    gateway: Gateway,
) -> None:
    gateway.add_quota("alice-budget", {"caller": "alice"})
    config_hash = gateway.config_hash()

    # Only alice's spend counts against alice's budget: bob's requests are not in it.
    assert chat(gateway.pod, "bob")
    assert chat(gateway.pod, "alice")
    assert chat(gateway.pod, "alice")
    assert chat(gateway.pod, "bob")
    status = gateway.exhausted("alice-budget")
    assert status["requests"] == 2
    assert (status["inputTokens"], status["outputTokens"]) == (20, 10)
    assert status["spentUSD"] == pytest.approx(2 * PRICE_PER_REQUEST, abs=0.001)

    # The gateway refuses alice, naming the quota, before any upstream call.
    assert "alice-budget" in str(gateway.refused("alice"))
    seen = len(gateway.upstream.inference_requests())
    with pytest.raises(openai.RateLimitError):
        chat(gateway.pod, "alice")
    assert len(gateway.upstream.inference_requests()) == seen

    # bob is unaffected.
    assert chat(gateway.pod, "bob")
    assert len(gateway.upstream.inference_requests()) == seen + 1

    gateway.assert_served_live(config_hash)
    status = quota_status(gateway.custom, gateway.namespace, "alice-budget")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Enforced")


def test_a_task_over_its_budget_gets_429_and_other_requests_are_served(
    gateway: Gateway,
) -> None:
    gateway.add_quota("summarize-budget", {"tag": "summarize"})
    config_hash = gateway.config_hash()

    # Tagged requests count, whoever sends them; untagged ones do not.
    assert chat(gateway.pod, "alice", task="summarize")
    assert chat(gateway.pod, "bob")
    assert chat(gateway.pod, "bob", task="summarize")
    status = gateway.exhausted("summarize-budget")
    assert status["requests"] == 2
    assert status["spentUSD"] == pytest.approx(2 * PRICE_PER_REQUEST, abs=0.001)

    assert "summarize-budget" in str(gateway.refused("bob", task="summarize"))
    with pytest.raises(openai.RateLimitError):
        chat(gateway.pod, "alice", task="summarize")
    assert chat(gateway.pod, "alice")
    assert chat(gateway.pod, "bob")

    # `llmroute usage` reads the same counters by task and caller.
    report = gather_usage(gateway.core.api_client, gateway.namespace, "gw")
    summarize = [r for r in report.rows if r.task == "summarize"]
    assert {r.caller for r in summarize} == {"alice", "bob"}
    assert sum(r.usage.requests for r in summarize) >= 2
    untagged = [r for r in report.rows if r.task == ""]
    assert sum(r.usage.requests for r in untagged) == 3

    gateway.assert_served_live(config_hash)
