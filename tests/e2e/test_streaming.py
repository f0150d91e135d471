"""Streaming through the real litellm proxy, run exactly as llmroute renders it.

One proxy for the module: render_route() of a route, its Deployment's pod template, ConfigMap
and Secrets turned into a process by the runner's plan_proxy_launch (as the gateway benchmark
does), listening on loopback. Upstreams are the fake providers, which stream real OpenAI and
Anthropic server-sent events; the clients are the official openai SDK and llmroute.client.
"""

from __future__ import annotations

import base64
import dataclasses
import queue
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from llmroute.api.route import parse_route
from llmroute.client import LLMRouteClient, ServerError
from llmroute.quota.counters import Usage, counter_samples, parse_metrics, usage_by_deployment
from llmroute.render import render_route
from llmroute.render.names import MASTER_KEY_SECRET_KEY
from localcluster import (
    FakeAnthropic,
    FakeOpenAI,
    ManagedProcess,
    free_port,
    launch_proxy,
    plan_proxy_launch,
    wait_for,
    wait_http_ok,
)

pytestmark = pytest.mark.e2e

NAMESPACE = "streams"
MASTER_KEY = "sk-stream-master-3c9e1f"
PROVIDER_KEYS = {"openai": "sk-openai-stream", "anthropic": "sk-ant-stream"}
START_TIMEOUT = 180.0  # ~10 s on a quiet machine; far more when it is busy
METRICS_TIMEOUT = 60.0  # LiteLLM counts a stream after its last chunk, off the request path
CHUNK_TIMEOUT = 60.0
# gpt-4o-mini's prices in LiteLLM's bundled price map (USD per token).
GPT_4O_MINI_PRICES = (0.15e-6, 0.6e-6)


