"""llmroute.client against a scripted HTTP server on loopback."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from llmroute import client as client_module
from llmroute.client import (
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    ChatResult,
    ConfigurationError,
    GatewayTimeout,
    GatewayUnreachable,
    LLMRouteClient,
    LLMRouteError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    call_llm,
)

API_KEY = "sk-unit-3f9c2a7e"


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-encoded unless bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


def chat_answer(text: str = "Hello from the gateway.", model: str = "gpt-4o-mini") -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


def openai_error(status: int, message: str, error_type: str = "invalid_request_error") -> Reply:
    return Reply(
        status,
        {"error": {"message": message, "type": error_type, "param": None, "code": str(status)}},
    )


class ScriptedGateway:
    """Answers with the queued replies in order, then with a chat answer; records requests."""

    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                gateway._answer(self)

            def do_POST(self) -> None:
                gateway._answer(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        with self._lock:
            self.seen.append(
                Seen(
                    handler.command,
                    handler.path,
                    {k.lower(): v for k, v in handler.headers.items()},
                    json.loads(raw) if raw else None,
                )
            )
            reply = self.replies.popleft() if self.replies else None
        if reply is None:
            if handler.path == "/v1/models":
                reply = Reply(200, {"object": "list", "data": [{"id": "smart"}, {"id": "cheap"}]})
            elif handler.path == "/health/liveliness":
                reply = Reply(200, "I'm alive!")
            else:
                reply = Reply(200, chat_answer())
        if reply.delay:
            time.sleep(reply.delay)
        body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        try:
            handler.send_response(reply.status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(body)
        except OSError:  # the client gave up (timeout tests)
            pass


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Neither the caller's gateway settings nor an HTTP proxy of the machine may leak in.
    for name in ("LLMROUTE_URL", "LLMROUTE_API_KEY", "http_proxy", "HTTP_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("ALL_PROXY", raising=False)


@pytest.fixture
def gateway() -> Iterator[ScriptedGateway]:
    server = ScriptedGateway()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


class SleepRecorder:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def llm(gateway: ScriptedGateway, sleeps: SleepRecorder) -> LLMRouteClient:
    return LLMRouteClient(gateway.url, API_KEY, timeout=5, sleep=sleeps)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- success -------------------------------------------------------------------------------


def test_chat_returns_the_first_choice_with_usage_and_cost(
    llm: LLMRouteClient, gateway: ScriptedGateway
) -> None:
    gateway.script(
        Reply(
            200,
            chat_answer("Four."),
            {
                "x-litellm-response-cost": "0.00012",
                "x-litellm-model-name": "openai/gpt-4o-mini",
                "x-foo": "1",
            },
        )
    )
    messages = [{"role": "user", "content": "2+2?"}]

    result = llm.chat("smart", messages, temperature=0)

    assert isinstance(result, ChatResult)
    assert result.content == "Four."
    assert result.model == "gpt-4o-mini"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (10, 5)
    assert result.usage.total_tokens == 15
    assert result.response_cost == pytest.approx(0.00012)
    assert result.served_by == "openai/gpt-4o-mini"
    assert result.headers["x-foo"] == "1"
    assert result.raw == chat_answer("Four.")
    assert result.finish_reason == "stop"
    assert result.id == "chatcmpl-1"
    assert result.attempts == 1
    [seen] = gateway.seen
    assert (seen.method, seen.path) == ("POST", "/v1/chat/completions")
    assert seen.headers["authorization"] == f"Bearer {API_KEY}"
    assert seen.headers["content-type"] == "application/json"
    assert seen.body == {"model": "smart", "messages": messages, "temperature": 0}


def test_a_string_is_one_user_message(llm: LLMRouteClient, gateway: ScriptedGateway) -> None:
    llm.chat("smart", "Hi")
    assert gateway.seen[0].body["messages"] == [{"role": "user", "content": "Hi"}]


def test_response_cost_is_none_without_the_header(llm: LLMRouteClient) -> None:
    assert llm.chat("smart", "Hi").response_cost is None


def test_models_lists_the_model_names(llm: LLMRouteClient, gateway: ScriptedGateway) -> None:
    assert llm.models() == ["smart", "cheap"]
    assert (gateway.seen[0].method, gateway.seen[0].path) == ("GET", "/v1/models")
    assert gateway.seen[0].headers["authorization"] == f"Bearer {API_KEY}"


def test_base_url_may_end_in_v1_as_openai_sdks_write_it(gateway: ScriptedGateway) -> None:
    llm = LLMRouteClient(gateway.url + "/v1/", API_KEY)
    assert llm.base_url == gateway.url
    llm.chat("smart", "Hi")
    assert gateway.seen[0].path == "/v1/chat/completions"


def test_caller_is_sent_in_headers(gateway: ScriptedGateway) -> None:
    LLMRouteClient(gateway.url, API_KEY, caller="billing").chat("smart", "Hi")
    headers = gateway.seen[0].headers
    assert headers["x-llmroute-caller"] == "billing"
    assert headers["user-agent"].startswith("llmroute-client ")
    assert headers["user-agent"].endswith(" caller/billing")


# -- tags and tasks ------------------------------------------------------------------------


def test_task_and_tags_go_into_metadata_tags(gateway: ScriptedGateway) -> None:
    llm = LLMRouteClient(gateway.url, API_KEY, default_tags=("team:billing",))
    llm.chat("smart", "Hi", task="summarize", tags=["nightly", "team:billing"])
    assert gateway.seen[0].body["metadata"] == {
        "tags": ["team:billing", "nightly", "task:summarize"]
    }


def test_task_already_prefixed_is_not_prefixed_twice(
    llm: LLMRouteClient, gateway: ScriptedGateway
) -> None:
    llm.chat("smart", "Hi", task="task:triage")
    assert gateway.seen[0].body["metadata"]["tags"] == ["task:triage"]


def test_a_single_tag_string_is_one_tag(llm: LLMRouteClient, gateway: ScriptedGateway) -> None:
    llm.chat("smart", "Hi", tags="nightly")
    assert gateway.seen[0].body["metadata"]["tags"] == ["nightly"]


def test_tags_merge_into_metadata_given_as_a_parameter(
    llm: LLMRouteClient, gateway: ScriptedGateway
) -> None:
    llm.chat("smart", "Hi", task="triage", metadata={"trace_id": "t1", "tags": ["a"]})
    assert gateway.seen[0].body["metadata"] == {"trace_id": "t1", "tags": ["a", "task:triage"]}


def test_no_tags_no_metadata(llm: LLMRouteClient, gateway: ScriptedGateway) -> None:
    llm.chat("smart", "Hi")
    assert "metadata" not in gateway.seen[0].body


@pytest.mark.parametrize("task", ["", "  ", "task:"])
def test_an_empty_task_is_refused(llm: LLMRouteClient, task: str) -> None:
    with pytest.raises(ConfigurationError, match="task"):
        llm.chat("smart", "Hi", task=task)


def test_streaming_is_refused_with_a_clear_error(llm: LLMRouteClient) -> None:
    with pytest.raises(ConfigurationError, match="stream"):
        llm.chat("smart", "Hi", stream=True)


# -- retries -------------------------------------------------------------------------------


def test_429_waits_as_retry_after_says_then_succeeds(
    llm: LLMRouteClient, gateway: ScriptedGateway, sleeps: SleepRecorder
) -> None:
    gateway.script(Reply(429, {"error": {"message": "slow down"}}, {"Retry-After": "2"}))

    result = llm.chat("smart", "Hi")

    assert result.content == "Hello from the gateway."
    assert result.attempts == 2
    assert sleeps.waits == [2.0]
    assert len(gateway.seen) == 2
    assert gateway.seen[0].body == gateway.seen[1].body


def test_retry_after_as_an_http_date(
    llm: LLMRouteClient, gateway: ScriptedGateway, sleeps: SleepRecorder
) -> None:
    when = formatdate(time.time() + 5, usegmt=True)
    gateway.script(Reply(429, {"error": {"message": "slow down"}}, {"Retry-After": when}))
    llm.chat("smart", "Hi")
    [wait] = sleeps.waits
    assert 3.0 <= wait <= 5.0  # the date has one-second resolution


def test_a_providers_retry_after_passed_on_by_litellm_is_honoured(
    llm: LLMRouteClient, gateway: ScriptedGateway, sleeps: SleepRecorder
) -> None:
    limited = Reply(429, {"error": {"message": "slow"}}, {"llm_provider-retry-after": "4"})
    gateway.script(limited)
    llm.chat("smart", "Hi")
    assert sleeps.waits == [4.0]


def test_retry_after_is_capped(gateway: ScriptedGateway, sleeps: SleepRecorder) -> None:
    llm = LLMRouteClient(gateway.url, API_KEY, max_retry_wait=3, sleep=sleeps)
    gateway.script(Reply(503, {"error": {"message": "busy"}}, {"Retry-After": "3600"}))
    llm.chat("smart", "Hi")
    assert sleeps.waits == [3.0]


def test_429_after_every_retry_raises_rate_limit_error(
    llm: LLMRouteClient, gateway: ScriptedGateway, sleeps: SleepRecorder
) -> None:
    limited = openai_error(429, "Rate limit reached for smart", "rate_limit_error")
    limited.headers["Retry-After"] = "1"
    gateway.script(*[limited] * 4)

    with pytest.raises(RateLimitError) as caught:
        llm.chat("smart", "Hi")

    error = caught.value
    assert error.status == 429
    assert error.retry_after == 1.0
    assert error.attempts == 4
    assert error.message == "Rate limit reached for smart"
    assert sleeps.waits == [1.0, 1.0, 1.0]
    assert len(gateway.seen) == 4
    assert "retry after 1s" in str(error)


def test_500_every_time_raises_server_error_after_backoff_with_jitter(
    gateway: ScriptedGateway, sleeps: SleepRecorder
) -> None:
    llm = LLMRouteClient(gateway.url, API_KEY, max_retries=3, backoff=0.5, sleep=sleeps)
    gateway.script(*[openai_error(500, "every provider failed", "server_error")] * 4)

    with pytest.raises(ServerError) as caught:
        llm.chat("smart", "Hi")

    assert caught.value.status == 500
    assert caught.value.attempts == 4
    assert caught.value.message == "every provider failed"
    assert len(gateway.seen) == 4
    assert len(sleeps.waits) == 3
    for wait, step in zip(sleeps.waits, [0.5, 1.0, 2.0], strict=True):
        assert step / 2 <= wait <= step


def test_a_5xx_then_success_is_retried(
    llm: LLMRouteClient, gateway: ScriptedGateway, sleeps: SleepRecorder
) -> None:
    gateway.script(Reply(502, b"<html>bad gateway</html>"), Reply(503, {"detail": "starting"}))
    assert llm.chat("smart", "Hi").attempts == 3
    assert len(sleeps.waits) == 2


def test_no_retries_when_max_retries_is_zero(
    gateway: ScriptedGateway, sleeps: SleepRecorder
) -> None:
    llm = LLMRouteClient(gateway.url, API_KEY, max_retries=0, sleep=sleeps)
    gateway.script(openai_error(500, "boom", "server_error"))
    with pytest.raises(ServerError):
        llm.chat("smart", "Hi")
    assert sleeps.waits == []
    assert len(gateway.seen) == 1


def test_exhausted_budget_is_not_retried(
    llm: LLMRouteClient, gateway: ScriptedGateway, sleeps: SleepRecorder
) -> None:
    gateway.script(
        openai_error(429, "model 'smart' is unavailable: budget exhausted", "budget_exceeded")
    )
    with pytest.raises(BudgetExceededError) as caught:
        llm.chat("smart", "Hi")
    assert isinstance(caught.value, RateLimitError)
    assert "budget exhausted" in str(caught.value)
    assert sleeps.waits == []
    assert len(gateway.seen) == 1


def test_models_are_retried_too(
    llm: LLMRouteClient, gateway: ScriptedGateway, sleeps: SleepRecorder
) -> None:
    gateway.script(Reply(503, {"error": "warming up"}))
    assert llm.models() == ["smart", "cheap"]
    assert len(sleeps.waits) == 1


def test_connection_refused_raises_gateway_unreachable_after_retries(
    sleeps: SleepRecorder,
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    llm = LLMRouteClient(url, API_KEY, max_retries=2, sleep=sleeps)

    with pytest.raises(GatewayUnreachable) as caught:
        llm.chat("smart", "Hi")

    error = caught.value
    assert isinstance(error, ConnectionError)
    assert error.status is None
    assert error.attempts == 3
    assert len(sleeps.waits) == 2
    assert str(error).startswith(f"POST {url}/v1/chat/completions: cannot reach the gateway")


def test_a_slow_answer_raises_gateway_timeout(
    gateway: ScriptedGateway, sleeps: SleepRecorder
) -> None:
    llm = LLMRouteClient(gateway.url, API_KEY, timeout=0.2, max_retries=1, sleep=sleeps)
    gateway.script(Reply(200, chat_answer(), delay=1.0), Reply(200, chat_answer(), delay=1.0))
    with pytest.raises(GatewayTimeout) as caught:
        llm.chat("smart", "Hi")
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.attempts == 2
    assert "no answer within 0.2s" in str(caught.value)


# -- errors --------------------------------------------------------------------------------


def test_401_raises_authentication_error_with_the_gateways_message(
    llm: LLMRouteClient, gateway: ScriptedGateway, sleeps: SleepRecorder
) -> None:
    gateway.script(openai_error(401, "Invalid API key.", "auth_error"))

    with pytest.raises(AuthenticationError) as caught:
        llm.chat("smart", "Hi")

    error = caught.value
    assert error.status == 401
    assert error.message == "Invalid API key."
    assert error.error_type == "auth_error"
    assert error.url == f"{gateway.url}/v1/chat/completions"
    assert str(error) == (
        f"401 Unauthorized from POST {gateway.url}/v1/chat/completions: Invalid API key."
    )
    assert sleeps.waits == []  # a wrong key stays wrong


@pytest.mark.parametrize(
    ("reply", "cls", "message"),
    [
        (openai_error(403, "caller 'billing' may not use model 'smart'"), PermissionDeniedError,
         "caller 'billing' may not use model 'smart'"),
        (openai_error(400, "Invalid model name passed in model=nope"), BadRequestError,
         "Invalid model name passed in model=nope"),
        (openai_error(404, "no such route"), NotFoundError, "no such route"),
        (Reply(422, {"detail": [{"loc": ["body", "messages"], "msg": "field required"}]}),
         BadRequestError, "field required"),
        (Reply(409, {"error": "conflict"}), BadRequestError, "conflict"),
        (Reply(400, b"plain text failure"), BadRequestError, "plain text failure"),
    ],
)  # fmt: skip
def test_4xx_maps_to_a_typed_error_with_the_message(
    llm: LLMRouteClient, gateway: ScriptedGateway, reply: Reply, cls: type, message: str
) -> None:
    gateway.script(reply)
    with pytest.raises(cls) as caught:
        llm.chat("smart", "Hi")
    assert caught.value.status == reply.status
    assert message in str(caught.value)
    assert len(gateway.seen) == 1


def test_403_is_an_authentication_error_too(llm: LLMRouteClient, gateway: ScriptedGateway) -> None:
    gateway.script(openai_error(403, "not allowed"))
    with pytest.raises(AuthenticationError):
        llm.chat("smart", "Hi")


def test_an_answer_that_is_not_json_is_an_error(
    llm: LLMRouteClient, gateway: ScriptedGateway
) -> None:
    gateway.script(Reply(200, b"<html>captive portal</html>"))
    with pytest.raises(LLMRouteError, match="not JSON"):
        llm.chat("smart", "Hi")


def test_an_answer_without_choices_is_an_error(
    llm: LLMRouteClient, gateway: ScriptedGateway
) -> None:
    gateway.script(Reply(200, {"object": "chat.completion", "choices": []}))
    with pytest.raises(LLMRouteError, match="no choices"):
        llm.chat("smart", "Hi")


def test_the_api_key_never_shows_in_errors_or_reprs(
    gateway: ScriptedGateway, sleeps: SleepRecorder
) -> None:
    llm = LLMRouteClient(gateway.url, API_KEY, max_retries=1, sleep=sleeps)
    # A gateway that echoes the key it was given.
    echo = openai_error(401, f"Authentication Error, Received API Key = {API_KEY}")
    gateway.script(echo, *[openai_error(500, f"failed for key {API_KEY}")] * 2)
    errors: list[LLMRouteError] = []
    for _ in range(2):
        with pytest.raises(LLMRouteError) as caught:
            llm.chat("smart", "Hi")
        errors.append(caught.value)
    unreachable = LLMRouteClient(f"http://127.0.0.1:{closed_port()}", API_KEY, max_retries=0)
    with pytest.raises(GatewayUnreachable) as caught:
        unreachable.models()
    errors.append(caught.value)

    assert "Received API Key = ***" in str(errors[0])
    for error in errors:
        assert API_KEY not in str(error)
        assert API_KEY not in repr(error)
        assert API_KEY not in error.message
        assert API_KEY not in json.dumps(error.body)
    assert API_KEY not in repr(llm)


def test_redaction_leaves_words_that_contain_a_short_key_alone(
    gateway: ScriptedGateway,
) -> None:
    llm = LLMRouteClient(gateway.url, "k", max_retries=0)
    gateway.script(openai_error(401, "Unknown key k."))
    with pytest.raises(AuthenticationError) as caught:
        llm.chat("smart", "Hi")
    assert caught.value.message == "Unknown key ***."


# -- health --------------------------------------------------------------------------------


def test_health_is_true_when_the_gateway_is_live(
    llm: LLMRouteClient, gateway: ScriptedGateway
) -> None:
    assert llm.health() is True
    [seen] = gateway.seen
    assert (seen.method, seen.path) == ("GET", "/health/liveliness")
    assert "authorization" not in seen.headers


def test_health_is_false_on_an_error_status(
    llm: LLMRouteClient, gateway: ScriptedGateway, sleeps: SleepRecorder
) -> None:
    gateway.script(Reply(503, {"error": "down"}))
    assert llm.health() is False
    assert sleeps.waits == []


def test_health_is_false_when_unreachable() -> None:
    assert LLMRouteClient(f"http://127.0.0.1:{closed_port()}", API_KEY).health() is False


def test_health_is_false_on_a_timeout(gateway: ScriptedGateway) -> None:
    gateway.script(Reply(200, "late", delay=1.0), Reply(200, "late", delay=1.0))
    assert LLMRouteClient(gateway.url, API_KEY, timeout=0.2).health() is False
    assert LLMRouteClient(gateway.url, API_KEY).health(timeout=0.2) is False


# -- configuration -------------------------------------------------------------------------


def test_a_key_read_from_a_file_may_end_in_a_newline(gateway: ScriptedGateway) -> None:
    LLMRouteClient(gateway.url + "\n", API_KEY + "\n").chat("smart", "Hi")
    assert gateway.seen[0].headers["authorization"] == f"Bearer {API_KEY}"


def test_configuration_from_the_environment(
    gateway: ScriptedGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMROUTE_URL", gateway.url + "/")
    monkeypatch.setenv("LLMROUTE_API_KEY", API_KEY + "\n")  # as read from a Secret file
    llm = LLMRouteClient()
    assert llm.base_url == gateway.url
    llm.chat("smart", "Hi")
    assert gateway.seen[0].headers["authorization"] == f"Bearer {API_KEY}"


def test_arguments_win_over_the_environment(
    gateway: ScriptedGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMROUTE_URL", "http://elsewhere.invalid:4000")
    monkeypatch.setenv("LLMROUTE_API_KEY", "sk-from-env")
    LLMRouteClient(gateway.url, API_KEY).chat("smart", "Hi")
    assert gateway.seen[0].headers["authorization"] == f"Bearer {API_KEY}"


def test_missing_configuration_names_both_variables() -> None:
    with pytest.raises(ConfigurationError) as caught:
        LLMRouteClient()
    assert "LLMROUTE_URL" in str(caught.value)
    assert "LLMROUTE_API_KEY" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_missing_key_only_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMROUTE_URL", "http://gw:4000")
    with pytest.raises(ConfigurationError) as caught:
        LLMRouteClient()
    assert "LLMROUTE_API_KEY" in str(caught.value)
    assert "LLMROUTE_URL" not in str(caught.value)


@pytest.mark.parametrize("url", ["gw:4000", "ftp://gw", "http://"])
def test_a_url_that_is_not_http_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="http://host:port"):
        LLMRouteClient(url, API_KEY)


def test_credentials_in_a_bad_url_are_not_echoed() -> None:
    with pytest.raises(ConfigurationError) as caught:
        LLMRouteClient("ftp://user:hunter2@gw", API_KEY)
    assert "hunter2" not in str(caught.value)


def test_call_llm_reads_the_environment_and_returns_the_text(
    gateway: ScriptedGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMROUTE_URL", gateway.url)
    monkeypatch.setenv("LLMROUTE_API_KEY", API_KEY)
    gateway.script(Reply(200, chat_answer("Done.")))

    text = call_llm("smart", "Summarise this.", task="summarize", max_tokens=50, timeout=5)

    assert text == "Done."
    body = gateway.seen[0].body
    assert body["metadata"] == {"tags": ["task:summarize"]}
    assert body["max_tokens"] == 50
    assert "timeout" not in body  # a client option, not a completion parameter


def test_call_llm_without_configuration_fails_clearly() -> None:
    with pytest.raises(ConfigurationError, match="LLMROUTE_URL"):
        call_llm("smart", "Hi")


def test_the_module_imports_only_the_standard_library() -> None:
    source = client_module.__file__
    assert source is not None
    with open(source) as f:
        imports = [line.split()[1] for line in f if line.startswith(("import ", "from "))]
    roots = {name.split(".")[0] for name in imports}
    assert roots <= {
        "__future__", "collections", "dataclasses", "datetime", "email", "http", "json", "os",
        "random", "re", "sys", "time", "typing", "urllib",
    }  # fmt: skip
