"""A small client for services that call an llmroute gateway.

The gateway speaks the OpenAI HTTP API, so any OpenAI SDK works against it. This client adds
what a service calling a governed gateway wants on top, and nothing else:

- configuration from the environment (``LLMROUTE_URL``, ``LLMROUTE_API_KEY``);
- task tags in the form the gateway counts spend by (``task:<name>``);
- retries with exponential backoff and jitter on 429, 5xx and connection failures,
  honouring ``Retry-After``;
- one exception per kind of failure, whose text names the status, the gateway's message
  and the URL, and never the key.

It uses only the standard library and imports nothing from the rest of llmroute, so a
service may copy this one file instead of installing the operator's package.

    from llmroute.client import LLMRouteClient

    gateway = LLMRouteClient()  # LLMROUTE_URL, LLMROUTE_API_KEY
    result = gateway.chat("smart", "Summarise: ...", task="summarize")
    print(result.content, result.usage.total_tokens, result.response_cost)

    with gateway.chat_stream("smart", "Tell a story.", task="stories") as stream:
        for chunk in stream:
            print(chunk.content, end="", flush=True)
    print(stream.usage)
"""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import random
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Final, TypeVar

__all__ = [
    "API_KEY_ENV",
    "URL_ENV",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "ChatChunk",
    "ChatResult",
    "ChatStream",
    "ConfigurationError",
    "GatewayTimeout",
    "GatewayUnreachable",
    "LLMRouteClient",
    "LLMRouteError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "Usage",
    "call_llm",
]

URL_ENV: Final = "LLMROUTE_URL"
API_KEY_ENV: Final = "LLMROUTE_API_KEY"
# The gateway's per-task metrics count request tags of this form
# (litellm_settings.custom_prometheus_tags: ["task:<name>", ...]).
TASK_TAG_PREFIX: Final = "task:"
# How long a Retry-After may make one wait last; a gateway asking for longer gets its
# request retried sooner rather than a caller blocked for minutes.
DEFAULT_MAX_RETRY_WAIT: Final = 30.0
# A liveness check that takes longer than this has failed, whatever the request timeout.
HEALTH_TIMEOUT: Final = 10.0
# Error types the gateway uses for a 429 that waiting a few seconds will not cure.
_EXHAUSTED_TYPES: Final = frozenset({"budget_exceeded", "insufficient_quota"})
_MESSAGE_LIMIT: Final = 500
# The data line that ends an OpenAI-format event stream.
_STREAM_END: Final = "[DONE]"
_USER_AGENT: Final = f"llmroute-client python/{sys.version_info.major}.{sys.version_info.minor}"

Message = Mapping[str, Any]
_T = TypeVar("_T")


# -- errors ------------------------------------------------------------------------------


class LLMRouteError(Exception):
    """Any failure of a gateway call.

    ``status`` is the HTTP status (None when no answer came), ``message`` the gateway's own
    words, ``url`` the URL called; ``error_type`` and ``code`` come from the OpenAI-format
    error body when it has them, ``body`` is that body decoded (JSON, else text).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        url: str | None = None,
        method: str | None = None,
        error_type: str | None = None,
        code: str | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.url = url
        self.method = method
        self.error_type = error_type
        self.code = code
        self.body = body
        self.headers: dict[str, str] = dict(headers or {})
        self.attempts = attempts

    def __str__(self) -> str:
        parts = []
        if self.status is not None:
            parts.append(f"{self.status} {_reason(self.status)}".rstrip())
        if self.url:
            target = f"{self.method} {self.url}" if self.method else self.url
            parts.append(f"from {target}" if self.status is not None else target)
        head = " ".join(parts)
        text = f"{head}: {self.message}" if head else self.message
        if self.attempts > 1:
            text += f" (after {self.attempts} attempts)"
        return text


class ConfigurationError(LLMRouteError, ValueError):
    """The client lacks its gateway URL or key, or was given unusable settings."""


class AuthenticationError(LLMRouteError):
    """401: the key is missing, wrong or revoked (403 raises the subclass below)."""


class PermissionDeniedError(AuthenticationError):
    """403: the key is valid but may not use this model, tag or endpoint."""


class BadRequestError(LLMRouteError):
    """400, 422 or another 4xx: the gateway refused the request as sent."""


class NotFoundError(LLMRouteError):
    """404: no such model or endpoint on the gateway."""


class RateLimitError(LLMRouteError):
    """429, still after the retries; ``retry_after`` is the gateway's last Retry-After."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after

    def __str__(self) -> str:
        text = super().__str__()
        if self.retry_after is not None:
            text += f"; retry after {self.retry_after:g}s"
        return text


