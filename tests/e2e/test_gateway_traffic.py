"""The traffic path: the real litellm proxy, run as the operator's pod spec says.

The operator renders the route; kwok runs its pods in name only; the process runner
starts the real litellm proxy for each of them with the ConfigMap, args and Secret-fed
env the operator wrote. The cloud providers are local fakes; the local model is the real
Ollama serving the tiny model (localcluster.tinymodel); nothing else is faked.
"""

from __future__ import annotations

import base64
import contextlib
import json
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import openai
import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from built_tools import require_tools
from llmroute.api import GROUP, ROUTE_PLURAL, VERSION
from localcluster import Behaviour, FakeAnthropic, FakeOpenAI, ProcessRunner, tinymodel, wait_for

pytestmark = pytest.mark.usefixtures("operator")

PROVIDER_KEYS = {"anthropic": "sk-ant-e2e-value", "openai": "sk-openai-e2e-value"}
UPSTREAM_TIMEOUT = 3


@dataclass
class Gateway:
    url: str
    master_key: str
    anthropic: FakeAnthropic
    openai: FakeOpenAI
    ollama: str  # the real Ollama's URL
    pricey: FakeOpenAI
    thrifty: FakeOpenAI

    def client(self, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.url}/v1", api_key=key or self.master_key, max_retries=0, timeout=30
        )

    def ask(self, model: str) -> str:
        reply = self.client().chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Hello"}]
        )
        return reply.choices[0].message.content


def _target(provider: str, model: str, fake, key: str | None = None, **extra) -> dict:
    url = fake if isinstance(fake, str) else fake.url
    target = {"provider": provider, "model": model, "apiBase": url, **extra}
    if key:
        target["apiKeySecretRef"] = {"name": "provider-keys", "key": key}
    return target


@pytest.fixture(scope="module")
def gateway(cluster, api) -> Iterator[Gateway]:
    require_tools("ollama")
    fakes = {
        "anthropic": FakeAnthropic(name="fake-anthropic"),
        "openai": FakeOpenAI(name="fake-openai"),
        "pricey": FakeOpenAI(name="fake-pricey", models=["big"]),
        "thrifty": FakeOpenAI(name="fake-thrifty", models=["small"]),
    }
    for fake in fakes.values():
        fake.start()
    local = contextlib.ExitStack()
    ollama_url = local.enter_context(tinymodel.local_ollama(["llama3.2"]))
    namespace = f"gw-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    core.create_namespace({"metadata": {"name": namespace}})
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "provider-keys"},
            "stringData": {**PROVIDER_KEYS, "compatible": "sk-compatible-e2e"},
        },
    )
    route = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LLMRoute",
        "metadata": {"name": "gw"},
        "spec": {
            "models": [
                {
                    "name": "smart",
                    "targets": [
                        _target("anthropic", "claude-sonnet-4-5", fakes["anthropic"], "anthropic"),
                        _target("openai", "gpt-4", fakes["openai"], "openai"),
                        _target("ollama", "llama3.2", ollama_url),
                    ],
                },
                {
                    "name": "bulk",
                    "strategy": "cost",
                    "targets": [
                        _target(
                            "openai-compatible",
                            "big",
                            fakes["pricey"],
                            "compatible",
                            pricing={"inputPerMillionUSD": 30, "outputPerMillionUSD": 60},
                        ),
                        _target(
                            "openai-compatible",
                            "small",
                            fakes["thrifty"],
                            "compatible",
                            pricing={"inputPerMillionUSD": 0.15, "outputPerMillionUSD": 0.6},
                        ),
                    ],
                },
            ],
            "router": {"timeoutSeconds": UPSTREAM_TIMEOUT, "cooldownSeconds": 1},
        },
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, ROUTE_PLURAL, route)
    runner = ProcessRunner(api_client=cluster.api_client(), namespace=namespace)
    runner.start()
    try:
        pod = wait_for(
            lambda: next(
                iter(
                    core.list_namespaced_pod(
                        namespace, label_selector="llmroute.dev/route=gw"
                    ).items
                ),
                None,
            ),
            timeout=90,
            what="a proxy pod",
        )
        served = runner.wait_serving(pod.metadata.name, timeout=180, namespace=namespace)
        secret = core.read_namespaced_secret("gw-master-key", namespace)
        yield Gateway(
            url=served.url,
            master_key=base64.b64decode(secret.data["masterKey"]).decode(),
            ollama=ollama_url,
            **fakes,
        )
    finally:
        runner.stop()
        for fake in fakes.values():
            fake.stop()
        local.close()
        core.delete_namespace(namespace)


