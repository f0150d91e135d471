"""The fake upstream providers answer in their providers' wire formats."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from localcluster.controlplane import free_port
from localcluster.fakes import Behaviour, FakeAnthropic, FakeOpenAI

HACK_DIR = Path(__file__).resolve().parents[2] / "hack"
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(
    method: str, url: str, body: object = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with _opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def ndjson(raw: bytes) -> list[dict]:
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


def sse_events(raw: bytes) -> list[tuple[str | None, str]]:
    events = []
    for block in raw.decode().split("\n\n"):
        event, data = None, None
        for line in block.splitlines():
            if line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: "):
                data = line[len("data: ") :]
        if data is not None:
            events.append((event, data))
    return events


# -- OpenAI ------------------------------------------------------------------------------------


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(required_key="sk-upstream", usage=(7, 3)) as fake:
        yield fake


@pytest.fixture
def oai(fake_openai: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake_openai.api_base, api_key="sk-upstream", max_retries=0)


def ask(client: openai.OpenAI, model: str = "gpt-4o-mini", **kwargs):
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], **kwargs
    )


def test_openai_chat_completion(fake_openai: FakeOpenAI, oai: openai.OpenAI) -> None:
    response = ask(oai)
    assert response.object == "chat.completion"
    assert response.model == "gpt-4o-mini"
    assert response.choices[0].finish_reason == "stop"
    assert "fake-openai" in response.choices[0].message.content
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (7, 3)
    assert response.usage.total_tokens == 10
    [recorded] = fake_openai.requests
    assert recorded.path == "/v1/chat/completions"
    assert recorded.headers["authorization"] == "Bearer sk-upstream"
    assert recorded.api_key == "sk-upstream"
    assert recorded.model == "gpt-4o-mini"


def test_openai_chat_without_v1_prefix(fake_openai: FakeOpenAI) -> None:
    status, _, body = http(
        "POST",
        f"{fake_openai.url}/chat/completions",
        {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]},
        {"Authorization": "Bearer sk-upstream"},
    )
    assert status == 200
    assert json.loads(body)["choices"][0]["message"]["role"] == "assistant"


def test_openai_streaming(fake_openai: FakeOpenAI, oai: openai.OpenAI) -> None:
    chunks = list(ask(oai, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == fake_openai.reply_text("gpt-4o-mini")
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.total_tokens == 10
    # Without include_usage no usage chunk, as OpenAI does.
    assert all(c.usage is None for c in ask(oai, stream=True))


def test_openai_stream_ends_with_done(fake_openai: FakeOpenAI) -> None:
    _, headers, raw = http(
        "POST",
        f"{fake_openai.api_base}/chat/completions",
        {"model": "gpt-4", "stream": True, "messages": []},
        {"Authorization": "Bearer sk-upstream"},
    )
    assert headers["Content-Type"].startswith("text/event-stream")
    assert sse_events(raw)[-1] == (None, "[DONE]")


def test_fail_next_fails_only_the_next_requests(
    fake_openai: FakeOpenAI, oai: openai.OpenAI
) -> None:
    fake_openai.fail_next(1, "ratelimit429")
    fake_openai.fail_next(1)
    with pytest.raises(openai.RateLimitError):
        ask(oai)
    with pytest.raises(openai.InternalServerError):
        ask(oai)
    assert ask(oai).choices[0].message.content
    assert fake_openai.behaviour is Behaviour.OK
    fake_openai.fail_next(2)
    fake_openai.reset()  # forgets the failures still pending
    assert ask(oai).choices[0].message.content


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_stream_gate_holds_the_stream_after_its_first_text(provider: str) -> None:
    fake = FakeOpenAI() if provider == "openai" else FakeAnthropic()
    gate = threading.Event()
    with fake:
        fake.stream_gate = gate
        if provider == "openai":
            url, body, headers = f"{fake.api_base}/chat/completions", {}, {}
        else:
            url, body = f"{fake.url}/v1/messages", {"max_tokens": 5}
            headers = {"anthropic-version": "2023-06-01"}
        body = {
            **body,
            "model": "m",
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        }
        request = urllib.request.Request(
            url, json.dumps(body).encode(), {"Content-Type": "application/json", **headers}
        )
        with _opener.open(request, timeout=10) as answer:
            events = []
            while not any("Hello " in data for _, data in events):
                line = answer.readline()
                assert line, "the stream ended before its first text"
                if line.startswith(b"data: "):
                    events.append((None, line[6:].decode()))
            assert fake.completed_streams == 0  # held: the rest is not sent
            gate.set()
            rest = answer.read().decode()
        assert fake.completed_streams == 1
        assert "Hello " not in rest and fake.reply_text("m").split()[-1] in rest


def test_openai_models_and_embeddings(oai: openai.OpenAI) -> None:
    assert "gpt-4o-mini" in [m.id for m in oai.models.list()]
    embedding = oai.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(embedding.data) == 2


def test_openai_wrong_or_missing_key_is_401(fake_openai: FakeOpenAI) -> None:
    wrong = openai.OpenAI(base_url=fake_openai.api_base, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        ask(wrong)
    assert caught.value.body["code"] == "invalid_api_key"
    status, _, body = http("POST", f"{fake_openai.api_base}/chat/completions", {"messages": []})
    assert status == 401
    assert json.loads(body)["error"]["type"] == "invalid_request_error"
    assert fake_openai.requests[-1].api_key is None


def test_openai_error500(fake_openai: FakeOpenAI, oai: openai.OpenAI) -> None:
    fake_openai.behaviour = "error500"
    with pytest.raises(openai.InternalServerError) as caught:
        ask(oai)
    assert caught.value.body["type"] == "server_error"
    fake_openai.behaviour = Behaviour.OK
    assert ask(oai).choices


def test_openai_ratelimit429_has_retry_after(fake_openai: FakeOpenAI, oai: openai.OpenAI) -> None:
    fake_openai.retry_after = 7
    fake_openai.set_behaviour(Behaviour.RATELIMIT429)
    with pytest.raises(openai.RateLimitError) as caught:
        ask(oai)
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.body["code"] == "rate_limit_exceeded"


def test_behaviour_per_model(fake_openai: FakeOpenAI, oai: openai.OpenAI) -> None:
    fake_openai.set_behaviour("error500", model="gpt-4")
    with pytest.raises(openai.InternalServerError):
        ask(oai, model="gpt-4")
    assert ask(oai, model="gpt-4o-mini").choices
    fake_openai.behaviour = "ok"  # a global switch clears per-model ones
    assert ask(oai, model="gpt-4").choices


def test_hang_outlasts_the_client_and_ends_on_stop() -> None:
    fake = FakeOpenAI()
    fake.start()
    fake.behaviour = "hang"
    client = openai.OpenAI(base_url=fake.api_base, api_key="k", max_retries=0, timeout=0.5)
    with pytest.raises(openai.APITimeoutError):
        ask(client)

    # A request still hanging when the fake stops is dropped, promptly.
    errors: list[Exception] = []
    slow = openai.OpenAI(base_url=fake.api_base, api_key="k", max_retries=0, timeout=30)

    def hang() -> None:
        try:
            ask(slow)
        except Exception as error:
            errors.append(error)

    waiter = threading.Thread(target=hang)
    waiter.start()
    fake.wait_for_requests(2)
    started = time.monotonic()
    fake.stop()
    waiter.join(10)
    assert not waiter.is_alive()
    assert time.monotonic() - started < 5
    assert isinstance(errors[0], openai.APIConnectionError)


def test_delay_and_reply_are_configurable() -> None:
    with FakeOpenAI(delay=0.3, reply="fixed answer") as fake:
        client = openai.OpenAI(base_url=fake.api_base, api_key="any", max_retries=0)
        started = time.monotonic()
        response = ask(client)
        assert time.monotonic() - started >= 0.3
        assert response.choices[0].message.content == "fixed answer"


def test_azure_deployment_path_takes_api_key_header() -> None:
    with FakeOpenAI(required_key="azure-key") as fake:
        url = f"{fake.url}/openai/deployments/prod-gpt4/chat/completions?api-version=2024-02-01"
        status, _, body = http("POST", url, {"messages": []}, {"api-key": "azure-key"})
        assert status == 200
        assert json.loads(body)["model"] == "prod-gpt4"
        assert fake.requests[-1].query == "api-version=2024-02-01"


def test_request_count_is_thread_safe(fake_openai: FakeOpenAI) -> None:
    def call() -> None:
        http("GET", f"{fake_openai.api_base}/models")

    threads = [threading.Thread(target=call) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fake_openai.request_count == 20
    fake_openai.reset()
    assert fake_openai.request_count == 0
    assert fake_openai.requests == []


def test_control_endpoints_switch_behaviour(fake_openai: FakeOpenAI) -> None:
    status, _, body = http("POST", f"{fake_openai.url}/_fake/behaviour", {"behaviour": "hang"})
    assert status == 200
    assert json.loads(body)["behaviour"] == "hang"
    assert fake_openai.behaviour is Behaviour.HANG
    status, _, _ = http("POST", f"{fake_openai.url}/_fake/behaviour", {"behaviour": "nope"})
    assert status == 400
    http("POST", f"{fake_openai.url}/_fake/reset", {})
    assert fake_openai.behaviour is Behaviour.OK
    assert fake_openai.request_count == 0  # control calls are not recorded


def test_unknown_path_is_404_in_openai_format(fake_openai: FakeOpenAI) -> None:
    status, _, body = http("GET", f"{fake_openai.url}/v1/nothing")
    assert status == 404
    assert "error" in json.loads(body)


# -- Anthropic ---------------------------------------------------------------------------------

MESSAGE = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi"}],
}


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(required_key="sk-ant-upstream", usage=(11, 4)) as fake:
        yield fake


def anthropic_headers(key: str = "sk-ant-upstream") -> dict[str, str]:
    return {"x-api-key": key, "anthropic-version": "2023-06-01"}


def test_anthropic_message(fake_anthropic: FakeAnthropic) -> None:
    status, headers, body = http(
        "POST", f"{fake_anthropic.url}/v1/messages", MESSAGE, anthropic_headers()
    )
    assert status == 200
    message = json.loads(body)
    assert message["type"] == "message"
    assert message["role"] == "assistant"
    assert message["stop_reason"] == "end_turn"
    [block] = message["content"]
    assert block["type"] == "text"
    assert "fake-anthropic" in block["text"]
    assert message["usage"]["input_tokens"] == 11
    assert message["usage"]["output_tokens"] == 4
    assert "request-id" in {k.lower() for k in headers}
    assert fake_anthropic.requests[-1].headers["x-api-key"] == "sk-ant-upstream"


def test_anthropic_streaming_events(fake_anthropic: FakeAnthropic) -> None:
    _, _, raw = http(
        "POST",
        f"{fake_anthropic.url}/v1/messages",
        {**MESSAGE, "stream": True},
        anthropic_headers(),
    )
    events = sse_events(raw)
    names = [name for name, _ in events]
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    text = "".join(
        json.loads(data)["delta"]["text"] for name, data in events if name == "content_block_delta"
    )
    assert text == fake_anthropic.reply_text("claude-sonnet-4-5")
    message_delta = json.loads(events[-2][1])
    assert message_delta["delta"]["stop_reason"] == "end_turn"
    assert message_delta["usage"]["output_tokens"] == 4


@pytest.mark.parametrize(
    ("behaviour", "status", "error_type"),
    [("error500", 500, "api_error"), ("ratelimit429", 429, "rate_limit_error")],
)
def test_anthropic_errors(
    fake_anthropic: FakeAnthropic, behaviour: str, status: int, error_type: str
) -> None:
    fake_anthropic.behaviour = behaviour
    got, headers, body = http(
        "POST", f"{fake_anthropic.url}/v1/messages", MESSAGE, anthropic_headers()
    )
    assert got == status
    assert json.loads(body) == {
        "type": "error",
        "error": {"type": error_type, "message": json.loads(body)["error"]["message"]},
    }
    if status == 429:
        assert headers["Retry-After"] == "1"


def test_anthropic_wrong_key_is_401(fake_anthropic: FakeAnthropic) -> None:
    status, _, body = http(
        "POST", f"{fake_anthropic.url}/v1/messages", MESSAGE, anthropic_headers("sk-wrong")
    )
    assert status == 401
    assert json.loads(body)["error"]["type"] == "authentication_error"


def test_anthropic_validates_required_fields(fake_anthropic: FakeAnthropic) -> None:
    body = {k: v for k, v in MESSAGE.items() if k != "max_tokens"}
    status, _, raw = http("POST", f"{fake_anthropic.url}/v1/messages", body, anthropic_headers())
    assert status == 400
    assert json.loads(raw)["error"]["type"] == "invalid_request_error"


# -- lifecycle and command line ----------------------------------------------------------------


def test_start_binds_any_loopback_address_and_restarts() -> None:
    fake = FakeOpenAI(name="fake-a")
    url = fake.start("127.0.1.201", 0)
    assert url.startswith("http://127.0.1.201:")
    assert http("GET", f"{url}/v1/models")[0] == 200
    fake.stop()
    with pytest.raises(urllib.error.URLError):
        _opener.open(f"{url}/v1/models", timeout=2)
    fake.start()
    assert http("GET", f"{fake.url}/v1/models")[0] == 200
    fake.stop()


def test_command_line_serves_until_sigterm() -> None:
    ports = {name: free_port() for name in ("openai", "anthropic")}
    env = {**os.environ, "PYTHONPATH": str(HACK_DIR)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "localcluster.fakes",
            *(f"--{name}=127.0.0.1:{port}" for name, port in ports.items()),
            "--openai-key=sk-cli",
        ],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines = [proc.stdout.readline() for _ in ports]
        assert all("serving at http://127.0.0.1:" in line for line in lines), lines
        base = f"http://127.0.0.1:{ports['openai']}/v1"
        client = openai.OpenAI(base_url=base, api_key="sk-cli", max_retries=0)
        assert "fake-openai" in ask(client).choices[0].message.content
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
