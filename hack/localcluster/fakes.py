"""Fake upstream LLM providers that speak the real wire formats, on loopback.

The gateway under test is the real litellm proxy; what it calls must look like OpenAI and
Anthropic on the wire, but answer instantly, deterministically and on demand badly. (The
local model needs no fake: the real Ollama serves a tiny model made here,
localcluster.tinymodel.) Each fake here is a small threaded HTTP server (stdlib only) that:

- answers in its provider's request/response and error formats, streaming included;
- replies with a text naming the fake and the model (tests see who answered) and fixed
  token usage (tests can compute the expected spend);
- switches at runtime between behaviours: ``ok``, ``error500``, ``ratelimit429`` (with
  ``Retry-After``) and ``hang`` (holds the request until the fake stops), for every request
  or only for the next few (``fail_next``);
- streams at a chosen pace (``chunk_delay`` between events) and can hold a stream after its
  first text delta until a test releases it (``stream_gate``), so a test can see chunks
  reach the client before the upstream has sent the last one;
- records every request, authentication headers included, so a test can check which key
  the proxy forwarded;
- rejects a wrong or missing key with 401 when ``required_key`` is set.

Behaviours apply to the inference endpoints only: listing models keeps working, as a
provider's control plane usually does while inference fails.

``python -m localcluster.fakes --openai 127.0.0.1:18001 --anthropic 127.0.0.1:18002`` runs
them until SIGTERM. ``POST /_fake/behaviour``
(``{"behaviour": "error500", "model": null}``), ``GET /_fake/state`` and
``POST /_fake/reset`` steer a running fake from outside (the local demo uses them).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import podnet

__all__ = [
    "Behaviour",
    "FakeAnthropic",
    "FakeOpenAI",
    "FakeProvider",
    "RecordedRequest",
    "main",
]


class Behaviour(StrEnum):
    OK = "ok"
    ERROR500 = "error500"
    RATELIMIT429 = "ratelimit429"
    HANG = "hang"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str  # without the query string
    query: str
    headers: dict[str, str]  # names lower-cased
    body: Any  # decoded JSON; the text when it is not JSON; None when empty
    received_at: float

    @property
    def model(self) -> str | None:
        if isinstance(self.body, dict):
            model = self.body.get("model") or self.body.get("name")
            return model if isinstance(model, str) else None
        return None

    @property
    def api_key(self) -> str | None:
        """The key the caller presented, whichever header carried it."""
        for header in ("x-api-key", "api-key"):
            if header in self.headers:
                return self.headers[header]
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return token if scheme.lower() == "bearer" and token else None


class _Exchange:
    """A request being answered: its parsed parts and the ways to respond."""

    def __init__(self, handler: _Handler, method: str, body: bytes) -> None:
        self.handler = handler
        self.method = method
        path, _, self.query = handler.path.partition("?")
        self.path = path.rstrip("/") or "/"
        self.headers = {name.lower(): value for name, value in handler.headers.items()}
        self.raw_body = body
        self.body: Any = None
        if body:
            try:
                self.body = json.loads(body)
            except ValueError:
                self.body = body.decode(errors="replace")
        self.match: re.Match[str] | None = None
        self.responded = False

    @property
    def json(self) -> dict[str, Any]:
        return self.body if isinstance(self.body, dict) else {}

    def record(self) -> RecordedRequest:
        return RecordedRequest(
            self.method, self.path, self.query, dict(self.headers), self.body, time.time()
        )

    def send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.responded = True
        handler = self.handler
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        if self.method != "HEAD":
            handler.wfile.write(body)
        handler.wfile.flush()

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self.send(status, json.dumps(payload).encode(), "application/json", headers)

    def send_text(self, status: int, text: str) -> None:
        self.send(status, text.encode(), "text/plain; charset=utf-8")

    @contextlib.contextmanager
    def stream(self, content_type: str, status: int = 200) -> Iterator[Callable[[bytes], None]]:
        """Yields a write function; the body goes out in HTTP/1.1 chunks as written."""
        self.responded = True
        handler = self.handler
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()

        def write(data: bytes) -> None:
            if data:
                handler.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
                handler.wfile.flush()

        yield write
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the proxy's HTTP clients expect
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def handle(self) -> None:
        # A client (the proxy's connection pool) may reset an idle keep-alive connection.
        with contextlib.suppress(ConnectionError):
            super().handle()

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the fakes record requests instead of logging them

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        try:
            exchange = _Exchange(self, method, self._read_body())
            self.server.provider._handle(exchange)
            if not exchange.responded:
                self.close_connection = True  # a hung request ends without an answer
        except (ConnectionError, TimeoutError, OSError):
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the default 5 drops connections under benchmark concurrency

    def __init__(self, address: tuple[str, int], provider: FakeProvider) -> None:
        self.provider = provider
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, conn: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(conn)

    def untrack(self, conn: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(conn)

    def close_connections(self) -> None:
        # Idle keep-alive connections would otherwise hold their handler threads open.
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


_Route = tuple[str, re.Pattern[str], Callable[[_Exchange], None], bool]


class FakeProvider:
    """What all fakes share: the server, behaviours, request records, key checks.

    Subclasses declare ``_routes()`` and the provider's error format (``_error``).
    """

    default_name = "fake"

    def __init__(
        self,
        *,
        name: str | None = None,
        reply: str | None = None,
        usage: tuple[int, int] = (10, 5),
        delay: float = 0.0,
        chunk_delay: float = 0.0,
        required_key: str | None = None,
        behaviour: Behaviour | str = Behaviour.OK,
        retry_after: int = 1,
        hang_seconds: float = 3600.0,
    ) -> None:
        self.name = name or self.default_name
        self.reply = reply
        self.usage = usage  # (prompt/input tokens, completion/output tokens)
        self.delay = delay
        # Seconds between the events of a streamed answer (a model producing tokens).
        self.chunk_delay = chunk_delay
        # When set, a streamed answer sends its first text delta, then waits for the gate
        # (stopping the fake cuts the wait short) before it sends the rest.
        self.stream_gate: threading.Event | None = None
        self.required_key = required_key
        self.retry_after = retry_after
        self.hang_seconds = hang_seconds
        self._lock = threading.Lock()
        self._behaviour = Behaviour(behaviour)
        self._model_behaviour: dict[str, Behaviour] = {}
        self._next_behaviours: list[Behaviour] = []
        self._completed_streams = 0
        self._requests: list[RecordedRequest] = []
        self._request_count = 0
        self._request_event = threading.Condition(self._lock)
        self._closing = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._route_table: list[_Route] = [
            (method, re.compile(pattern), handler, inference)
            for method, pattern, handler, inference in self._routes()
        ]

    # -- lifecycle -------------------------------------------------------------------

    def start(self, host: str | None = None, port: int = 0) -> str:
        """Serve on (host, port); port 0 picks a free one. Returns the base URL.

        The default host is where pods can call it: the pod network's gateway address
        when one is up on this machine, else 127.0.0.1."""
        if self._server is not None:
            raise RuntimeError(f"{self.name} is already serving at {self.url}")
        self._closing = threading.Event()
        self._server = _Server((host or podnet.host_address(), port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"{self.name}-server",
            daemon=True,
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving; hung requests are released and open connections closed."""
        server, self._server = self._server, None
        if server is None:
            return
        self._closing.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeProvider:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def serving(self) -> bool:
        return self._server is not None

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError(f"{self.name} is not serving")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    @property
    def api_base(self) -> str:
        """What a client (or an LLMRoute target's apiBase) points at."""
        return self.url

    # -- behaviour and records ----------------------------------------------------------

    @property
    def behaviour(self) -> Behaviour:
        with self._lock:
            return self._behaviour

    @behaviour.setter
    def behaviour(self, value: Behaviour | str) -> None:
        self.set_behaviour(value)

    def set_behaviour(self, behaviour: Behaviour | str, *, model: str | None = None) -> None:
        """Switch the behaviour for every model, or only for requests naming ``model``."""
        behaviour = Behaviour(behaviour)
        with self._lock:
            if model is None:
                self._behaviour = behaviour
                self._model_behaviour.clear()
            else:
                self._model_behaviour[model] = behaviour

    def fail_next(self, count: int = 1, behaviour: Behaviour | str = Behaviour.ERROR500) -> None:
        """The next ``count`` inference requests get ``behaviour``; later ones the usual one."""
        behaviour = Behaviour(behaviour)
        with self._lock:
            self._next_behaviours += [behaviour] * count

    def _take_behaviour(self, model: str | None) -> Behaviour:
        with self._lock:
            if self._next_behaviours:
                return self._next_behaviours.pop(0)
        return self.behaviour_for(model)

    def behaviour_for(self, model: str | None) -> Behaviour:
        with self._lock:
            if model is not None and model in self._model_behaviour:
                return self._model_behaviour[model]
            return self._behaviour

    @property
    def requests(self) -> list[RecordedRequest]:
        """The requests received so far (a copy), oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self._lock:
            return self._request_count

    @property
    def completed_streams(self) -> int:
        """How many streamed answers were sent to their end."""
        with self._lock:
            return self._completed_streams

    def inference_requests(self) -> list[RecordedRequest]:
        """Only the requests that asked for a completion (not model listings etc.)."""
        return [r for r in self.requests if self._is_inference(r.method, r.path)]

    def reset(self) -> None:
        """Forget recorded requests and return to the ``ok`` behaviour (``fail_next`` too)."""
        with self._lock:
            self._requests.clear()
            self._request_count = 0
            self._completed_streams = 0
            self._behaviour = Behaviour.OK
            self._model_behaviour.clear()
            self._next_behaviours.clear()

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """Block until at least ``count`` requests were received."""
        with self._request_event:
            if not self._request_event.wait_for(lambda: self._request_count >= count, timeout):
                raise TimeoutError(
                    f"{self.name}: {self._request_count} requests after {timeout}s, wanted {count}"
                )
            return list(self._requests)

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "name": self.name,
                "behaviour": str(self._behaviour),
                "modelBehaviour": {m: str(b) for m, b in self._model_behaviour.items()},
                "requests": self._request_count,
            }

    # -- request handling ----------------------------------------------------------------

    def _routes(self) -> Iterable[tuple[str, str, Callable[[_Exchange], None], bool]]:
        """(method, path regex, handler, is_inference) rows."""
        return ()

    def _is_inference(self, method: str, path: str) -> bool:
        return any(
            inference and m == method and pattern.fullmatch(path)
            for m, pattern, _, inference in self._route_table
        )

    def _handle(self, ex: _Exchange) -> None:
        if ex.path.startswith("/_fake/"):
            self._control(ex)
            return
        with self._request_event:
            self._requests.append(ex.record())
            self._request_count += 1
            self._request_event.notify_all()
        allowed = []
        for method, pattern, handler, inference in self._route_table:
            match = pattern.fullmatch(ex.path)
            if not match:
                continue
            if method != ex.method and not (method == "GET" and ex.method == "HEAD"):
                allowed.append(method)
                continue
            ex.match = match
            if inference and not self._authorized(ex):
                self._error(ex, 401, "authentication", "invalid API key")
                return
            if inference and not self._apply_behaviour(ex):
                return
            handler(ex)
            return
        if allowed:
            self._error(ex, 405, "method", f"method {ex.method} not allowed on {ex.path}")
        else:
            self._error(ex, 404, "not_found", f"no route for {ex.method} {ex.path}")

    def _presented_key(self, ex: _Exchange) -> str | None:
        scheme, _, token = ex.headers.get("authorization", "").partition(" ")
        return token if scheme.lower() == "bearer" else None

    def _authorized(self, ex: _Exchange) -> bool:
        return self.required_key is None or self._presented_key(ex) == self.required_key

    def _apply_behaviour(self, ex: _Exchange) -> bool:
        """False when the behaviour already answered (or dropped) the request."""
        model = ex.json.get("model") if isinstance(ex.json.get("model"), str) else None
        behaviour = self._take_behaviour(model)
        if behaviour is Behaviour.ERROR500:
            self._error(ex, 500, "server", f"{self.name} failed on purpose (error500)")
            return False
        if behaviour is Behaviour.RATELIMIT429:
            self._error(
                ex,
                429,
                "rate_limit",
                f"{self.name} is rate-limiting on purpose (ratelimit429)",
                headers={"Retry-After": str(self.retry_after)},
            )
            return False
        if behaviour is Behaviour.HANG:
            self._closing.wait(self.hang_seconds)
            return False
        # A fixed delay stands in for model latency (benchmarks); stopping cuts it short.
        return not (self.delay and self._closing.wait(self.delay))

    @contextlib.contextmanager
    def _event_stream(self, ex: _Exchange) -> Iterator[Callable[..., None]]:
        """Yields send(event, text_delta=False): an SSE answer paced by chunk_delay and
        held by stream_gate after its first text delta."""
        sent = held = False

        def send(event: bytes, *, text_delta: bool = False) -> None:
            nonlocal sent, held
            if sent and self.chunk_delay:
                self._closing.wait(self.chunk_delay)
            write(event)
            sent = True
            gate = self.stream_gate
            if text_delta and not held and gate is not None:
                held = True
                while not gate.wait(0.05) and not self._closing.is_set():
                    pass

        with ex.stream("text/event-stream") as write:
            yield send
            # Counted before the body's end goes out: a client that has read the whole
            # answer finds the stream counted.
            with self._lock:
                self._completed_streams += 1

    def _error(
        self,
        ex: _Exchange,
        status: int,
        kind: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        ex.send_json(status, {"error": message}, headers)

    def _control(self, ex: _Exchange) -> None:
        if ex.path == "/_fake/state":
            ex.send_json(200, self.state())
        elif ex.path == "/_fake/reset" and ex.method == "POST":
            self.reset()
            ex.send_json(200, self.state())
        elif ex.path == "/_fake/behaviour" and ex.method == "POST":
            try:
                self.set_behaviour(ex.json.get("behaviour", ""), model=ex.json.get("model"))
            except ValueError:
                choices = ", ".join(b.value for b in Behaviour)
                ex.send_json(400, {"error": f"behaviour must be one of {choices}"})
                return
            ex.send_json(200, self.state())
        else:
            ex.send_json(404, {"error": f"no control endpoint {ex.method} {ex.path}"})

    def reply_text(self, model: str | None) -> str:
        if self.reply is not None:
            return self.reply
        return f"Hello from {self.name} (model {model})."


def _now() -> int:
    return int(time.time())


def _pieces(text: str) -> list[str]:
    """Split a reply into stream deltas (words, keeping their spaces)."""
    return re.findall(r"\S+\s*|\s+", text) or [""]


def _sse(payload: Any, event: str | None = None) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {data}\n\n".encode()


def _openai_chat(provider: FakeProvider, ex: _Exchange, model: str) -> None:
    """An OpenAI chat completion (plain or streamed) from ``provider``."""
    text = provider.reply_text(model)
    prompt, completion = provider.usage
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = _now()
    if not ex.json.get("stream"):
        ex.send_json(
            200,
            {
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            },
            {"x-request-id": ident},
        )
        return

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    include_usage = bool((ex.json.get("stream_options") or {}).get("include_usage"))
    with provider._event_stream(ex) as send:
        send(_sse(chunk({"role": "assistant", "content": ""}, None)))
        for piece in _pieces(text):
            send(_sse(chunk({"content": piece}, None)), text_delta=True)
        send(_sse(chunk({}, "stop")))
        if include_usage:
            final = chunk({}, None)
            final["choices"] = []
            final["usage"] = usage
            send(_sse(final))
        send(_sse("[DONE]"))


def _openai_models(ex: _Exchange, models: Iterable[str], owner: str) -> None:
    ex.send_json(
        200,
        {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": owner}
                for m in models
            ],
        },
    )


_AZURE_DEPLOYMENT = r"/openai/deployments/(?P<deployment>[^/]+)"


class FakeOpenAI(FakeProvider):
    """OpenAI's API: ``/v1/chat/completions``, ``/v1/embeddings``, ``/v1/models``.

    Also answers Azure OpenAI's deployment paths
    (``/openai/deployments/<name>/chat/completions``, key in the ``api-key`` header).
    Point clients at ``api_base`` (the URL with ``/v1``).
    """

    default_name = "fake-openai"

    def __init__(self, *, models: Iterable[str] = ("gpt-4o-mini", "gpt-4o", "gpt-4"), **kwargs):
        self.models = list(models)
        super().__init__(**kwargs)

    @property
    def api_base(self) -> str:
        return f"{self.url}/v1"

    def _routes(self):
        return [
            ("POST", r"(?:/v1)?/chat/completions", self._chat, True),
            ("POST", _AZURE_DEPLOYMENT + r"/chat/completions", self._chat, True),
            ("POST", r"(?:/v1)?/embeddings", self._embeddings, True),
            ("POST", _AZURE_DEPLOYMENT + r"/embeddings", self._embeddings, True),
            ("GET", r"(?:/v1)?/models", self._models, False),
        ]

    def _presented_key(self, ex: _Exchange) -> str | None:
        if "api-key" in ex.headers:  # Azure's header
            return ex.headers["api-key"]
        return super()._presented_key(ex)

    def _error(self, ex, status, kind, message, headers=None):
        error_type, code = {
            401: ("invalid_request_error", "invalid_api_key"),
            404: ("invalid_request_error", "unknown_url"),
            405: ("invalid_request_error", "method_not_supported"),
            429: ("requests", "rate_limit_exceeded"),
            500: ("server_error", None),
        }.get(status, ("invalid_request_error", None))
        if status == 401:
            message = "Incorrect API key provided."
        ex.send_json(
            status,
            {"error": {"message": message, "type": error_type, "param": None, "code": code}},
            headers,
        )

    def _model(self, ex: _Exchange) -> str:
        deployment = ex.match.groupdict().get("deployment") if ex.match else None
        return deployment or str(ex.json.get("model") or "unknown")

    def _chat(self, ex: _Exchange) -> None:
        if not isinstance(ex.json.get("messages"), list):
            self._error(ex, 400, "invalid", "'messages' is a required property")
            return
        _openai_chat(self, ex, self._model(ex))

    def _embeddings(self, ex: _Exchange) -> None:
        inputs = ex.json.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        prompt = self.usage[0]
        ex.send_json(
            200,
            {
                "object": "list",
                "model": self._model(ex),
                "data": [
                    {"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3, 0.4]}
                    for i in range(len(items))
                ],
                "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
            },
        )

    def _models(self, ex: _Exchange) -> None:
        _openai_models(ex, self.models, "fake-openai")


class FakeAnthropic(FakeProvider):
    """Anthropic's Messages API: ``POST /v1/messages`` (streamed too), ``GET /v1/models``.

    The key goes in ``x-api-key``; ``api_base`` is the bare URL (clients add ``/v1/...``).
    """

    default_name = "fake-anthropic"

    def __init__(
        self,
        *,
        models: Iterable[str] = ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"),
        **kwargs,
    ):
        self.models = list(models)
        super().__init__(**kwargs)

    def _routes(self):
        return [
            ("POST", r"/v1/messages", self._messages, True),
            ("POST", r"/v1/messages/count_tokens", self._count_tokens, False),
            ("GET", r"/v1/models", self._models, False),
        ]

    def _presented_key(self, ex: _Exchange) -> str | None:
        return ex.headers.get("x-api-key")

    def _error(self, ex, status, kind, message, headers=None):
        error_type = {
            400: "invalid_request_error",
            401: "authentication_error",
            404: "not_found_error",
            405: "invalid_request_error",
            429: "rate_limit_error",
            500: "api_error",
        }.get(status, "api_error")
        if status == 401:
            message = "invalid x-api-key"
        ex.send_json(
            status,
            {"type": "error", "error": {"type": error_type, "message": message}},
            {"request-id": f"req_{uuid.uuid4().hex[:24]}", **(headers or {})},
        )

    def _messages(self, ex: _Exchange) -> None:
        body = ex.json
        for field in ("model", "messages", "max_tokens"):
            if field not in body:
                self._error(ex, 400, "invalid", f"{field}: Field required")
                return
        model = str(body["model"])
        text = self.reply_text(model)
        input_tokens, output_tokens = self.usage
        ident = f"msg_{uuid.uuid4().hex[:24]}"
        headers = {"request-id": f"req_{uuid.uuid4().hex[:24]}"}
        usage = {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        message = {
            "id": ident,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
        if not body.get("stream"):
            ex.send_json(200, message, headers)
            return
        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "usage": {**usage, "output_tokens": 1},
        }
        with self._event_stream(ex) as send:
            send(_sse({"type": "message_start", "message": start}, "message_start"))
            send(
                _sse(
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "text", "text": ""},
                    },
                    "content_block_start",
                )
            )
            send(_sse({"type": "ping"}, "ping"))
            for piece in _pieces(text):
                delta = {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                }
                send(_sse(delta, "content_block_delta"), text_delta=True)
            send(_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
            send(
                _sse(
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                        "usage": {"output_tokens": output_tokens},
                    },
                    "message_delta",
                )
            )
            send(_sse({"type": "message_stop"}, "message_stop"))

    def _count_tokens(self, ex: _Exchange) -> None:
        ex.send_json(200, {"input_tokens": self.usage[0]})

    def _models(self, ex: _Exchange) -> None:
        data = [
            {
                "type": "model",
                "id": m,
                "display_name": m,
                "created_at": "2025-01-01T00:00:00Z",
            }
            for m in self.models
        ]
        ex.send_json(
            200,
            {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            },
        )


# -- command line -------------------------------------------------------------------------


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localcluster.fakes",
        description="Serve fake OpenAI / Anthropic upstreams until SIGTERM.",
    )
    parser.add_argument("--openai", type=_host_port, metavar="HOST:PORT")
    parser.add_argument("--anthropic", type=_host_port, metavar="HOST:PORT")
    parser.add_argument("--openai-key", help="require this key (401 otherwise)")
    parser.add_argument("--anthropic-key", help="require this key (401 otherwise)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument(
        "--chunk-delay", type=float, default=0.0, help="seconds between the events of a stream"
    )
    parser.add_argument("--prompt-tokens", type=int, default=10)
    parser.add_argument("--completion-tokens", type=int, default=5)
    args = parser.parse_args(argv)
    if not (args.openai or args.anthropic):
        parser.error("give at least one of --openai, --anthropic")

    common = {
        "delay": args.delay,
        "chunk_delay": args.chunk_delay,
        "usage": (args.prompt_tokens, args.completion_tokens),
    }
    fakes: list[tuple[FakeProvider, tuple[str, int]]] = []
    if args.openai:
        fakes.append((FakeOpenAI(required_key=args.openai_key, **common), args.openai))
    if args.anthropic:
        fakes.append((FakeAnthropic(required_key=args.anthropic_key, **common), args.anthropic))

    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    try:
        for fake, (host, port) in fakes:
            fake.start(host, port)
            print(f"{fake.name} serving at {fake.url}", flush=True)
        while not done.wait(1):
            pass
    finally:
        for fake, _ in fakes:
            fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
