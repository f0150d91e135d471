"""The gateway's access rules against the real litellm proxy, exactly as llmroute renders it.

One route with two models on two fake OpenAI upstreams, `cheap` and `smart`; a caller allowed
only `cheap`; the route's master key. The proxy runs as the rendered pod says (the process
runner's plan_proxy_launch: its args, env, ConfigMap files and Secret files), on a loopback
address of its own, without a cluster.

Every route LiteLLM 1.106.2's app serves (its lazily registered features included) is tried,
as the `cheap` caller, with `smart` named in every place a request can name a model: the URL's
path parameters, the body's model and fallbacks, the query, LiteLLM's model header. The `smart`
upstream must see none of it, while `cheap` still answers on the caller's endpoints.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import http.client
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llmroute.payloads import gateway_auth
from localcluster import (
    FakeOpenAI,
    ManagedProcess,
    ProxyLaunch,
    launch_proxy,
    plan_proxy_launch,
    wait_for,
    wait_http_ok,
)
from localcluster.runner import FileContent, sync_files
from manifests import render_manifest

pytestmark = pytest.mark.e2e

NAMESPACE = "access"
# A loopback address of its own (the local cluster's pods use 127.0.1.0/24, the gateway
# benchmark 127.0.3.0/24).
PROXY_IP = "127.0.5.1"
MASTER_KEY = "sk-access-master-5f0c2a9e"
CHEAP_CALLER_KEY = "sk-access-cheap-only-71d3"
START_TIMEOUT = 240.0  # 6-30 s; far more while other suites load the machine
ATTACK = "smart"
MESSAGES = [{"role": "user", "content": "Hello"}]


def route_manifest(cheap: FakeOpenAI, smart: FakeOpenAI) -> dict[str, Any]:
    def model(name: str, fake: FakeOpenAI) -> dict[str, Any]:
        target = {
            "provider": "openai",
            "model": "gpt-4o-mini",
            "apiBase": fake.api_base,
            "apiKeySecretRef": {"name": "provider-keys", "key": "openai"},
        }
        return {"name": name, "targets": [target]}

    return {
        "apiVersion": "llmroute.dev/v1alpha1",
        "kind": "LLMRoute",
        "metadata": {"name": "gw", "namespace": NAMESPACE},
        "spec": {
            "models": [model("cheap", cheap), model("smart", smart)],
            # One attempt per request: a request that reached an upstream shows at once.
            "router": {"numRetries": 0},
            "auth": {
                "masterKeySecretRef": {"name": "gw-admin", "key": "token"},
                "callers": [
                    {
                        "name": "cheap-only",
                        "keySecretRef": {"name": "caller-keys", "key": "cheap-only"},
                        "models": ["cheap"],
                    }
                ],
            },
        },
    }


def secret(data: dict[str, str]) -> dict[str, Any]:
    return {"data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


@dataclass
class Gateway:
    url: str
    cheap: FakeOpenAI
    smart: FakeOpenAI
    launch: ProxyLaunch
    process: ManagedProcess

    def key_file(self, name: str) -> Path:
        """The local path of a mounted key file (e.g. "master/token")."""
        keys = self.launch.mounts[gateway_auth.DEFAULT_KEYS_DIR + "/" + name.split("/")[0]]
        return keys / name.split("/", 1)[1]

    def write_key(self, name: str, value: bytes | None) -> None:
        """Change a mounted key the way kubelet does: the file replaced, or removed."""
        path = self.key_file(name)
        files = {p: f for p, f in self.launch.files.items() if p != path}
        if value is not None:
            files[path] = FileContent(value, self.launch.files[path].mode)
        sync_files(files, (), previous=self.launch.files)


def call(
    gateway: Gateway,
    method: str,
    path: str,
    key: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    request = urllib.request.Request(
        gateway.url + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            **(headers or {}),
        },
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=120) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        # A route that drops the connection answered nothing; what the upstreams saw counts.
        return 0, repr(error)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("access-gateway")
    cheap, smart = FakeOpenAI(name="fake-cheap"), FakeOpenAI(name="fake-smart")
    # On loopback, the one network the guard below lets the proxy reach.
    cheap.start("127.0.0.1")
    smart.start("127.0.0.1")
    try:
        rendered = render_manifest(route_manifest(cheap, smart))
        config_map = next(o for o in rendered.objects if o["kind"] == "ConfigMap")
        deployment = next(o for o in rendered.objects if o["kind"] == "Deployment")
        pod = {
            "metadata": {"name": "gw-litellm-0", "namespace": NAMESPACE},
            "spec": copy.deepcopy(deployment["spec"]["template"]["spec"]),
            "status": {"podIP": PROXY_IP},
        }
        launch = plan_proxy_launch(
            pod,
            secrets={
                "provider-keys": secret({"openai": "sk-upstream-access"}),
                "gw-admin": secret({"token": MASTER_KEY}),
                "caller-keys": secret({"cheap-only": CHEAP_CALLER_KEY}),
            },
            configmaps={config_map["metadata"]["name"]: config_map},
            pod_dir=workdir / "pod",
        )
        # Whatever the proxy would send beyond loopback goes to a closed local port.
        guard = "http://127.0.0.1:9"
        env = {**launch.env, "HTTP_PROXY": guard, "HTTPS_PROXY": guard}
        env["NO_PROXY"] = "127.0.0.1,localhost"
        launch = dataclasses.replace(launch, env=env)
        process = launch_proxy(launch, workdir / "litellm.log")
        try:
            wait_http_ok(launch.health_url, timeout=START_TIMEOUT, process=process)
            yield Gateway(launch.url, cheap, smart, launch, process)
        finally:
            process.stop()
    finally:
        cheap.stop()
        smart.stop()


@pytest.fixture(autouse=True)
def fresh_counts(gateway: Gateway) -> None:
    gateway.cheap.reset()
    gateway.smart.reset()


# -- every route LiteLLM serves ---------------------------------------------------------------


@dataclass(frozen=True)
class ServedRoute:
    methods: tuple[str, ...]
    template: str
    params: tuple[str, ...]

    def path(self, value: str) -> str:
        return re.sub(r"\{[^}]+\}", value, self.template)


WEBSOCKET = "WEBSOCKET"


def litellm_routes() -> list[ServedRoute]:
    """Every HTTP and WebSocket route of LiteLLM's app, its lazily registered features
    included (methods ("WEBSOCKET",) for a WebSocket route)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts
    from litellm.proxy._lazy_features import register_all_features
    from litellm.proxy.proxy_server import app

    register_all_features(app)
    routes = {}
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute):
            methods = tuple(sorted(set(context.methods or ()) - {"HEAD", "OPTIONS"}))
        elif isinstance(route, APIWebSocketRoute):
            methods = (WEBSOCKET,)
        else:
            continue  # mounted static files
        params = tuple(route.param_convertors)
        routes[(route.path, methods)] = ServedRoute(methods, route.path, params)
    return sorted(routes.values(), key=lambda r: (r.template, r.methods))


