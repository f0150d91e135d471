"""llmroute.client's chat_stream() against a scripted server-sent-events server on loopback."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from llmroute.client import (
    ChatStream,
    ConfigurationError,
    GatewayTimeout,
    GatewayUnreachable,
    LLMRouteClient,
    LLMRouteError,
    RateLimitError,
    ServerError,
)

API_KEY = "sk-unit-stream-7a1c"
WAIT = 30.0  # deadline for conditions; never reached when the code works


def chunk(content: str | None = None, finish: str | None = None, **extra: Any) -> dict:
    delta = {} if content is None else {"content": content}
    return {
        "id": "chatcmpl-s1",
        "object": "chat.completion.chunk",
        "model": "smart",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }


USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
USAGE_CHUNK = {**chunk(), "choices": [], "usage": USAGE}


def sse(payload: Any) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n".encode()


def story(*pieces: str) -> list[bytes]:
    """A whole stream: role, the pieces, the finish, the usage, [DONE]."""
    events = [sse(chunk(""))]
    events += [sse(chunk(p)) for p in pieces]
    return [*events, sse(chunk(finish="stop")), sse(USAGE_CHUNK), sse("[DONE]")]


@dataclass
class Stream:
    """One scripted answer: a status, then these writes (each sent as it is)."""

    writes: list[bytes] = field(default_factory=list)
    status: int = 200
    body: Any = None  # a JSON error body instead of a stream
    headers: dict[str, str] = field(default_factory=dict)
    hold_after: int | None = None  # wait for the gate after this many writes
    gate: threading.Event = field(default_factory=threading.Event)


class SSEGateway:
    def __init__(self) -> None:
        self.answers: deque[Stream] = deque()
        self.seen: list[tuple[dict[str, str], Any]] = []
        self.done = threading.Event()  # set when the server has sent an answer's last write
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

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

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = json.loads(handler.rfile.read(length)) if length else None
        self.seen.append(({k.lower(): v for k, v in handler.headers.items()}, body))
        answer = self.answers.popleft()
        handler.close_connection = True
        try:
            if answer.body is not None:
                raw = json.dumps(answer.body).encode()
                handler.send_response(answer.status)
                handler.send_header("Content-Type", "application/json")
                handler.send_header("Content-Length", str(len(raw)))
                for name, value in answer.headers.items():
                    handler.send_header(name, value)
                handler.end_headers()
                handler.wfile.write(raw)
                return
            handler.send_response(answer.status)
            handler.send_header("Content-Type", "text/event-stream")
            handler.send_header("Transfer-Encoding", "chunked")
            for name, value in answer.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            for index, data in enumerate(answer.writes):
                if answer.hold_after is not None and index == answer.hold_after:
                    answer.gate.wait(WAIT)
                handler.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
                handler.wfile.flush()
            if answer.writes[-1:] == [sse("[DONE]")]:
                handler.wfile.write(b"0\r\n\r\n")
                handler.wfile.flush()
            self.done.set()
        except OSError:  # the client went away
            pass


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LLMROUTE_URL", "LLMROUTE_API_KEY", "http_proxy", "HTTP_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("ALL_PROXY", raising=False)


@pytest.fixture
def gateway() -> Iterator[SSEGateway]:
    server = SSEGateway()
    server.thread.start()
    yield server
    for answer in server.answers:
        answer.gate.set()
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def llm(gateway: SSEGateway, waits: list[float]) -> LLMRouteClient:
    return LLMRouteClient(gateway.url, API_KEY, timeout=10, sleep=waits.append)


def test_chat_stream_yields_the_deltas_and_ends_with_the_usage(
    llm: LLMRouteClient, gateway: SSEGateway
) -> None:
    gateway.answers.append(
        Stream(story("Once ", "upon ", "a time."), headers={"x-litellm-model-name": "openai/x"})
    )

    with llm.chat_stream("smart", "Tell a story.", task="stories", temperature=0) as stream:
        chunks = list(stream)

    assert [c.content for c in chunks] == ["", "Once ", "upon ", "a time.", "", ""]
    assert [c.finish_reason for c in chunks][-2:] == ["stop", None]
    assert chunks[-1].usage is not None and chunks[-1].raw["choices"] == []
    assert stream.content == "Once upon a time."
    assert stream.usage is not None
    assert (stream.usage.prompt_tokens, stream.usage.completion_tokens) == (10, 5)
    assert stream.usage.total_tokens == 15
    assert stream.finish_reason == "stop"
    assert stream.done and stream.attempts == 1
    assert stream.model == "smart" and stream.id == "chatcmpl-s1"
    assert stream.served_by == "openai/x"
    [(headers, body)] = gateway.seen
    assert headers["authorization"] == f"Bearer {API_KEY}"
    assert headers["accept"] == "text/event-stream"
    assert body == {
        "model": "smart",
        "messages": [{"role": "user", "content": "Tell a story."}],
        "temperature": 0,
        "metadata": {"tags": ["task:stories"]},
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_text_yields_only_the_text(llm: LLMRouteClient, gateway: SSEGateway) -> None:
    gateway.answers.append(Stream(story("a", "b")))
    assert list(llm.chat_stream("smart", "Hi").text()) == ["a", "b"]


def test_events_are_parsed_as_server_sent_events(llm: LLMRouteClient, gateway: SSEGateway) -> None:
    first = json.dumps(chunk("one "))
    split = json.dumps(chunk("two")).replace(", ", ",\ndata: ", 1)  # data over two lines
    writes = [
        b": keep-alive comment\n\n",
        b"event: message\r\nid: 1\r\ndata: " + first.encode() + b"\r\n\r\n",
        b"data: " + split.encode()[:9],  # a line cut across two writes
        split.encode()[9:] + b"\n\n",
        b"retry: 100\n\n",
        b"data:" + json.dumps(chunk(finish="stop")).encode() + b"\n\n",  # no space after colon
        sse("[DONE]"),
    ]
    gateway.answers.append(Stream(writes))

    stream = llm.chat_stream("smart", "Hi")

    assert [c.content for c in stream] == ["one ", "two", ""]
    assert stream.finish_reason == "stop" and stream.done
    assert stream.usage is None  # the gateway sent none


def test_the_first_chunk_arrives_before_the_gateway_has_sent_the_rest(
    llm: LLMRouteClient, gateway: SSEGateway
) -> None:
    answer = Stream(story("early ", "late"), hold_after=2)
    gateway.answers.append(answer)

    stream = llm.chat_stream("smart", "Hi")
    chunks = iter(stream)
    assert next(chunks).content == ""
    assert next(chunks).content == "early "
    assert not gateway.done.is_set()  # the server is still holding the rest
    answer.gate.set()

    assert "".join(c.content for c in chunks) == "late"
    assert stream.content == "early late"


def test_a_failure_before_the_first_chunk_is_retried(
    llm: LLMRouteClient, gateway: SSEGateway, waits: list[float]
) -> None:
    gateway.answers.extend(
        [
            Stream(status=503, body={"error": {"message": "warming up", "code": "503"}}),
            Stream([sse({"error": {"message": "slow down", "type": "rate_limit", "code": "429"}})]),
            Stream([b": ping\n\n"]),  # cut off before any chunk
            Stream(story("ok")),
        ]
    )

    stream = llm.chat_stream("smart", "Hi")

    assert stream.content == "" and "".join(stream.text()) == "ok"
    assert stream.attempts == 4
    assert len(waits) == 3
    assert len(gateway.seen) == 4


def test_an_error_event_before_the_first_chunk_raises_its_status_after_the_retries(
    gateway: SSEGateway,
) -> None:
    error = {"error": {"message": "slow down", "type": "rate_limit", "code": "429"}}
    gateway.answers.extend([Stream([sse(error)]), Stream([sse(error)])])
    client = LLMRouteClient(gateway.url, API_KEY, max_retries=1, sleep=lambda _s: None)

    with pytest.raises(RateLimitError) as caught:
        client.chat_stream("smart", "Hi")

    assert caught.value.status == 429 and caught.value.attempts == 2
    assert caught.value.message == "slow down"


def test_an_error_event_after_the_first_chunk_raises_without_a_retry(
    llm: LLMRouteClient, gateway: SSEGateway
) -> None:
    error = {"error": {"message": f"upstream died (key {API_KEY})", "code": "500"}}
    gateway.answers.append(Stream([sse(chunk("partial ")), sse(error)]))

    stream = llm.chat_stream("smart", "Hi")
    chunks = iter(stream)
    assert next(chunks).content == "partial "
    with pytest.raises(ServerError) as caught:
        next(chunks)

    assert caught.value.status == 500 and caught.value.attempts == 1
    assert API_KEY not in str(caught.value) and "***" in caught.value.message
    assert len(gateway.seen) == 1
    assert stream.content == "partial "


def test_a_stream_cut_off_after_the_first_chunk_raises(
    llm: LLMRouteClient, gateway: SSEGateway
) -> None:
    gateway.answers.append(Stream([sse(chunk("partial "))]))

    stream = llm.chat_stream("smart", "Hi")
    with pytest.raises(GatewayUnreachable, match="the stream broke off: no \\[DONE\\]"):
        list(stream)
    assert len(gateway.seen) == 1


def test_a_stream_that_stalls_after_the_first_chunk_times_out(gateway: SSEGateway) -> None:
    answer = Stream(story("a", "b"), hold_after=2)
    gateway.answers.append(answer)
    client = LLMRouteClient(gateway.url, API_KEY, timeout=0.5, sleep=lambda _s: None)

    stream = client.chat_stream("smart", "Hi")
    with pytest.raises(GatewayTimeout, match=r"no further chunk within 0\.5s"):
        list(stream)
    answer.gate.set()


def test_data_that_is_not_json_raises(llm: LLMRouteClient, gateway: SSEGateway) -> None:
    gateway.answers.append(Stream([sse("not json"), sse("[DONE]")]))
    with pytest.raises(LLMRouteError, match="not JSON: 'not json'"):
        llm.chat_stream("smart", "Hi")
    assert len(gateway.seen) == 1


def test_stream_options_of_the_caller_are_kept(llm: LLMRouteClient, gateway: SSEGateway) -> None:
    gateway.answers.append(Stream([sse(chunk("x")), sse("[DONE]")]))
    stream = llm.chat_stream("smart", "Hi", stream_options={"include_usage": False})
    assert list(stream.text()) == ["x"]
    assert gateway.seen[0][1]["stream_options"] == {"include_usage": False}
    assert stream.usage is None


def test_close_releases_an_unfinished_stream(llm: LLMRouteClient, gateway: SSEGateway) -> None:
    answer = Stream(story("a", "b"), hold_after=2)
    gateway.answers.append(answer)

    with llm.chat_stream("smart", "Hi") as stream:
        assert isinstance(stream, ChatStream)
        next(iter(stream))
    answer.gate.set()

    assert list(stream) == []
    assert not stream.done


def test_stream_false_and_chat_with_stream_are_refused(llm: LLMRouteClient) -> None:
    with pytest.raises(ConfigurationError, match="chat\\(\\)"):
        llm.chat_stream("smart", "Hi", stream=False)
    with pytest.raises(ConfigurationError, match="chat_stream\\(\\)"):
        llm.chat("smart", "Hi", stream=True)
    with pytest.raises(ConfigurationError, match="stream_options"):
        llm.chat_stream("smart", "Hi", stream_options="yes")
