"""ModelQuota against the real control plane and real litellm proxies.

Requests go through the route's proxy (the real litellm, started by the process runner at the
pod's IP) to a fake OpenAI with known token counts and prices; the operator scrapes the proxy
and keeps the ledger in the quota's status. As the budget fills up, the route's routing
follows: soft-limited targets move behind the others, exhausted ones leave the chain.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from kubernetes import client

from llmroute.api import GROUP, QUOTA_PLURAL, ROUTE_PLURAL, VERSION
from localcluster import Behaviour, FakeOpenAI, ProcessInfo, ProcessRunner, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]

UPSTREAM_KEY = "sk-upstream-quota-e2e"
# FakeOpenAI answers every request with 10 prompt + 5 completion tokens; at 1000 / 2000 USD
# per million tokens a request to the priced target costs 0.01 + 0.01 = 0.02 USD.
PRICE_PER_REQUEST = 0.02
# The operator syncs every 15 s (LLMROUTE_QUOTA_SYNC_SECONDS unset); a proxy starts in ~10 s.
SYNC_TIMEOUT = 90
ROLL_TIMEOUT = 120


@pytest.fixture
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(required_key=UPSTREAM_KEY) as fake:
        yield fake


def route_manifest(upstream: FakeOpenAI) -> dict[str, Any]:
    key = {"name": "provider-keys", "key": "openai"}
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
                            "apiKeySecretRef": key,
                            "pricing": {"inputPerMillionUSD": 1000, "outputPerMillionUSD": 2000},
                        },
                        {
                            "provider": "openai",
                            "model": "gpt-4o-mini",
                            "apiBase": upstream.api_base,
                            "apiKeySecretRef": key,
                            "pricing": {"inputPerMillionUSD": 0, "outputPerMillionUSD": 0},
                        },
                    ],
                }
            ],
            "router": {"numRetries": 0, "allowedFails": 100},
        },
    }


def quota_manifest(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelQuota",
        "metadata": {"name": "gpt4-budget"},
        "spec": {
            "routeRef": {"name": "gw"},
            "match": {"model": "gpt-4"},
            "budget": {"limitUSD": 0.1, "period": "daily", "softLimitPercent": 50},
            **spec,
        },
    }


class Gateway:
    """The route's proxy as a client sees it: whichever pod serves now, with the master key."""

    def __init__(self, api: client.ApiClient, runner: ProcessRunner, namespace: str) -> None:
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.runner = runner
        self.namespace = namespace

    def master_key(self) -> str:
        secret = self.core.read_namespaced_secret("gw-master-key", self.namespace)
        return base64.b64decode(secret.data["masterKey"]).decode()

    def config_hash(self) -> str:
        return self.route()["status"]["configHash"]

    def route(self) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, ROUTE_PLURAL, "gw"
        )

    def serving_pod(self, config_hash: str | None = None) -> ProcessInfo:
        """The one live proxy pod (running the config `config_hash`, when given)."""

        def probe() -> ProcessInfo | None:
            pods = self.core.list_namespaced_pod(
                self.namespace, label_selector="llmroute.dev/route=gw"
            ).items
            live = [
                p
                for p in pods
                if p.metadata.deletion_timestamp is None
                and p.status.phase == "Running"
                and (
                    config_hash is None
                    or p.metadata.annotations.get("llmroute.dev/config-hash") == config_hash
                )
            ]
            if len(live) != 1:
                return None
            return self.runner.wait_serving(live[0].metadata.name, timeout=60)

        return wait_for(probe, timeout=ROLL_TIMEOUT, what="one serving proxy pod")

    def chat(self, pod: ProcessInfo, n: int = 1) -> list[str]:
        """Send `n` requests for model smart; the upstream models that answered."""
        openai_client = openai.OpenAI(api_key=self.master_key(), base_url=pod.url, max_retries=0)
        answers = []
        for _ in range(n):
            response = openai_client.chat.completions.create(
                model="smart", messages=[{"role": "user", "content": "hello"}]
            )
            answers.append(response.choices[0].message.content or "")
        return answers