def open_websocket(gateway: Gateway, path: str, key: str) -> None:
    """Open a WebSocket and send one request on it, as a realtime client does."""
    from websockets.exceptions import WebSocketException
    from websockets.sync.client import connect

    url = gateway.url.replace("http://", "ws://") + path
    headers = {"Authorization": f"Bearer {key}"}
    try:
        with connect(url, additional_headers=headers, open_timeout=60, proxy=None) as socket:
            socket.send(json.dumps({"type": "response.create", "response": {"model": ATTACK}}))
            socket.recv(timeout=10)
    except (WebSocketException, OSError, TimeoutError):
        pass  # refused or closed: what the smart upstream saw is what counts


def attempts(route: ServedRoute) -> Iterator[tuple[str, str, dict[str, Any], dict[str, str]]]:
    """(method, path, body, headers): `smart` named everywhere, then only in the URL with the
    body naming `cheap` (the URL's model is the one LiteLLM serves), then only as fallbacks."""
    everywhere = {
        "model": ATTACK,
        "messages": MESSAGES,
        "input": "Hello",
        "prompt": "Hello",
        "target_model_names": ATTACK,
    }
    header = {"x-litellm-model": ATTACK}
    fallbacks = {
        "model": "cheap",
        "messages": MESSAGES,
        "input": "Hello",
        "prompt": "Hello",
        "fallbacks": [ATTACK],
        "context_window_fallbacks": [{"cheap": [ATTACK]}],
        # Fail the first attempt so a fallback would be taken.
        "mock_testing_fallbacks": True,
    }
    for method in route.methods:
        path = route.path(ATTACK)
        yield method, f"{path}?model={ATTACK}", everywhere, header
        if route.params:
            yield method, path, {**everywhere, "model": "cheap"}, {}
        yield method, path, fallbacks, {}


def test_no_route_lets_a_caller_reach_a_model_outside_its_allowlist(gateway: Gateway) -> None:
    routes = litellm_routes()
    # The enumeration is LiteLLM's whole app, the routes that name a model in their URL too.
    templates = {r.template for r in routes}
    assert len(routes) > 500
    assert {
        "/engines/{model:path}/chat/completions",
        "/v1beta/models/{model_name:path}:generateContent",
        "/v1/messages",
        "/v1/realtime",
    } <= templates
    reached = []
    tried = 0
    for route in routes:
        for method, path, body, headers in attempts(route):
            if method == WEBSOCKET:
                open_websocket(gateway, path, CHEAP_CALLER_KEY)
                status, text = 0, ""
            else:
                status, text = call(gateway, method, path, CHEAP_CALLER_KEY, body, headers)
            tried += 1
            if gateway.smart.request_count:
                reached.append((method, path, status, text[:200]))
                gateway.smart.reset()
    assert reached == [], f"{len(reached)} of {tried} requests reached the smart upstream"
    assert gateway.smart.request_count == 0
    assert gateway.process.alive, gateway.process.tail()