@dataclass
class Gateway:
    url: str
    process: ManagedProcess
    fakes: dict[str, FakeOpenAI | FakeAnthropic]
    # "<model>/<position>" -> the target's deployment id (model_info.id, label model_id)
    ids: dict[str, str]

    def sdk(self) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=60
        )

    def client(self, **kwargs: Any) -> LLMRouteClient:
        kwargs.setdefault("sleep", lambda _seconds: None)
        return LLMRouteClient(self.url, MASTER_KEY, **kwargs)

    def usage(self) -> dict[str, Usage]:
        """The usage counters per deployment, read as the quota ledger reads them."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"{self.url}/metrics/", timeout=10) as answer:
            text = answer.read().decode()
        by_id = usage_by_deployment(counter_samples(parse_metrics(text)))
        return {position: by_id[id_] for position, id_ in self.ids.items() if id_ in by_id}


def _target(provider: str, model: str, fake: FakeOpenAI | FakeAnthropic) -> dict[str, Any]:
    return {
        "provider": provider,
        "model": model,
        "apiBase": fake.url,
        "apiKeySecretRef": {"name": "provider-keys", "key": provider},
    }


def _route(fakes: dict[str, FakeOpenAI | FakeAnthropic]) -> dict[str, Any]:
    return {
        "apiVersion": "llmroute.dev/v1alpha1",
        "kind": "LLMRoute",
        "metadata": {"name": "gw", "namespace": NAMESPACE, "uid": "stream-route-uid"},
        "spec": {
            "models": [
                {"name": "smart", "targets": [_target("openai", "gpt-4o-mini", fakes["openai"])]},
                {
                    # Priority order: the first target, then the second when it fails.
                    "name": "chain",
                    "targets": [
                        _target("openai", "gpt-4o", fakes["first"]),
                        _target("openai", "gpt-4o-mini", fakes["second"]),
                    ],
                },
                {
                    "name": "claude",
                    "targets": [_target("anthropic", "claude-sonnet-4-5", fakes["anthropic"])],
                },
                {
                    # A chain that mixes providers: LiteLLM asks OpenAI for the stream's usage
                    # only when every target of the model takes stream_options.
                    "name": "mixed",
                    "targets": [
                        _target("anthropic", "claude-haiku-4-5", fakes["mixed-anthropic"]),
                        _target("openai", "gpt-4o-mini", fakes["mixed-openai"]),
                    ],
                },
            ],
            "tasks": ["stories"],
            # Each failure is the fallback's to handle, not a retry's: request counts are exact.
            "router": {"numRetries": 0},
        },
    }


def _secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {"metadata": {"name": name}, "data": encoded}


def _set_port(argv: tuple[str, ...], port: int) -> tuple[str, ...]:
    args = list(argv)
    args[args.index("--port") + 1] = str(port)
    return tuple(args)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    fakes: dict[str, FakeOpenAI | FakeAnthropic] = {
        "openai": FakeOpenAI(name="fake-openai", required_key=PROVIDER_KEYS["openai"]),
        "first": FakeOpenAI(name="fake-first", required_key=PROVIDER_KEYS["openai"]),
        "second": FakeOpenAI(name="fake-second", required_key=PROVIDER_KEYS["openai"]),
        "anthropic": FakeAnthropic(name="fake-anthropic", required_key=PROVIDER_KEYS["anthropic"]),
        "mixed-anthropic": FakeAnthropic(
            name="fake-mixed-anthropic", required_key=PROVIDER_KEYS["anthropic"]
        ),
        "mixed-openai": FakeOpenAI(name="fake-mixed-openai", required_key=PROVIDER_KEYS["openai"]),
    }
    for fake in fakes.values():
        fake.start("127.0.0.1")
    parsed = parse_route(_route(fakes))
    ids = {
        f"{model.name}/{target.index}": target.deployment_id
        for model in parsed.models
        for target in model.targets
    }
    rendered = render_route(parsed)
    deployment = next(o for o in rendered.objects if o["kind"] == "Deployment")
    config_map = next(o for o in rendered.objects if o["kind"] == "ConfigMap")
    master = rendered.generated_secret
    assert master is not None
    secrets = {
        "provider-keys": _secret("provider-keys", PROVIDER_KEYS),
        master["metadata"]["name"]: _secret(
            master["metadata"]["name"], {MASTER_KEY_SECRET_KEY: MASTER_KEY}
        ),
    }
    template = deployment["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**template["metadata"], "name": "gw-litellm-0", "namespace": NAMESPACE},
        "spec": template["spec"],
        "status": {"phase": "Running", "podIP": "127.0.0.1"},
    }
    workdir: Path = tmp_path_factory.mktemp("stream-gateway")
    launch = plan_proxy_launch(
        pod,
        secrets=secrets,
        configmaps={config_map["metadata"]["name"]: config_map},
        pod_dir=workdir / "pod",
    )
    port = free_port()
    launch = dataclasses.replace(launch, argv=_set_port(launch.argv, port), port=port)
    process = launch_proxy(launch, workdir / "litellm.log")
    try:
        wait_http_ok(launch.health_url, START_TIMEOUT, process=process)
        yield Gateway(launch.url, process, fakes, ids)
    finally:
        process.stop()
        for fake in fakes.values():
            fake.stop()


@pytest.fixture(autouse=True)
def upstreams_ok(gateway: Gateway) -> None:
    for fake in gateway.fakes.values():
        fake.reset()
        fake.stream_gate = None


def _wait_usage(gateway: Gateway, deployment: str, requests: int) -> Usage:
    """The deployment's counters once they count `requests` requests."""
    found: dict[str, Usage] = {}

    def counted() -> bool:
        found.update(gateway.usage())
        return found.get(deployment, Usage()).requests >= requests

    wait_for(counted, timeout=METRICS_TIMEOUT, what=f"{requests} requests of {deployment}")
    return found[deployment]


