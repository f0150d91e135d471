"""llmroute.client against the real litellm proxy, configured as llmroute configures it.

One proxy for the module: the route's model ``smart`` on a fake OpenAI upstream, a master
key, and llmroute's auth hook (payloads/gateway_auth.py, shipped to the pod as
llmroute_auth.py) with one declared caller limited to the task ``summarize``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import llmroute.payloads.gateway_auth as gateway_auth_module
from llmroute.client import (
    AuthenticationError,
    BadRequestError,
    LLMRouteClient,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    call_llm,
)
from localcluster import FakeOpenAI, free_port

pytestmark = pytest.mark.e2e

MASTER_KEY = "sk-master-e2e-5b1d0c"
CALLER_KEY = "sk-billing-e2e-8e2f4a"
START_TIMEOUT = 120.0  # 6-9 s on a quiet machine; far more when the machine is busy


@dataclass
class Gateway:
    url: str
    fake: FakeOpenAI
    log: Path

    def client(self, api_key: str = MASTER_KEY, **kwargs: object) -> LLMRouteClient:
        kwargs.setdefault("sleep", lambda _seconds: None)
        return LLMRouteClient(self.url, api_key, **kwargs)  # type: ignore[arg-type]


def _write_route_files(workdir: Path, upstream: str) -> dict[str, str]:
    """config.yaml, the auth hook and its policy and key files; returns the proxy's env."""
    keys = workdir / "keys"
    (keys / "master").mkdir(parents=True)
    (keys / "callers" / "billing").mkdir(parents=True)
    (keys / "master" / "masterKey").write_text(MASTER_KEY)
    (keys / "callers" / "billing" / "key").write_text(CALLER_KEY + "\n")
    policy = {
        "models": ["smart"],
        "masterKeyFile": "master/masterKey",
        "callers": [
            {"name": "billing", "keyFile": "callers/billing/key", "models": None,
             "tags": ["summarize"]},
        ],
        "rejectedModels": {},
    }  # fmt: skip
    (workdir / "llmroute_auth.json").write_text(json.dumps(policy))
    shutil.copy(gateway_auth_module.__file__, workdir / "llmroute_auth.py")
    config = {
        "model_list": [
            {
                "model_name": "smart",
                "litellm_params": {
                    "model": "openai/gpt-4o-mini",
                    "api_base": upstream,
                    "api_key": "sk-upstream",
                },
            }
        ],
        # The client's retries are under test: the proxy passes each failure straight on.
        "router_settings": {"num_retries": 0},
        "general_settings": {
            "master_key": MASTER_KEY,
            "custom_auth": "llmroute_auth.user_api_key_auth",
        },
    }
    (workdir / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    return {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LLMROUTE_KEYS_DIR": str(keys),
        "LLMROUTE_AUTH_POLICY": str(workdir / "llmroute_auth.json"),
        "PYTHONPATH": str(workdir),
        "PYTHONUNBUFFERED": "1",
    }


def _session_processes(sid: int) -> list[str]:
    out = subprocess.run(
        ["ps", "-e", "-o", "pid=,sid=,args="], capture_output=True, text=True, check=True
    ).stdout
    return [line for line in out.splitlines() if line.split()[1] == str(sid)]


def _stop(popen: subprocess.Popen[bytes]) -> None:
    # The whole session: the proxy's workers are its children.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, signal.SIGTERM)
    try:
        popen.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait(10)
    deadline = time.monotonic() + 10
    while _session_processes(popen.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    litellm = Path(sys.executable).parent / "litellm"
    if not litellm.exists():
        message = f"{litellm} is missing; install the project with its test extras"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    workdir = tmp_path_factory.mktemp("client-gateway")
    fake = FakeOpenAI()
    fake.start()
    env = {**os.environ, **_write_route_files(workdir, fake.api_base)}
    for name in ("LLMROUTE_URL", "LLMROUTE_API_KEY"):
        env.pop(name, None)
    port = free_port()
    log = workdir / "litellm.log"
    argv = [str(litellm), "--config", str(workdir / "config.yaml")]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        popen = subprocess.Popen(
            argv,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if popen.poll() is not None:
                pytest.fail(f"litellm exited with {popen.returncode}:\n{log.read_text()[-4000:]}")
            if LLMRouteClient(url, MASTER_KEY, timeout=2).health():
                break
            if time.monotonic() > deadline:
                pytest.fail(f"litellm not live after {START_TIMEOUT}s:\n{log.read_text()[-4000:]}")
            time.sleep(0.25)
        yield Gateway(url, fake, log)
    finally:
        _stop(popen)
        fake.stop()
        left = _session_processes(popen.pid)
        assert not left, f"litellm processes left behind: {left}"


@pytest.fixture(autouse=True)
def upstream_ok(gateway: Gateway) -> None:
    gateway.fake.reset()


def test_chat_returns_the_upstreams_answer_with_usage_and_cost(gateway: Gateway) -> None:
    result = gateway.client().chat("smart", "Say hello.", task="summarize")

    assert result.content == "Hello from fake-openai (model gpt-4o-mini)."
    assert result.model == "smart"
    assert result.served_by == "openai/gpt-4o-mini"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (10, 5)
    assert result.usage.total_tokens == 15
    assert result.response_cost is not None and result.response_cost > 0
    assert result.attempts == 1
    [upstream] = gateway.fake.inference_requests()
    assert upstream.body["messages"] == [{"role": "user", "content": "Say hello."}]
    assert upstream.api_key == "sk-upstream"  # the gateway's key for the provider, not ours


def test_models_lists_the_routes_model_names(gateway: Gateway) -> None:
    assert gateway.client().models() == ["smart"]


def test_health(gateway: Gateway) -> None:
    assert gateway.client().health() is True
    assert gateway.client(api_key="sk-wrong").health() is True  # liveness needs no key
    assert LLMRouteClient(f"http://127.0.0.1:{free_port()}", MASTER_KEY).health() is False


def test_a_wrong_key_raises_authentication_error(gateway: Gateway) -> None:
    wrong = "sk-wrong-7d3e9b"
    with pytest.raises(AuthenticationError) as caught:
        gateway.client(api_key=wrong).chat("smart", "Hi")

    error = caught.value
    assert error.status == 401
    assert error.message == "Invalid API key."
    assert str(error) == (
        f"401 Unauthorized from POST {gateway.url}/v1/chat/completions: Invalid API key."
    )
    assert wrong not in str(error)
    assert error.attempts == 1
    assert gateway.fake.inference_requests() == []


def test_a_callers_task_tags_reach_the_gateways_policy(gateway: Gateway) -> None:
    billing = gateway.client(api_key=CALLER_KEY, caller="billing")
    assert billing.chat("smart", "Summarise.", task="summarize").content

    with pytest.raises(PermissionDeniedError) as caught:
        billing.chat("smart", "Triage.", task="triage")

    assert caught.value.status == 403
    assert "task:triage" in caught.value.message
    assert CALLER_KEY not in str(caught.value)
    assert len(gateway.fake.inference_requests()) == 1


def test_an_unknown_model_raises_bad_request_error(gateway: Gateway) -> None:
    with pytest.raises(BadRequestError) as caught:
        gateway.client().chat("nope", "Hi")
    assert caught.value.status == 400
    assert "Invalid model name passed in model=nope" in str(caught.value)


def test_a_rate_limited_upstream_raises_rate_limit_error_after_retries(gateway: Gateway) -> None:
    gateway.fake.retry_after = 1
    gateway.fake.set_behaviour("ratelimit429")
    waits: list[float] = []

    with pytest.raises(RateLimitError) as caught:
        gateway.client(max_retries=2, sleep=waits.append).chat("smart", "Hi")

    error = caught.value
    assert error.status == 429
    assert error.attempts == 3
    assert "rate-limiting on purpose" in error.message
    assert error.retry_after == 1.0  # the provider's Retry-After, as the proxy passes it on
    assert waits == [1.0, 1.0]
    assert len(gateway.fake.inference_requests()) == 3


def test_a_retry_after_a_429_succeeds_once_the_upstream_recovers(gateway: Gateway) -> None:
    gateway.fake.set_behaviour("ratelimit429")
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        gateway.fake.set_behaviour("ok")

    result = gateway.client(sleep=wait).chat("smart", "Hi")

    assert result.content.startswith("Hello from fake-openai")
    assert result.attempts == 2
    assert len(waits) == 1


def test_a_failing_upstream_raises_server_error_after_retries(gateway: Gateway) -> None:
    gateway.fake.set_behaviour("error500")
    waits: list[float] = []

    with pytest.raises(ServerError) as caught:
        gateway.client(max_retries=1, backoff=0.5, sleep=waits.append).chat("smart", "Hi")

    assert caught.value.status == 500
    assert caught.value.attempts == 2
    assert "failed on purpose" in caught.value.message
    assert len(waits) == 1 and 0.25 <= waits[0] <= 0.5
    assert len(gateway.fake.inference_requests()) == 2


def test_call_llm_reads_the_environment(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMROUTE_URL", gateway.url + "/v1")
    monkeypatch.setenv("LLMROUTE_API_KEY", CALLER_KEY)
    assert call_llm("smart", "Hi", task="summarize") == (
        "Hello from fake-openai (model gpt-4o-mini)."
    )