CHEAP_WORKS = [
    ("/v1/chat/completions", {"model": "cheap", "messages": MESSAGES}),
    ("/chat/completions", {"model": "cheap", "messages": MESSAGES}),
    ("/engines/cheap/chat/completions", {"messages": MESSAGES}),
    ("/openai/deployments/cheap/chat/completions", {"model": "cheap", "messages": MESSAGES}),
    ("/v1/embeddings", {"model": "cheap", "input": "Hello"}),
    ("/engines/cheap/embeddings", {"input": "Hello"}),
    (
        "/v1beta/models/cheap:generateContent",
        {"contents": [{"role": "user", "parts": [{"text": "Hello"}]}]},
    ),
    (
        "/v1/chat/completions",
        {"model": "cheap", "messages": MESSAGES, "fallbacks": ["cheap"]},
    ),
]


@pytest.mark.parametrize(("path", "body"), CHEAP_WORKS, ids=[p for p, _ in CHEAP_WORKS])
def test_the_caller_still_reaches_its_model(gateway: Gateway, path: str, body: dict) -> None:
    status, text = call(gateway, "POST", path, CHEAP_CALLER_KEY, body)
    assert status == 200, text
    assert gateway.cheap.request_count == 1
    assert gateway.smart.request_count == 0


def test_the_listing_routes_answer_the_caller(gateway: Gateway) -> None:
    for path in ("/models", "/v1/models", "/v1/models/cheap"):
        status, text = call(gateway, "GET", path, CHEAP_CALLER_KEY)
        assert status == 200, (path, text)
    status, _ = call(gateway, "GET", "/v1/models/smart", CHEAP_CALLER_KEY)
    assert status == 403


def test_the_url_model_wins_and_a_different_body_model_is_refused(gateway: Gateway) -> None:
    body = {"model": "cheap", "messages": MESSAGES}
    status, text = call(gateway, "POST", "/engines/smart/chat/completions", CHEAP_CALLER_KEY, body)
    assert status == 400, text
    assert "'smart'" in text and "'cheap'" in text
    # The master key may use smart, but not with two models named either.
    status, text = call(gateway, "POST", "/engines/smart/chat/completions", MASTER_KEY, body)
    assert status == 400, text
    status, text = call(
        gateway, "POST", "/engines/smart/chat/completions", MASTER_KEY, {"messages": MESSAGES}
    )
    assert status == 200, text
    assert (gateway.smart.request_count, gateway.cheap.request_count) == (1, 0)


# -- the master key: from its file only ------------------------------------------------------


def test_litellm_itself_does_not_take_the_routes_master_key(gateway: Gateway) -> None:
    """LiteLLM's own master key (its UI login, session signing) is a random one of each
    worker, so the route's key, revocable in its file, opens nothing on LiteLLM's own paths."""
    form = urllib.parse.urlencode({"username": "admin", "password": MASTER_KEY}).encode()
    request = urllib.request.Request(gateway.url + "/login", data=form, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect())
    try:
        with opener.open(request, timeout=60) as response:
            status, cookies = response.status, response.headers.get_all("set-cookie") or []
    except urllib.error.HTTPError as error:
        status, cookies = error.code, error.headers.get_all("set-cookie") or []
    assert status in (400, 401, 403), status
    assert not cookies


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def chat(gateway: Gateway, key: str) -> int:
    status, _ = call(
        gateway, "POST", "/v1/chat/completions", key, {"model": "cheap", "messages": MESSAGES}
    )
    return status


def test_emptying_the_master_key_revokes_it_without_a_restart(gateway: Gateway) -> None:
    pid = gateway.process.pid
    assert chat(gateway, MASTER_KEY) == 200
    try:
        gateway.write_key("master/token", b"")
        # The hook looks at its key files no more than once a second.
        wait_for(lambda: chat(gateway, MASTER_KEY) == 401, timeout=30, what="the emptied key")
        gateway.write_key("master/token", None)  # the key removed from its Secret
        assert chat(gateway, MASTER_KEY) == 401
        rotated = "sk-access-master-rotated-77"
        gateway.write_key("master/token", rotated.encode())
        wait_for(lambda: chat(gateway, rotated) == 200, timeout=30, what="the rotated key")
        assert chat(gateway, MASTER_KEY) == 401
    finally:
        gateway.write_key("master/token", MASTER_KEY.encode())
    wait_for(lambda: chat(gateway, MASTER_KEY) == 200, timeout=30, what="the restored key")
    assert gateway.process.pid == pid and gateway.process.alive