class BudgetExceededError(RateLimitError):
    """429 because a budget is spent (a ModelQuota with action reject): not retried."""


class ServerError(LLMRouteError):
    """5xx, still after the retries: the gateway or every provider behind it failed."""


class GatewayUnreachable(LLMRouteError, ConnectionError):
    """No connection to the gateway (refused, reset, name not resolved), after the retries."""


class GatewayTimeout(LLMRouteError, TimeoutError):
    """No complete answer within the timeout, after the retries."""


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


_STATUS_ERRORS: Final[dict[int, type[LLMRouteError]]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: BadRequestError,
    429: RateLimitError,
}


def _error_class(
    status: int | None, error_type: str | None, code: str | None
) -> type[LLMRouteError]:
    if status is None:
        return LLMRouteError
    if status >= 500:
        return ServerError
    if status == 429 and (error_type in _EXHAUSTED_TYPES or code in _EXHAUSTED_TYPES):
        return BudgetExceededError
    return _STATUS_ERRORS.get(status, BadRequestError if status >= 400 else LLMRouteError)


# -- results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


@dataclass(frozen=True)
class ChatResult:
    """One chat completion.

    ``model`` is the model as the answer names it (the gateway reports the route's model
    name); ``served_by`` the target that answered (``x-litellm-model-name``, e.g.
    ``openai/gpt-4o-mini``), which shows a fallback; ``response_cost`` the gateway's cost of
    the call in USD (``x-litellm-response-cost``); both None when the gateway does not say.
    ``headers`` are the response headers, names lower-cased; ``raw`` is the decoded answer;
    ``attempts`` counts this client's tries (retries included).
    """

    content: str
    model: str
    usage: Usage
    raw: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)
    finish_reason: str | None = None
    attempts: int = 1

    @property
    def response_cost(self) -> float | None:
        return _float(self.headers.get("x-litellm-response-cost"))

    @property
    def served_by(self) -> str | None:
        return self.headers.get("x-litellm-model-name")

    @property
    def id(self) -> str | None:
        value = self.raw.get("id")
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class ChatChunk:
    """One chunk of a streamed chat completion.

    ``content`` is the first choice's text delta (``""`` for chunks without text: the
    opening role, the finish, tool calls, the final usage); ``usage`` is set on the chunk that
    carries the final usage; ``raw`` is the decoded chunk.
    """

    content: str
    raw: dict[str, Any]
    finish_reason: str | None = None
    usage: Usage | None = None