@pytest.fixture
def gateway(api, namespace, process_runner, upstream) -> Gateway:
    core = client.CoreV1Api(api)
    core.create_namespaced_secret(
        namespace,
        {"metadata": {"name": "provider-keys"}, "stringData": {"openai": UPSTREAM_KEY}},
    )
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, ROUTE_PLURAL, route_manifest(upstream)
    )
    return Gateway(api, process_runner, namespace)


def get_quota(api: client.ApiClient, namespace: str) -> dict[str, Any]:
    return client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, QUOTA_PLURAL, "gpt4-budget"
    )


def wait_status(api, namespace, what: str, check, timeout: float = SYNC_TIMEOUT) -> dict:
    def probe() -> dict | None:
        status = get_quota(api, namespace).get("status") or {}
        return status if check(status) else None

    return wait_for(probe, timeout=timeout, interval=0.5, what=what)


def quota_events(api: client.ApiClient, namespace: str) -> list[tuple[str, str, str]]:
    events = client.CoreV1Api(api).list_namespaced_event(
        namespace, field_selector="involvedObject.name=gpt4-budget"
    )
    return [(e.type, e.reason, e.message) for e in events.items]


def announced(api: client.ApiClient, namespace: str, reason: str) -> int:
    """How many events of `reason` the quota has now.

    A user waits for the quota's state, then reads its events: the operator stores the event
    of a state change before the status that shows it, so it is there as soon as the state is.
    """
    return [r for _, r, _ in quota_events(api, namespace)].count(reason)


def answered_by(upstream: FakeOpenAI, since: int) -> list[str | None]:
    return [r.model for r in upstream.inference_requests()[since:]]


def test_spend_is_counted_and_the_budget_steers_routing(api, namespace, gateway, upstream):
    pod = gateway.serving_pod()
    first_hash = gateway.config_hash()
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, QUOTA_PLURAL, quota_manifest()
    )
    status = wait_status(api, namespace, "first sync", lambda s: s.get("lastSync"))
    assert status["state"] == "Ok"
    assert status["spentUSD"] == 0

    # Under the soft limit gpt-4 is first in the chain and serves everything.
    seen = len(upstream.inference_requests())
    gateway.chat(pod, 3)
    assert answered_by(upstream, seen) == ["gpt-4"] * 3
    status = wait_status(api, namespace, "3 requests counted", lambda s: s.get("requests", 0) >= 3)
    assert status["spentUSD"] == pytest.approx(3 * PRICE_PER_REQUEST, abs=0.01)
    assert (status["requests"], status["inputTokens"], status["outputTokens"]) == (3, 30, 15)
    assert status["percentUsed"] == pytest.approx(60, abs=0.01)
    assert status["state"] == "SoftLimited"
    assert announced(api, namespace, "SoftLimitReached") == 1

    # SoftLimited: the route renders gpt-4 behind gpt-4o-mini and its proxy rolls.
    before = status["replicas"]
    soft_hash = wait_for(
        lambda: (h := gateway.config_hash()) != first_hash and h,
        timeout=SYNC_TIMEOUT,
        what="the route re-rendered",
    )
    pod = gateway.serving_pod(soft_hash)
    seen = len(upstream.inference_requests())
    gateway.chat(pod, 2)
    assert answered_by(upstream, seen) == ["gpt-4o-mini"] * 2

    # gpt-4o-mini fails: traffic falls back to gpt-4 until its budget is spent.
    upstream.set_behaviour(Behaviour.ERROR500, model="gpt-4o-mini")
    gateway.chat(pod, 2)
    status = wait_status(
        api, namespace, "budget exhausted", lambda s: s.get("state") == "Exhausted"
    )
    # The ledger survived the proxy's replacement: the old pod's spend stays counted.
    assert set(status["replicas"]) != set(before)
    assert status["requests"] == 5
    assert status["spentUSD"] == pytest.approx(5 * PRICE_PER_REQUEST, abs=0.01)
    assert announced(api, namespace, "BudgetExhausted") == 1

    # Exhausted (action fallback): gpt-4 leaves the chain; nothing reaches it any more.
    exhausted_hash = wait_for(
        lambda: (h := gateway.config_hash()) != soft_hash and h,
        timeout=SYNC_TIMEOUT,
        what="the route re-rendered without gpt-4",
    )
    pod = gateway.serving_pod(exhausted_hash)
    seen = len(upstream.inference_requests())
    with pytest.raises(openai.APIError):
        gateway.chat(pod, 1)
    assert "gpt-4" not in answered_by(upstream, seen)
    upstream.set_behaviour(Behaviour.OK)
    assert gateway.chat(pod, 1)
    assert answered_by(upstream, seen)[-1] == "gpt-4o-mini"
    final = wait_status(
        api,
        namespace,
        "a sync after the last requests",
        lambda s: s["lastSync"] > status["lastSync"],
    )
    assert final["requests"] == 5
    # Later syncs announce nothing again.
    assert announced(api, namespace, "SoftLimitReached") == 1
    assert announced(api, namespace, "BudgetExhausted") == 1


