"""Embeddings through the gateway: the real litellm proxy, a declared caller, a ModelQuota.

A route's model `embed` has one embedding target on a fake OpenAI; a caller allowed that model
only sends /v1/embeddings with the official openai SDK and gets the fake's vectors back. The
operator scrapes the proxy and the quota matching the embedding target counts its requests,
input tokens and spend, priced by input tokens as LiteLLM prices embeddings.
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

UPSTREAM_KEY = "sk-upstream-embeddings-e2e"
CALLER_KEY = "sk-caller-search-e2e"
EMBEDDING_MODEL = "text-embedding-3-small"
# FakeOpenAI counts 10 prompt tokens per request and answers one 4-float vector per input; at
# 1000 USD per million input tokens an embedding request costs 0.01 USD.
PROMPT_TOKENS = 10
PRICE_PER_REQUEST = 0.01
FAKE_VECTOR = [0.1, 0.2, 0.3, 0.4]
# The operator syncs every 15 s (LLMROUTE_QUOTA_SYNC_SECONDS unset); a proxy starts in ~10 s,
# slower on a loaded machine.
SYNC_TIMEOUT = 120
SERVE_TIMEOUT = 180


@pytest.fixture
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(required_key=UPSTREAM_KEY, models=(EMBEDDING_MODEL, "gpt-4o-mini")) as fake:
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
                    "name": "embed",
                    "mode": "embedding",
                    "targets": [
                        {
                            "provider": "openai",
                            "model": EMBEDDING_MODEL,
                            "apiBase": upstream.api_base,
                            "apiKeySecretRef": key,
                            "pricing": {"inputPerMillionUSD": 1000, "outputPerMillionUSD": 0},
                        }
                    ],
                },
                {
                    "name": "chat",
                    "targets": [
                        {
                            "provider": "openai",
                            "model": "gpt-4o-mini",
                            "apiBase": upstream.api_base,
                            "apiKeySecretRef": key,
                        }
                    ],
                },
            ],
            "auth": {
                "callers": [
                    {
                        "name": "search",
                        "keySecretRef": {"name": "caller-keys", "key": "search"},
                        "models": ["embed"],
                    }
                ]
            },
            "router": {"numRetries": 0},
        },
    }


def quota_manifest() -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelQuota",
        "metadata": {"name": "embedding-budget"},
        "spec": {
            "routeRef": {"name": "gw"},
            "match": {"model": EMBEDDING_MODEL},
            "budget": {"limitUSD": 1, "period": "daily"},
        },
    }


@pytest.fixture
def serving_pod(api, namespace, process_runner: ProcessRunner, upstream) -> ProcessInfo:
    core = client.CoreV1Api(api)
    for name, data in (
        ("provider-keys", {"openai": UPSTREAM_KEY}),
        ("caller-keys", {"search": CALLER_KEY}),
    ):
        core.create_namespaced_secret(namespace, {"metadata": {"name": name}, "stringData": data})
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, ROUTE_PLURAL, route_manifest(upstream)
    )
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, QUOTA_PLURAL, quota_manifest()
    )

    def running_pod() -> str | None:
        pods = core.list_namespaced_pod(namespace, label_selector="llmroute.dev/route=gw").items
        live = [p for p in pods if p.status.phase == "Running"]
        return live[0].metadata.name if live else None

    pod = wait_for(running_pod, timeout=SERVE_TIMEOUT, what="a running proxy pod")
    return process_runner.wait_serving(pod, timeout=SERVE_TIMEOUT, namespace=namespace)


def quota_status(api: client.ApiClient, namespace: str) -> dict[str, Any]:
    quota = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, QUOTA_PLURAL, "embedding-budget"
    )
    return quota.get("status") or {}


def test_embeddings_through_the_gateway_are_served_and_counted(
    api, namespace, serving_pod: ProcessInfo, upstream: FakeOpenAI
):
    caller = openai.OpenAI(api_key=CALLER_KEY, base_url=serving_pod.url, max_retries=0)

    answers = [
        caller.embeddings.create(model="embed", input=["first text", "second text"]),
        caller.embeddings.create(model="embed", input="one more"),
    ]
    assert [[item.embedding for item in a.data] for a in answers] == [
        [FAKE_VECTOR, FAKE_VECTOR],
        [FAKE_VECTOR],
    ]
    assert [a.usage.prompt_tokens for a in answers] == [PROMPT_TOKENS, PROMPT_TOKENS]
    assert [r.model for r in upstream.inference_requests()] == [EMBEDDING_MODEL] * 2
    # The caller's allowlist holds for embeddings as for chat: another model is refused
    # before anything reaches an upstream.
    with pytest.raises(openai.PermissionDeniedError):
        caller.embeddings.create(model="chat", input="not mine")
    assert len(upstream.inference_requests()) == 2

    def counted() -> dict[str, Any] | None:
        status = quota_status(api, namespace)
        return status if status.get("requests", 0) >= 2 else None

    status = wait_for(counted, timeout=SYNC_TIMEOUT, interval=0.5, what="embeddings counted")
    assert (status["requests"], status["inputTokens"], status["outputTokens"]) == (
        2,
        2 * PROMPT_TOKENS,
        0,
    )
    assert status["spentUSD"] == pytest.approx(2 * PRICE_PER_REQUEST, abs=1e-6)
    assert status["state"] == "Ok"
