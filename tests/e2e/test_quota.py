"""ModelQuota against the real control plane and real litellm proxies.

Requests go through the route's proxy (the real litellm, started by the process runner at the
pod's IP) to a fake OpenAI with known token counts and prices; the operator scrapes the proxy
and keeps the ledger in the quota's status. As the budget fills up, the route's routing
follows: soft-limited targets move behind the others, exhausted ones leave the chain. The
running proxies apply that from a file they re-read: no proxy pod is replaced.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
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
# A state change reaches the proxy within one sync, the runner's volume refresh (1 s, the
# kubelet's role) and the filter's re-check of its file (1 s): docs/quota.md. Generous here,
# the machine is shared.
ROUTING_TIMEOUT = 90
# FakeOpenAI's answers name the model that served them.
SERVED_BY = re.compile(r"\(model (?P<model>[^)]*)\)\.$")


@pytest.fixture
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(required_key=UPSTREAM_KEY) as fake:
        yield fake


def route_manifest(upstream: FakeOpenAI, *, backup: bool = False) -> dict[str, Any]:
    key = {"name": "provider-keys", "key": "openai"}
    route: dict[str, Any] = {
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
    if backup:
        # A model of its own that smart falls back to when none of its targets can serve.
        route["spec"]["models"][0]["fallbacks"] = ["backup"]
        route["spec"]["models"].append(
            {
                "name": "backup",
                "targets": [
                    {
                        "provider": "openai",
                        "model": "gpt-3.5-turbo",
                        "apiBase": upstream.api_base,
                        "apiKeySecretRef": key,
                        "pricing": {"inputPerMillionUSD": 0, "outputPerMillionUSD": 0},
                    }
                ],
            }
        )
    return route


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

    def proxy_pods(self) -> list[tuple[str, str, Any]]:
        """(name, uid, start time) of every proxy pod of the route."""
        pods = self.core.list_namespaced_pod(
            self.namespace, label_selector="llmroute.dev/route=gw"
        ).items
        return sorted((p.metadata.name, p.metadata.uid, p.status.start_time) for p in pods)

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


def make_gateway(api, namespace, process_runner, route: dict[str, Any]) -> Gateway:
    core = client.CoreV1Api(api)
    core.create_namespaced_secret(
        namespace,
        {"metadata": {"name": "provider-keys"}, "stringData": {"openai": UPSTREAM_KEY}},
    )
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, ROUTE_PLURAL, route
    )
    return Gateway(api, process_runner, namespace)


@pytest.fixture
def gateway(api, namespace, process_runner, upstream) -> Gateway:
    return make_gateway(api, namespace, process_runner, route_manifest(upstream))


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


def test_spend_is_counted_and_each_state_change_announced_once(api, namespace, gateway, upstream):
    pod = gateway.serving_pod()
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

    # gpt-4o-mini fails: traffic falls back to the soft-limited gpt-4 until its budget is
    # spent (sent until the quota says so: how soon the proxy moves gpt-4 behind is the
    # next test's subject).
    upstream.set_behaviour(Behaviour.ERROR500, model="gpt-4o-mini")
    gateway.chat(pod, 2)
    status = wait_status(
        api, namespace, "budget exhausted", lambda s: s.get("state") == "Exhausted"
    )
    assert status["requests"] == 5
    assert status["spentUSD"] == pytest.approx(5 * PRICE_PER_REQUEST, abs=0.01)
    assert announced(api, namespace, "BudgetExhausted") == 1
    final = wait_status(
        api,
        namespace,
        "a later sync",
        lambda s: s["lastSync"] > status["lastSync"],
    )
    assert final["requests"] == 5
    # Later syncs announce nothing again.
    assert announced(api, namespace, "SoftLimitReached") == 1
    assert announced(api, namespace, "BudgetExhausted") == 1


@dataclass
class SteadyLoad:
    """Requests for model smart, one after the other, until stopped; what served each."""

    gateway: Gateway
    pod: ProcessInfo
    served: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        openai_client = openai.OpenAI(
            api_key=self.gateway.master_key(), base_url=self.pod.url, max_retries=0
        )
        while not self.stop.is_set():
            try:
                response = openai_client.chat.completions.create(
                    model="smart", messages=[{"role": "user", "content": "hello"}]
                )
            except openai.APIError as error:
                self.failures.append(repr(error))
                continue
            found = SERVED_BY.search(response.choices[0].message.content or "")
            self.served.append(found["model"] if found else "?")
            # A steady pace, not a flood: the machine is shared.
            self.stop.wait(0.1)

    def wait_served_by(self, model: str, what: str) -> None:
        def moved() -> bool:
            start = len(self.served)
            return wait_for(
                lambda: len(self.served) >= start + 5 or None, timeout=60, what="5 answers"
            ) and all(m == model for m in self.served[start:])

        wait_for(lambda: moved() or None, timeout=ROUTING_TIMEOUT, interval=0.2, what=what)


def test_quota_states_move_traffic_under_load_without_replacing_a_proxy(
    api, namespace, process_runner, upstream
):
    gateway = make_gateway(api, namespace, process_runner, route_manifest(upstream, backup=True))
    pod = gateway.serving_pod()
    pods = gateway.proxy_pods()
    config_hash = gateway.config_hash()
    # Soft limit at 1% of 20 USD: reached after ~10 requests; the hard limit is far away until
    # it is lowered below.
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        QUOTA_PLURAL,
        quota_manifest(budget={"limitUSD": 20, "period": "daily", "softLimitPercent": 1}),
    )
    load = SteadyLoad(gateway, pod)
    thread = threading.Thread(target=load.run, daemon=True)
    thread.start()
    try:
        # Ok: gpt-4 serves.
        load.wait_served_by("gpt-4", "gpt-4 serving under the soft limit")
        # SoftLimited: gpt-4 moves behind gpt-4o-mini.
        wait_status(api, namespace, "soft limit", lambda s: s.get("state") == "SoftLimited")
        load.wait_served_by("gpt-4o-mini", "traffic moved behind the soft-limited gpt-4")
        # ... and still serves when gpt-4o-mini fails.
        upstream.set_behaviour(Behaviour.ERROR500, model="gpt-4o-mini")
        load.wait_served_by("gpt-4", "the soft-limited gpt-4 serving when the others fail")
        # The hard limit, a few requests ahead of what is spent: the load crosses it.
        spent = get_quota(api, namespace)["status"]["spentUSD"]
        client.CustomObjectsApi(api).patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            QUOTA_PLURAL,
            "gpt4-budget",
            {"spec": {"budget": {"limitUSD": round(spent + 0.2, 2)}}},
        )
        wait_status(api, namespace, "budget exhausted", lambda s: s.get("state") == "Exhausted")
        # Exhausted: gpt-4 leaves smart; with gpt-4o-mini failing, smart's fallback serves.
        load.wait_served_by("gpt-3.5-turbo", "traffic moved to the fallback model")
        seen = len(upstream.inference_requests())
        load.wait_served_by("gpt-3.5-turbo", "more answers from the fallback model")
        assert "gpt-4" not in answered_by(upstream, seen)
    finally:
        load.stop.set()
        thread.join(timeout=60)
    # No request failed, and no proxy was replaced or restarted: same pods, same start times,
    # same process, same config.
    assert load.failures == []
    assert gateway.proxy_pods() == pods
    assert process_runner.process(pod.pod, namespace).pid == pod.pid
    assert process_runner.process(pod.pod, namespace).restarts == pod.restarts
    assert gateway.config_hash() == config_hash
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
    config_hash = gateway.config_hash()
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

    def refused() -> openai.RateLimitError | None:
        try:
            gateway.chat(pod, 1)
        except openai.RateLimitError as error:
            return error
        return None

    # The same proxy, the same config: the auth hook reads the refusal from its policy file.
    error = wait_for(refused, timeout=ROUTING_TIMEOUT, interval=0.5, what="429 from the gateway")
    assert "gpt4-budget" in str(error)
    seen = len(upstream.inference_requests())
    assert refused() is not None
    assert answered_by(upstream, seen) == []
    assert gateway.config_hash() == config_hash
    assert gateway.serving_pod().pid == pod.pid


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