class ChatStream:
    """A streamed chat completion, as ``chat_stream()`` returns it.

    Iterating yields ``ChatChunk``s as the gateway sends them. ``content`` is the text so
    far; once the stream has ended, ``usage`` is the final usage (None when the gateway sent
    none) and ``finish_reason`` the first choice's. ``served_by``, ``headers`` and
    ``attempts`` are known from the start, as for ``ChatResult``. A failure after the first
    chunk raises the matching LLMRouteError from the iteration, without a retry.
    """

    def __init__(
        self,
        answer: http.client.HTTPResponse,
        headers: Mapping[str, str],
        *,
        url: str,
        model: str,
        attempts: int,
        timeout: float,
        redact: Callable[[str], str],
    ) -> None:
        self._answer = answer
        self._events = _sse_data(answer)
        self._timeout = timeout
        self._redact = redact
        self._first: ChatChunk | None = None
        self._closed = False
        self._parts: list[str] = []
        self.url = url
        self.headers: Mapping[str, str] = dict(headers)
        self.attempts = attempts
        self.model = model
        self.id: str | None = None
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.done = False

    def _read_first(self) -> None:
        """Read up to the first chunk. Failures come out raw (a transport error, or an
        LLMRouteError the stream reported), for the retry loop to judge."""
        self._first = self._read_chunk()

    @property
    def content(self) -> str:
        return "".join(self._parts)

    @property
    def served_by(self) -> str | None:
        return self.headers.get("x-litellm-model-name")

    def __iter__(self) -> Iterator[ChatChunk]:
        return self

    def __next__(self) -> ChatChunk:
        chunk, self._first = self._first, None
        if chunk is None:
            try:
                chunk = self._read_chunk()
            except LLMRouteError:  # reported by the gateway; some are OSErrors too
                raise
            except (OSError, http.client.HTTPException) as e:
                raise self._broken(e) from None
        if chunk is None:
            raise StopIteration
        return chunk

    def text(self) -> Iterator[str]:
        """The text deltas only, skipping chunks without text."""
        for chunk in self:
            if chunk.content:
                yield chunk.content

    def close(self) -> None:
        """Release the connection; a stream read to its end is closed already."""
        if not self._closed:
            self._closed = True
            self._answer.close()

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "done" if self.done else "open"
        return f"ChatStream(url={self.url!r}, model={self.model!r}, {state})"

    def _read_chunk(self) -> ChatChunk | None:
        """The next chunk; None at the end of the stream."""
        if self.done or self._closed:
            return None
        try:
            while True:
                data = next(self._events, None)
                if data is None:
                    raise ConnectionResetError(f"no {_STREAM_END} before the stream ended")
                if data.strip() == _STREAM_END:
                    self.done = True
                    self.close()
                    return None
                chunk = self._chunk(data)
                if chunk is not None:
                    return chunk
        except BaseException:
            self.close()
            raise

    def _broken(self, error: BaseException) -> LLMRouteError:
        if isinstance(error, TimeoutError):
            return GatewayTimeout(
                f"no further chunk within {self._timeout:g}s",
                url=self.url,
                method="POST",
                headers=self.headers,
                attempts=self.attempts,
            )
        text = self._redact(str(error) or type(error).__name__)
        return GatewayUnreachable(
            f"the stream broke off: {text}",
            url=self.url,
            method="POST",
            headers=self.headers,
            attempts=self.attempts,
        )

    def _chunk(self, data: str) -> ChatChunk | None:
        """A ChatChunk from one event's data; None for data that is not a chunk."""
        try:
            payload = json.loads(data)
        except ValueError:
            raise LLMRouteError(
                f"the stream sent data that is not JSON: {_clip(data)!r}",
                status=self._answer.status,
                url=self.url,
                method="POST",
                headers=self.headers,
                attempts=self.attempts,
            ) from None
        if not isinstance(payload, dict):
            return None
        if "error" in payload:
            raise self._stream_error(payload)
        if isinstance(payload.get("model"), str):
            self.model = payload["model"]
        if isinstance(payload.get("id"), str):
            self.id = payload["id"]
        usage = payload.get("usage")
        chunk_usage = _usage(usage) if isinstance(usage, dict) else None
        if chunk_usage is not None:
            self.usage = chunk_usage
        content, finish_reason = "", None
        choices = payload.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            delta = choices[0].get("delta")
            text = delta.get("content") if isinstance(delta, dict) else None
            content = text if isinstance(text, str) else ""
            reason = choices[0].get("finish_reason")
            finish_reason = reason if isinstance(reason, str) else None
        if content:
            self._parts.append(content)
        if finish_reason is not None:
            self.finish_reason = finish_reason
        return ChatChunk(content, payload, finish_reason, chunk_usage)

    def _stream_error(self, payload: dict[str, Any]) -> LLMRouteError:
        """The error the gateway reported inside the stream (its status in ``code``)."""
        body, message, error_type, code = _error_details(self._redact(json.dumps(payload)))
        status = int(code) if code is not None and code.isdigit() else None
        cls = _error_class(status, error_type, code)
        kwargs: dict[str, Any] = {
            "status": status,
            "url": self.url,
            "method": "POST",
            "error_type": error_type,
            "code": code,
            "body": body,
            "headers": self.headers,
            "attempts": self.attempts,
        }
        return cls(message or "the stream ended with an error", **kwargs)