def test_chunks_reach_the_client_before_the_upstream_has_sent_the_last(gateway: Gateway) -> None:
    upstream = gateway.fakes["openai"]
    gate = threading.Event()
    upstream.stream_gate = gate  # the upstream holds its stream after the first text delta
    received: queue.Queue[Any] = queue.Queue()

    def consume() -> None:
        try:
            stream = gateway.sdk().chat.completions.create(
                model="smart", messages=[{"role": "user", "content": "Hi"}], stream=True
            )
            for chunk in stream:
                received.put(chunk)
        except Exception as e:  # handed to the test thread
            received.put(e)
        received.put(None)

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    try:
        texts: list[str] = []
        while not texts:  # chunks up to the first text delta
            chunk = received.get(timeout=CHUNK_TIMEOUT)
            assert chunk is not None and not isinstance(chunk, Exception), chunk
            if chunk.choices and chunk.choices[0].delta.content:
                texts.append(chunk.choices[0].delta.content)
        # The client holds the first text while the upstream waits to send the rest.
        assert texts == ["Hello "]
        assert upstream.completed_streams == 0
    finally:
        gate.set()
    while (chunk := received.get(timeout=CHUNK_TIMEOUT)) is not None:
        assert not isinstance(chunk, Exception), chunk
        texts += [c.delta.content for c in chunk.choices if c.delta.content]
    reader.join(CHUNK_TIMEOUT)
    assert "".join(texts) == "Hello from fake-openai (model gpt-4o-mini)."
    assert upstream.completed_streams == 1


@pytest.mark.parametrize("failure", ["error500", "ratelimit429"])
def test_a_failing_first_target_falls_back_before_the_first_chunk(
    gateway: Gateway, failure: str
) -> None:
    first, second = gateway.fakes["first"], gateway.fakes["second"]
    first.set_behaviour(failure)

    stream = gateway.sdk().chat.completions.create(
        model="chain", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    chunks = list(stream)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from fake-second (model gpt-4o-mini)."
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert len(first.inference_requests()) == 1
    assert len(second.inference_requests()) == 1
    assert second.completed_streams == 1


def test_streamed_usage_is_counted_for_the_deployment_that_answered(gateway: Gateway) -> None:
    before = gateway.usage().get("smart/0", Usage())
    prompt, completion = gateway.fakes["openai"].usage

    stream = gateway.sdk().chat.completions.create(
        model="smart",
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        extra_body={"metadata": {"tags": ["task:stories"]}},
    )
    chunks = list(stream)

    # The caller did not ask for usage, so it gets none: usage-less clients keep working.
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)
    [upstream] = gateway.fakes["openai"].inference_requests()
    # ... but the proxy asked the upstream for it, and counts it.
    assert upstream.body["stream_options"] == {"include_usage": True}
    after = _wait_usage(gateway, "smart/0", before.requests + 1)
    counted = after.minus(before)
    assert (counted.input_tokens, counted.output_tokens, counted.requests) == (
        prompt,
        completion,
        1,
    )
    expected_spend = prompt * GPT_4O_MINI_PRICES[0] + completion * GPT_4O_MINI_PRICES[1]
    assert counted.spend_usd == pytest.approx(expected_spend, rel=1e-6)