@pytest.fixture(autouse=True)
def healthy_upstreams(gateway: Gateway) -> Iterator[None]:
    yield
    for fake in (gateway.anthropic, gateway.openai):
        fake.behaviour = Behaviour.OK
    # A failed target sits out its cooldown; the next test starts once it serves again.
    wait_for(
        lambda: "fake-anthropic" in gateway.ask("smart"),
        timeout=60,
        interval=1,
        what="the first target serving again after its cooldown",
    )
    for fake in (gateway.anthropic, gateway.openai):
        fake.reset()


def test_first_target_answers_with_the_key_from_its_secret(gateway: Gateway) -> None:
    assert "fake-anthropic" in gateway.ask("smart")
    (request,) = gateway.anthropic.inference_requests()
    assert request.api_key == PROVIDER_KEYS["anthropic"]
    assert gateway.openai.inference_requests() == []


@pytest.mark.parametrize("failure", [Behaviour.ERROR500, Behaviour.RATELIMIT429, Behaviour.HANG])
def test_failure_falls_back_down_the_chain(gateway: Gateway, failure: Behaviour) -> None:
    gateway.anthropic.behaviour = failure
    assert "fake-openai" in gateway.ask("smart")
    assert gateway.anthropic.inference_requests(), "the first target was tried"
    assert gateway.openai.inference_requests()[-1].api_key == PROVIDER_KEYS["openai"]


def loaded_models(ollama_url: str) -> list[str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{ollama_url}/api/ps", timeout=10) as response:
        return [m["name"] for m in json.loads(response.read())["models"]]


def test_both_clouds_failing_reach_the_local_model(gateway: Gateway) -> None:
    gateway.anthropic.behaviour = Behaviour.ERROR500
    gateway.openai.behaviour = Behaviour.RATELIMIT429
    answer = gateway.ask("smart")
    # The tiny model's words, not a cloud fake's reply; Ollama loaded the model to answer.
    assert answer.strip() and "fake-" not in answer
    assert gateway.anthropic.inference_requests() and gateway.openai.inference_requests()
    assert loaded_models(gateway.ollama) == ["llama3.2:latest"]


@pytest.mark.parametrize("key", [None, "sk-wrong"])
def test_missing_or_wrong_key_is_401(gateway: Gateway, key: str | None) -> None:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        f"{gateway.url}/v1/chat/completions",
        data=b'{"model": "smart", "messages": [{"role": "user", "content": "hi"}]}',
        headers=headers,
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 401
    assert gateway.anthropic.inference_requests() == []


def test_cost_strategy_prefers_the_cheaper_target(gateway: Gateway) -> None:
    gateway.pricey.reset()
    gateway.thrifty.reset()
    for _ in range(6):
        assert "fake-thrifty" in gateway.ask("bulk")
    assert len(gateway.thrifty.inference_requests()) == 6
    assert gateway.pricey.inference_requests() == []


def test_models_endpoint_lists_the_route_models(gateway: Gateway) -> None:
    assert sorted(m.id for m in gateway.client().models.list()) == ["bulk", "smart"]


def test_metrics_count_requests_tokens_and_spend_per_model(gateway: Gateway) -> None:
    gateway.ask("smart")
    with urllib.request.urlopen(f"{gateway.url}/metrics/", timeout=10) as response:
        text = response.read().decode()
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]

    def total(name: str, **labels: str) -> float:
        return sum(
            s.value
            for s in samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    assert total("litellm_proxy_total_requests_metric_total", requested_model="smart") >= 1
    assert total("litellm_total_tokens_metric_total", requested_model="smart") >= 15
    assert total("litellm_spend_metric_total", requested_model="smart") > 0
    # Per-client labels are excluded: bounded cardinality.
    assert not [s for s in samples if "client_ip" in s.labels or "user_agent" in s.labels]