def test_shadow_mode_counts_and_announces_but_changes_no_routing(api, namespace, gateway, upstream):
    pod = gateway.serving_pod()
    config_hash = gateway.config_hash()
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        QUOTA_PLURAL,
        quota_manifest(enforcement="shadow", budget={"limitUSD": 0.05}),
    )
    wait_status(api, namespace, "first sync", lambda s: s.get("lastSync"))
    gateway.chat(pod, 3)
    status = wait_status(
        api, namespace, "budget exhausted", lambda s: s.get("state") == "Exhausted"
    )
    assert status["spentUSD"] == pytest.approx(3 * PRICE_PER_REQUEST, abs=0.01)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "Shadow"
    events = quota_events(api, namespace)
    assert any(r == "BudgetExhausted" and "shadow mode" in m for _, r, m in events)
    # Routing is untouched: the same config, and gpt-4 still serves.
    assert gateway.config_hash() == config_hash
    seen = len(upstream.inference_requests())
    gateway.chat(pod, 1)
    assert answered_by(upstream, seen) == ["gpt-4"]


def test_reject_action_answers_429_once_the_budget_is_spent(api, namespace, gateway, upstream):
    pod = gateway.serving_pod()
    first_hash = gateway.config_hash()
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        QUOTA_PLURAL,
        quota_manifest(match={"modelName": "smart"}, action="reject", budget={"limitUSD": 0.03}),
    )
    wait_status(api, namespace, "first sync", lambda s: s.get("lastSync"))
    gateway.chat(pod, 2)
    wait_status(api, namespace, "budget exhausted", lambda s: s.get("state") == "Exhausted")
    rejecting = wait_for(
        lambda: (h := gateway.config_hash()) != first_hash and h,
        timeout=SYNC_TIMEOUT,
        what="the route re-rendered to reject smart",
    )
    pod = gateway.serving_pod(rejecting)
    seen = len(upstream.inference_requests())
    with pytest.raises(openai.RateLimitError) as refused:
        gateway.chat(pod, 1)
    assert "gpt4-budget" in str(refused.value)
    assert answered_by(upstream, seen) == []


def test_operator_restart_loses_no_spend(api, namespace, gateway, upstream, operator):
    pod = gateway.serving_pod()
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, QUOTA_PLURAL, quota_manifest(budget={"limitUSD": 100})
    )
    wait_status(api, namespace, "first sync", lambda s: s.get("lastSync"))
    gateway.chat(pod, 2)
    wait_status(api, namespace, "2 requests counted", lambda s: s.get("requests") == 2)

    # Requests served while the operator is down are counted once it is back.
    operator.stop()
    try:
        gateway.chat(pod, 1)
    finally:
        operator.start()
    status = wait_status(api, namespace, "3 requests counted", lambda s: s.get("requests") == 3)
    assert status["spentUSD"] == pytest.approx(3 * PRICE_PER_REQUEST, abs=0.01)