@dataclass(frozen=True)
class _Response:
    status: int
    headers: dict[str, str]
    body: bytes
    attempts: int

    def json(self, url: str, method: str) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise LLMRouteError(
                f"the answer is not JSON: {_clip(self.body.decode(errors='replace'))!r}",
                status=self.status,
                url=url,
                method=method,
                headers=self.headers,
                attempts=self.attempts,
            ) from None


# -- the client --------------------------------------------------------------------------


class LLMRouteClient:
    """A client for one gateway; safe to share between threads.

    base_url: the gateway's URL, e.g. ``http://llm.platform.svc:4000`` (a trailing ``/v1``
        is accepted, as OpenAI SDKs write it); default ``$LLMROUTE_URL``.
    api_key: the route's master key or a caller's key; default ``$LLMROUTE_API_KEY``.
    timeout: seconds for each attempt (connect and answer).
    max_retries: further attempts after a 429, a 5xx, a timeout or a connection failure;
        0 disables retries.
    backoff: the first wait between attempts, in seconds; it doubles with each retry, with
        jitter, and a Retry-After from the gateway replaces it.
    default_tags: tags added to every chat request.
    caller: this service's name, sent in the User-Agent and the ``x-llmroute-caller``
        header (for access logs; the gateway attributes spend by key).
    max_retry_wait: the longest single wait, whatever Retry-After asks for.
    sleep: how to wait between attempts (tests pass a recorder).
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        default_tags: Iterable[str] = (),
        caller: str | None = None,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        # Values read from Secret files usually end in a newline that is not part of them.
        base_url = (base_url or os.environ.get(URL_ENV) or "").strip()
        api_key = (api_key or os.environ.get(API_KEY_ENV) or "").strip()
        missing = []
        if not base_url:
            missing.append(f"the gateway URL (base_url= or ${URL_ENV})")
        if not api_key:
            missing.append(f"the API key (api_key= or ${API_KEY_ENV})")
        if missing:
            raise ConfigurationError("LLMRouteClient needs " + " and ".join(missing))
        self.base_url = _normalise_base_url(base_url)
        self._api_key = api_key
        if timeout <= 0:
            raise ConfigurationError(f"timeout must be positive, not {timeout!r}")
        if max_retries < 0:
            raise ConfigurationError(f"max_retries must be 0 or more, not {max_retries!r}")
        if backoff < 0 or max_retry_wait < 0:
            raise ConfigurationError("backoff and max_retry_wait must be 0 or more")
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.max_retry_wait = float(max_retry_wait)
        self.default_tags = tuple(_tag_list(default_tags, "default_tags"))
        self.caller = caller
        self._sleep = sleep
        self._opener = urllib.request.build_opener()

    def __repr__(self) -> str:
        # The key stays out of reprs, which end up in logs and tracebacks.
        return f"LLMRouteClient(base_url={self.base_url!r}, caller={self.caller!r})"

    # -- API -----------------------------------------------------------------------------

    def chat(
        self,
        model: str,
        messages: str | Sequence[Message],
        *,
        task: str | None = None,
        tags: Iterable[str] | None = None,
        **params: Any,
    ) -> ChatResult:
        """POST /v1/chat/completions and return the first choice.

        messages: OpenAI chat messages, or a string for a single user message.
        task: the task this call serves; sent as the tag ``task:<task>``, which the gateway
            counts spend and requests by when the route declares the task.
        tags: further request tags (``metadata.tags``), after the client's default tags.
        params: any other chat completion parameter (``temperature``, ``max_tokens``,
            ``user``, ...), sent as given.
        """
        if params.get("stream"):
            raise ConfigurationError("chat() does not stream; call chat_stream() instead")
        body = self._chat_body(model, messages, task, tags, params)
        response = self._request("POST", "/v1/chat/completions", body)
        url = self._url("/v1/chat/completions")
        answer = response.json(url, "POST")
        try:
            choice = answer["choices"][0]
            message = choice.get("message") or {}
        except (KeyError, IndexError, TypeError, AttributeError):
            raise LLMRouteError(
                f"the answer has no choices: {_clip(json.dumps(answer))}",
                status=response.status,
                url=url,
                method="POST",
                body=answer,
                headers=response.headers,
                attempts=response.attempts,
            ) from None
        usage = answer.get("usage")
        return ChatResult(
            content=message.get("content") or "",
            model=str(answer.get("model") or model),
            usage=_usage(usage if isinstance(usage, dict) else {}),
            raw=answer,
            headers=response.headers,
            finish_reason=choice.get("finish_reason"),
            attempts=response.attempts,
        )

    def chat_stream(
        self,
        model: str,
        messages: str | Sequence[Message],
        *,
        task: str | None = None,
        tags: Iterable[str] | None = None,
        **params: Any,
    ) -> ChatStream:
        """POST /v1/chat/completions with ``stream: true``; returns the stream once its first
        chunk has arrived.

        Arguments as for ``chat()``. The request asks for the final usage
        (``stream_options.include_usage``), which the stream exposes as ``usage`` once it has
        ended. Failures before the first chunk are retried as ``chat()`` retries them; once a
        chunk has arrived, a failure raises (the caller has already seen part of the answer).
        ``timeout`` bounds the wait for the answer to start and for each later piece of it.
        Iterate the stream for its chunks; use it in a ``with`` block, or ``close()`` it, to
        release the connection when not reading it to the end.
        """
        if params.get("stream") is False:
            raise ConfigurationError("chat_stream() streams; call chat() for stream=False")
        body = self._chat_body(model, messages, task, tags, params)
        body["stream"] = True
        stream_options = body.get("stream_options")
        if stream_options is not None and not isinstance(stream_options, Mapping):
            raise ConfigurationError(f"stream_options must be a mapping, not {stream_options!r}")
        body["stream_options"] = {"include_usage": True, **(stream_options or {})}
        url = self._url("/v1/chat/completions")

        def start(
            answer: http.client.HTTPResponse, headers: dict[str, str], attempt: int
        ) -> ChatStream:
            stream = ChatStream(
                answer,
                headers,
                url=url,
                model=model,
                attempts=attempt,
                timeout=self.timeout,
                redact=self._redact,
            )
            stream._read_first()  # in the retry loop: what fails up to here is retried
            return stream

        return self._send("POST", "/v1/chat/completions", body, start, "text/event-stream")

    def _chat_body(
        self,
        model: str,
        messages: str | Sequence[Message],
        task: str | None,
        tags: Iterable[str] | None,
        params: Mapping[str, Any],
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "messages": _messages(messages), **params}
        request_tags = list(self.default_tags)
        request_tags += _tag_list(tags or (), "tags")
        if task is not None:
            request_tags.append(_task_tag(task))
        if request_tags:
            metadata = dict(body.get("metadata") or {})
            request_tags = _tag_list(metadata.get("tags") or (), "metadata.tags") + request_tags
            metadata["tags"] = list(dict.fromkeys(request_tags))  # ordered, without repeats
            body["metadata"] = metadata
        return body

    def models(self) -> list[str]:
        """GET /v1/models: the model names this key may use."""
        response = self._request("GET", "/v1/models", None)
        answer = response.json(self._url("/v1/models"), "GET")
        data = answer.get("data") if isinstance(answer, dict) else None
        return [m["id"] for m in data or () if isinstance(m, dict) and isinstance(m.get("id"), str)]

    def health(self, timeout: float | None = None) -> bool:
        """Whether the gateway answers its liveness check (GET /health/liveliness).

        One attempt, no key sent, waiting at most ``timeout`` seconds (default: the client's
        timeout, at most 10); False on any failure, never an exception.
        """
        if timeout is None:
            timeout = min(self.timeout, HEALTH_TIMEOUT)
        request = urllib.request.Request(
            self._url("/health/liveliness"), headers={"User-Agent": self._user_agent()}
        )
        try:
            with self._opener.open(request, timeout=timeout) as answer:
                answer.read()
                return answer.status == 200
        except Exception:
            return False

    # -- HTTP --------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return self.base_url + path

    def _user_agent(self) -> str:
        return f"{_USER_AGENT} caller/{self.caller}" if self.caller else _USER_AGENT

    def _request(self, method: str, path: str, body: Any) -> _Response:
        def read(answer: http.client.HTTPResponse, headers: dict[str, str], attempt: int):
            with answer:
                return _Response(answer.status, headers, answer.read(), attempt)

        return self._send(method, path, body, read, "application/json")

    def _send(
        self,
        method: str,
        path: str,
        body: Any,
        read: Callable[[http.client.HTTPResponse, dict[str, str], int], _T],
        accept: str,
    ) -> _T:
        """Send the request, retrying what may heal, and hand the successful answer to read.

        What read raises is retried too: a transport failure, or an LLMRouteError with a
        retryable status. read owns the answer (closes it or hands it on); it is closed
        here when read fails.
        """
        url = self._url(path)
        headers = {
            "Authorization": f"Bearer {self._api_key}",
            "Accept": accept,
            "User-Agent": self._user_agent(),
        }
        if self.caller:
            headers["x-llmroute-caller"] = self.caller
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"

        attempt = 0
        while True:
            attempt += 1
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            error: LLMRouteError
            retry_after: float | None = None
            try:
                answer = self._opener.open(request, timeout=self.timeout)
                try:
                    return read(answer, _lower(answer.headers.items()), attempt)
                except BaseException:
                    answer.close()
                    raise
            except urllib.error.HTTPError as e:
                with e:
                    error = self._status_error(e, url, method, attempt)
                if not _retryable_status(error):
                    raise error from None
                retry_after = _retry_after_header(error.headers)
            except LLMRouteError as e:  # an error the answer's body reported
                if not _retryable_status(e):
                    raise
                error = e
            except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, resets
                error = self._transport_error(e, url, method, attempt)
            if attempt > self.max_retries:
                raise error from None
            self._sleep(self._wait(attempt, retry_after))

    def _wait(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_wait)
        # "Equal jitter": at least half the exponential step, so retries still back off,
        # the rest random, so clients refused together do not come back together.
        step = min(self.backoff * 2 ** (attempt - 1), self.max_retry_wait)
        return step / 2 + random.uniform(0, step / 2)

    def _status_error(
        self, e: urllib.error.HTTPError, url: str, method: str, attempt: int
    ) -> LLMRouteError:
        status = e.code
        headers = _lower(e.headers.items()) if e.headers else {}
        try:
            raw = e.read()
        except (OSError, http.client.HTTPException):
            raw = b""
        body, message, error_type, code = _error_details(self._redact(raw.decode(errors="replace")))
        message = message or _reason(status) or "no message"
        cls = _error_class(status, error_type, code)
        kwargs: dict[str, Any] = {
            "status": status,
            "url": url,
            "method": method,
            "error_type": error_type,
            "code": code,
            "body": body,
            "headers": headers,
            "attempts": attempt,
        }
        if issubclass(cls, RateLimitError):
            kwargs["retry_after"] = _retry_after_header(headers)
        return cls(message, **kwargs)

    def _transport_error(
        self, e: BaseException, url: str, method: str, attempt: int
    ) -> LLMRouteError:
        reason = e.reason if isinstance(e, urllib.error.URLError) else e
        if isinstance(reason, TimeoutError):
            return GatewayTimeout(
                f"no answer within {self.timeout:g}s", url=url, method=method, attempts=attempt
            )
        text = str(reason) or type(reason).__name__
        return GatewayUnreachable(
            f"cannot reach the gateway: {self._redact(text)}",
            url=url,
            method=method,
            attempts=attempt,
        )

    def _redact(self, text: str) -> str:
        # Some gateways echo the presented key in their error message. Only whole tokens
        # match, so that a short key does not blank out letters of ordinary words.
        pattern = rf"(?<![A-Za-z0-9]){re.escape(self._api_key)}(?![A-Za-z0-9])"
        return re.sub(pattern, "***", text)


# -- one-off calls -------------------------------------------------------------------------

_CLIENT_OPTIONS: Final = frozenset(
    {
        "base_url",
        "api_key",
        "timeout",
        "max_retries",
        "backoff",
        "default_tags",
        "caller",
        "max_retry_wait",
        "sleep",
    }
)


def call_llm(model: str, messages: str | Sequence[Message], **kwargs: Any) -> str:
    """One chat call with a client configured from the environment; returns the text.

    kwargs: the client's options (``base_url``, ``api_key``, ``timeout``, ``max_retries``,
    ...) and ``chat()``'s (``task``, ``tags``, and any completion parameter).
    """
    options = {k: kwargs.pop(k) for k in list(kwargs) if k in _CLIENT_OPTIONS}
    return LLMRouteClient(**options).chat(model, messages, **kwargs).content


# -- helpers -------------------------------------------------------------------------------


def _normalise_base_url(base_url: str) -> str:
    url = base_url.strip().rstrip("/")
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigurationError(
            f"the gateway URL must look like http://host:port, not {_without_userinfo(url)!r}"
        )
    # OpenAI SDKs are configured with ".../v1"; this client adds the paths itself.
    return url.removesuffix("/v1")


def _without_userinfo(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    if parsed.username is None and parsed.password is None:
        return url
    host = parsed.hostname or ""
    netloc = f"***@{host}" + (f":{parsed.port}" if parsed.port else "")
    return urllib.parse.urlunsplit(parsed._replace(netloc=netloc))


def _messages(messages: str | Sequence[Message]) -> list[Message]:
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    return list(messages)


def _tag_list(tags: Iterable[str] | str, what: str) -> list[str]:
    if isinstance(tags, str):  # a lone tag, not an iterable of one-letter tags
        tags = [tags]
    result = []
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip():
            raise ConfigurationError(f"{what} must be non-empty strings, not {tag!r}")
        result.append(tag.strip())
    return result


def _task_tag(task: str) -> str:
    name = task.strip().removeprefix(TASK_TAG_PREFIX) if isinstance(task, str) else ""
    if not name:
        raise ConfigurationError(f"task must name a task, not {task!r}")
    return TASK_TAG_PREFIX + name


def _lower(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in items}


def _retryable_status(error: LLMRouteError) -> bool:
    if isinstance(error, BudgetExceededError):
        return False
    return error.status is not None and (error.status == 429 or error.status >= 500)


def _retry_after_header(headers: Mapping[str, str]) -> float | None:
    # LiteLLM passes a provider's Retry-After on as llm_provider-retry-after only.
    return _retry_after(headers.get("retry-after") or headers.get("llm_provider-retry-after"))


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    seconds = _float(value)
    if seconds is None:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds)


def _float(value: object) -> float | None:
    if value is None:
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if number == number and number not in (float("inf"), float("-inf")) else None


def _error_details(text: str) -> tuple[Any, str, str | None, str | None]:
    """(decoded body, message, error type, code) from an error answer's text.

    The gateway answers in OpenAI's format, ``{"error": {"message", "type", "code"}}``;
    FastAPI's ``{"detail": ...}`` and a bare ``{"error": "..."}`` occur as well.
    """
    try:
        body: Any = json.loads(text)
    except ValueError:
        return text, _clip(text.strip()), None, None
    message, error_type, code = "", None, None
    if isinstance(body, dict):
        error = body.get("error", body.get("detail"))
        if isinstance(error, dict):
            message = str(error.get("message") or error.get("detail") or "")
            error_type = _str_or_none(error.get("type"))
            code = _str_or_none(error.get("code"))
            if not message:
                message = json.dumps(error)
        elif isinstance(error, str):
            message = error
        elif error is not None:
            message = json.dumps(error)
        else:
            message = str(body.get("message") or json.dumps(body))
    else:
        message = json.dumps(body)
    return body, _clip(message), error_type, code


def _sse_data(answer: http.client.HTTPResponse) -> Iterator[str]:
    """The data of each event of a server-sent event stream, as it arrives.

    Follows the WHATWG rules that matter here: ``data:`` lines of one event are joined with
    newlines, a blank line ends the event, comments (``:``) and other fields are skipped.
    """
    data: list[str] = []
    while True:
        raw = answer.readline()
        if not raw:
            if data:
                yield "\n".join(data)
            return
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value.removeprefix(" "))


def _usage(usage: Mapping[str, Any]) -> Usage:
    return Usage(
        prompt_tokens=_count(usage.get("prompt_tokens")),
        completion_tokens=_count(usage.get("completion_tokens")),
        total_tokens=_count(usage.get("total_tokens")),
    )


def _count(value: object) -> int:
    number = _float(value)
    return int(number) if number is not None else 0


def _str_or_none(value: object) -> str | None:
    return None if value is None or value == "None" else str(value)


def _clip(text: str) -> str:
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 3] + "..."