def test_a_fallback_streams_usage_is_counted_for_the_target_that_answered(
    gateway: Gateway,
) -> None:
    before = gateway.usage()
    gateway.fakes["first"].set_behaviour("error500")
    prompt, completion = gateway.fakes["second"].usage

    list(
        gateway.sdk().chat.completions.create(
            model="chain", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
    )

    old = before.get("chain/1", Usage())
    counted = _wait_usage(gateway, "chain/1", old.requests + 1).minus(old)
    assert (counted.input_tokens, counted.output_tokens, counted.requests) == (
        prompt,
        completion,
        1,
    )
    assert (
        gateway.usage().get("chain/0", Usage()).requests == before.get("chain/0", Usage()).requests
    )


def test_an_anthropic_upstream_streams_through_the_openai_endpoint(gateway: Gateway) -> None:
    before = gateway.usage().get("claude/0", Usage())
    prompt, completion = gateway.fakes["anthropic"].usage

    stream = gateway.sdk().chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from fake-anthropic (model claude-sonnet-4-5)."
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert [f for f in finishes if f] == ["stop"], [c.model_dump(exclude_none=True) for c in chunks]
    usage = [c.usage for c in chunks if c.usage is not None][-1]
    assert (usage.prompt_tokens, usage.completion_tokens) == (prompt, completion)
    [upstream] = gateway.fakes["anthropic"].inference_requests()
    assert upstream.path == "/v1/messages" and upstream.body["stream"] is True
    counted = _wait_usage(gateway, "claude/0", before.requests + 1).minus(before)
    assert (counted.input_tokens, counted.output_tokens, counted.requests) == (
        prompt,
        completion,
        1,
    )
    assert counted.spend_usd > 0


def test_an_openai_target_in_a_mixed_chain_counts_the_upstreams_usage(gateway: Gateway) -> None:
    # LiteLLM itself asks an OpenAI upstream for a stream's usage only when every target of
    # the model takes stream_options, which Anthropic's does not: the route's stream-usage
    # hook (payloads/stream_usage.py) asks in every case.
    gateway.fakes["mixed-anthropic"].set_behaviour("error500")
    upstream = gateway.fakes["mixed-openai"]
    before = gateway.usage().get("mixed/1", Usage())
    prompt, completion = upstream.usage

    chunks = list(
        gateway.sdk().chat.completions.create(
            model="mixed", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
    )

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "Hello from fake-mixed-openai (model gpt-4o-mini)."
    )
    assert all(c.usage is None for c in chunks)  # the caller did not ask for usage
    [request] = upstream.inference_requests()
    assert request.body["stream_options"] == {"include_usage": True}
    counted = _wait_usage(gateway, "mixed/1", before.requests + 1).minus(before)
    assert counted.requests == 1
    assert (counted.input_tokens, counted.output_tokens) == (prompt, completion)
    assert counted.spend_usd > 0


def test_the_clients_stream_yields_text_and_the_final_usage(gateway: Gateway) -> None:
    upstream = gateway.fakes["openai"]
    gate = threading.Event()
    upstream.stream_gate = gate
    client = gateway.client(timeout=CHUNK_TIMEOUT)

    with client.chat_stream("smart", "Tell a story.", task="stories") as stream:
        chunks = iter(stream)
        first_text = next(c.content for c in chunks if c.content)
        assert first_text == "Hello "
        assert upstream.completed_streams == 0  # the rest is still upstream
        gate.set()
        rest = "".join(c.content for c in chunks)

    assert first_text + rest == "Hello from fake-openai (model gpt-4o-mini)."
    assert stream.content == first_text + rest
    assert stream.done and stream.finish_reason == "stop"
    assert stream.usage is not None
    assert (stream.usage.prompt_tokens, stream.usage.completion_tokens) == upstream.usage
    assert stream.served_by == "openai/gpt-4o-mini"
    [request] = upstream.inference_requests()
    assert request.body["messages"] == [{"role": "user", "content": "Tell a story."}]
    assert request.body["stream"] is True


def test_the_clients_task_tag_labels_the_streams_counters(gateway: Gateway) -> None:
    before = gateway.usage().get("smart/0", Usage())

    stream = gateway.client().chat_stream("smart", "Tell a story.", task="stories")
    assert "".join(stream.text())

    _wait_usage(gateway, "smart/0", before.requests + 1)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{gateway.url}/metrics/", timeout=10) as answer:
        samples = counter_samples(parse_metrics(answer.read().decode()))
    tagged = [
        s
        for s in samples
        if s.labels.get("model_id") == gateway.ids["smart/0"]
        and s.labels.get("tag_task_stories") == "true"
    ]
    assert {s.metric for s in tagged} >= {"litellm_requests_metric", "litellm_spend_metric"}


def test_the_client_retries_a_stream_that_failed_before_its_first_chunk(
    gateway: Gateway,
) -> None:
    upstream = gateway.fakes["openai"]
    upstream.fail_next(1, "error500")  # the proxy has no other target: the client sees a 500
    waits: list[float] = []

    stream = gateway.client(sleep=waits.append).chat_stream("smart", "Hi")
    text = "".join(stream.text())

    assert text == "Hello from fake-openai (model gpt-4o-mini)."
    assert stream.attempts == 2 and len(waits) == 1
    assert len(upstream.inference_requests()) == 2


def test_the_clients_stream_raises_the_gateways_error(gateway: Gateway) -> None:
    gateway.fakes["openai"].set_behaviour("error500")

    with pytest.raises(ServerError) as caught:
        gateway.client(max_retries=1).chat_stream("smart", "Hi")

    assert caught.value.status == 500
    assert caught.value.attempts == 2
    assert "failed on purpose" in caught.value.message
    assert MASTER_KEY not in str(caught.value)
