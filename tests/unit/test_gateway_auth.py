"""The proxy's auth hook (payloads/gateway_auth.py, shipped as llmroute_auth.py), against key
files in a temporary directory laid out as the rendered pod mounts them."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from llmroute.payloads import file_reread, gateway_auth
from llmroute.payloads.gateway_auth import GatewayAuth, GatewayAuthError, request_tags
from manifests import OLD_RENDER_PLACEHOLDER, render_manifest

GOLDEN = Path(__file__).parent / "golden"
MASTER = "sk-master-0123456789"
BILLING = "billing-key-abcdef"
SUPPORT = "support-key-987654"


def write_atomically(path: Path, text: str) -> None:
    """Replace a file the way kubelet updates a mounted Secret: a new file swapped in."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = path.with_name(f".{path.name}.new")
    fresh.write_text(text)
    os.replace(fresh, path)


class FakeClock:
    """The file re-read helper's clock, moved on by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float = file_reread.REREAD_INTERVAL_SECONDS) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(file_reread, "monotonic", fake)
    return fake


@pytest.fixture
def keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> Path:
    """The rendered policy of golden/callers-access, with keys in a temporary keys directory."""
    route = yaml.safe_load((GOLDEN / "callers-access" / "route.yaml").read_text())
    rendered = render_manifest(route)
    config_map = next(o for o in rendered.objects if o["kind"] == "ConfigMap")
    policy_file = tmp_path / "llmroute_auth.json"
    policy_file.write_text(config_map["data"]["llmroute_auth.json"])
    keys_dir = tmp_path / "keys"
    policy = json.loads(policy_file.read_text())
    write_atomically(keys_dir / policy["masterKeyFile"], MASTER + "\n")
    files = {c["name"]: c["keyFile"] for c in policy["callers"]}
    write_atomically(keys_dir / files["billing"], BILLING)
    write_atomically(keys_dir / files["support-bot"], SUPPORT + "\n")
    monkeypatch.setenv(gateway_auth.KEYS_DIR_ENV, str(keys_dir))
    monkeypatch.setenv(gateway_auth.POLICY_ENV, str(policy_file))
    return keys_dir


def auth() -> GatewayAuth:
    return gateway_auth.gateway()


def refused(status: int, call, *args: Any, **kwargs: Any) -> GatewayAuthError:
    with pytest.raises(GatewayAuthError) as error:
        call(*args, **kwargs)
    assert error.value.status == status, error.value.message
    return error.value


def test_master_key_is_accepted(keys: Path) -> None:
    identity = auth().authenticate(MASTER)
    assert identity.is_master
    assert identity.name == gateway_auth.MASTER_IDENTITY
    assert auth().authenticate(f"Bearer {MASTER}").is_master


def test_caller_key_maps_to_the_caller(keys: Path) -> None:
    billing = auth().authenticate(BILLING)
    assert (billing.name, billing.is_master) == ("billing", False)
    assert billing.models == ("summarizer",)
    assert billing.tags == ("summarize",)
    support = auth().authenticate(SUPPORT)
    assert (support.name, support.models, support.tags) == ("support-bot", None, None)
    assert billing.key_hash != support.key_hash


@pytest.mark.parametrize("key", [None, "", "   ", "Bearer ", "wrong", MASTER + "x", BILLING[:-1]])
def test_missing_or_wrong_keys_get_401(keys: Path, key: str | None) -> None:
    error = refused(401, auth().authenticate, key)
    assert error.error_type == "auth_error"


def test_rotated_key_takes_effect_without_restart(keys: Path, clock: FakeClock) -> None:
    gateway = auth()
    assert gateway.authenticate(BILLING).name == "billing"
    write_atomically(keys / "callers/billing/key", "billing-key-rotated")
    clock.advance()
    refused(401, gateway.authenticate, BILLING)
    assert gateway.authenticate("billing-key-rotated").name == "billing"
    # A rewrite in place (a different size, same inode) is noticed too.
    (keys / "callers/billing/key").write_text("billing-key-rotated-again")
    clock.advance()
    refused(401, gateway.authenticate, "billing-key-rotated")
    assert gateway.authenticate("billing-key-rotated-again").name == "billing"


def test_key_files_are_looked_at_no_more_than_once_a_second(keys: Path, clock: FakeClock) -> None:
    gateway = auth()
    assert gateway.authenticate(BILLING).name == "billing"
    write_atomically(keys / "callers/billing/key", "billing-key-rotated")
    clock.advance(file_reread.REREAD_INTERVAL_SECONDS / 2)
    # Within the interval the file is not looked at: the old key still works.
    assert gateway.authenticate(BILLING).name == "billing"
    clock.advance(file_reread.REREAD_INTERVAL_SECONDS / 2)
    refused(401, gateway.authenticate, BILLING)


def test_a_removed_key_file_revokes_the_key(keys: Path, clock: FakeClock) -> None:
    assert auth().authenticate(SUPPORT).name == "support-bot"
    (keys / "callers/support-bot/api-key").unlink()
    clock.advance()
    refused(401, auth().authenticate, SUPPORT)


def test_master_key_comes_only_from_its_file(
    keys: Path, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    # No fallback to the environment: what the pod started with must not outlive revocation.
    monkeypatch.setenv("LLMROUTE_MASTER_KEY", MASTER)
    monkeypatch.setenv(gateway_auth.LITELLM_MASTER_KEY_ENV, "sk-litellm-own-key")
    refused(401, auth().authenticate, "sk-litellm-own-key")
    write_atomically(keys / "master/token", "")
    clock.advance()
    refused(401, auth().authenticate, MASTER)
    write_atomically(keys / "master/token", MASTER)
    clock.advance()
    assert auth().authenticate(MASTER).is_master
    (keys / "master/token").unlink()
    clock.advance()
    refused(401, auth().authenticate, MASTER)


def test_the_old_render_placeholder_never_authenticates(keys: Path, clock: FakeClock) -> None:
    placeholder = OLD_RENDER_PLACEHOLDER
    assert not gateway_auth.usable_key(placeholder) and not gateway_auth.usable_key("")
    write_atomically(keys / "master/token", placeholder + "\n")
    clock.advance()
    refused(401, auth().authenticate, placeholder)
    write_atomically(keys / "callers/billing/key", placeholder)
    clock.advance()
    refused(401, auth().authenticate, placeholder)


def test_missing_policy_fails_closed(keys: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(gateway_auth.POLICY_ENV, str(keys / "absent.json"))
    refused(500, auth().authenticate, MASTER)


def authorize(
    key: str,
    *,
    endpoint: str | None = "/v1/chat/completions",
    model: object = None,
    path: dict | None = None,
    body: dict | None = None,
    query: dict | None = None,
    tags=(),
):
    gateway = auth()
    request_body = dict(body or {})
    if model is not None:
        request_body["model"] = model
    gateway.authorize(
        gateway.authenticate(key),
        route=endpoint or "/unknown",
        endpoint=endpoint,
        path_params=path or {},
        body=request_body,
        query=query or {},
        tags=tags,
    )


def test_callers_are_limited_to_their_models_and_tags(keys: Path) -> None:
    authorize(BILLING, model="summarizer", tags=["summarize"])
    authorize(BILLING, model="summarizer", tags=["task:summarize"])
    assert refused(403, authorize, BILLING, model="smart").error_type == "key_model_access_denied"
    refused(403, authorize, BILLING, model=None)
    authorize(BILLING, endpoint="/v1/models")
    error = refused(403, authorize, BILLING, model="summarizer", tags=["summarize", "task:triage"])
    assert "task:triage" in error.message
    refused(403, authorize, BILLING, model="summarizer", tags=["env:prod"])
    # No allow-lists: any model and tag of the route.
    authorize(SUPPORT, model="smart", tags=["anything"])
    # Callers use the model APIs only; the master key may use the rest.
    refused(403, authorize, SUPPORT, endpoint="/key/generate")
    authorize(MASTER, endpoint="/key/generate")


ENGINES = "/engines/{model:path}/chat/completions"
GENERATE = "/v1beta/models/{model_name:path}:generateContent"


@pytest.mark.parametrize(
    ("endpoint", "path", "body", "query", "expected"),
    [
        ("/v1/chat/completions", {}, {"model": "smart"}, {}, ["smart"]),
        ("/v1/chat/completions", {}, {"model": "a, b"}, {}, ["a", "b"]),
        ("/v1/chat/completions", {}, {}, {"model": "smart"}, ["smart"]),
        ("/v1/chat/completions", {}, {}, {}, []),
        (ENGINES, {"model": "smart"}, {}, {}, ["smart"]),
        (ENGINES, {"model": "smart"}, {"model": "smart"}, {}, ["smart"]),
        ("/openai/deployments/{model:path}/embeddings", {"model": "x"}, {}, {}, ["x"]),
        (GENERATE, {"model_name": "smart"}, {"contents": []}, {}, ["smart"]),
        ("/v1/models/{model_id}", {"model_id": "smart"}, {}, {}, ["smart"]),
        ("/v1/models", {}, {"model": "ignored"}, {}, []),
        # Fallbacks the body asks for are models the request may reach.
        ("/v1/chat/completions", {}, {"model": "a", "fallbacks": ["b", "c"]}, {}, ["a", "b", "c"]),
        ("/chat/completions", {}, {"model": "a", "fallbacks": [{"model": "b"}]}, {}, ["a", "b"]),
        ("/completions", {}, {"model": "a", "fallbacks": [{"a": ["b"]}]}, {}, ["a", "b"]),
        ("/v1/messages", {}, {"model": "a", "context_window_fallbacks": ["b"]}, {}, ["a", "b"]),
        (
            "/v1/responses",
            {},
            {"model": "a", "context_window_fallbacks": [{"model": "b", "api_base": "u"}]},
            {},
            ["a", "b", "api_base", "u"],
        ),
        # Master-key requests to other endpoints: a path parameter naming a model counts.
        ("/queue/chat/completions", {}, {"model": "a"}, {}, ["a"]),
        ("/fallback/{model}", {"model": "a"}, {}, {}, ["a"]),
        (None, {}, {"model": "a"}, {}, ["a"]),
        ("/model/new", {}, {"model": {"not": "a name"}}, {}, []),
    ],
)
def test_requested_models_are_resolved_as_litellm_resolves_them(
    endpoint: str | None, path: dict, body: dict, query: dict, expected: list[str]
) -> None:
    assert gateway_auth.requested_models(endpoint, path, body, query) == expected


@pytest.mark.parametrize(
    ("endpoint", "path", "body", "query"),
    [
        (ENGINES, {"model": "smart"}, {"model": "cheap"}, {}),
        ("/openai/deployments/{model:path}/completions", {"model": "smart"}, {"model": "c"}, {}),
        (GENERATE, {"model_name": "smart"}, {"model": "cheap"}, {}),
        ("/v1/chat/completions", {}, {"model": "cheap"}, {"model": "smart"}),
        (ENGINES, {"model": "smart"}, {}, {"model": "cheap"}),
        ("/v1/chat/completions", {}, {"model": ["cheap", "smart"]}, {}),
    ],
)
def test_a_request_naming_two_models_is_refused(
    endpoint: str, path: dict, body: dict, query: dict
) -> None:
    error = refused(400, gateway_auth.requested_models, endpoint, path, body, query)
    assert error.error_type == "invalid_request_error"


def test_the_url_model_is_what_a_caller_is_checked_against(keys: Path) -> None:
    authorize(BILLING, endpoint=ENGINES, path={"model": "summarizer"}, tags=["summarize"])
    error = refused(403, authorize, BILLING, endpoint=ENGINES, path={"model": "smart"})
    assert "'smart'" in error.message
    refused(400, authorize, BILLING, endpoint=ENGINES, path={"model": "smart"}, model="summarizer")
    refused(403, authorize, BILLING, endpoint=GENERATE, path={"model_name": "smart"})
    refused(403, authorize, BILLING, endpoint="/v1/models/{model_id}", path={"model_id": "smart"})
    authorize(BILLING, endpoint="/v1/models/{model_id}", path={"model_id": "summarizer"})


def test_fallbacks_outside_the_allowlist_are_refused(keys: Path) -> None:
    for fallbacks in (["smart"], [{"model": "smart"}], [{"summarizer": ["smart"]}], "smart"):
        for field in gateway_auth.FALLBACK_FIELDS:
            body = {field: fallbacks}
            error = refused(403, authorize, BILLING, model="summarizer", body=body)
            assert "'smart'" in error.message
    authorize(BILLING, model="summarizer", body={"fallbacks": ["summarizer"]})


def test_listing_routes_match_exactly(keys: Path) -> None:
    authorize(BILLING, endpoint="/models")
    authorize(BILLING, endpoint="/v1/models")
    # Paths that merely start like a listing route are other endpoints.
    for endpoint in ("/models/{model_name:path}:generateContent", "/v1/models/{model_id}"):
        refused(403, authorize, BILLING, endpoint=endpoint, path={"model_name": "smart"})
    for endpoint in ("/model/info", "/v1/model/info", "/model_group/info", "/models/x"):
        refused(403, authorize, BILLING, endpoint=endpoint)


def test_callers_are_refused_endpoints_the_hook_cannot_check(keys: Path) -> None:
    for endpoint in (
        None,
        "/v1/batches",
        "/v1/files",
        "/v1/fine_tuning/jobs",
        "/queue/chat/completions",
        "/anthropic/{endpoint:path}",
        "/v1/realtime",
        "/v1/responses/{response_id}",
    ):
        refused(403, authorize, SUPPORT, endpoint=endpoint, model="smart")
        refused(403, authorize, BILLING, endpoint=endpoint, model="summarizer")


def test_quota_rejected_models_answer_429(keys: Path) -> None:
    policy_file = Path(os.environ[gateway_auth.POLICY_ENV])
    policy = json.loads(policy_file.read_text())
    policy["rejectedModels"] = {"smart": "model 'smart' is unavailable: budget exhausted"}
    write_atomically(policy_file, json.dumps(policy))
    error = refused(429, authorize, MASTER, model="smart")
    assert error.message == "model 'smart' is unavailable: budget exhausted"
    assert error.error_type == "budget_exceeded"
    refused(429, authorize, SUPPORT, model="smart")
    authorize(SUPPORT, model="summarizer")
    # Wherever the request names the model: the URL, a comma list, a fallback.
    refused(429, authorize, SUPPORT, endpoint=ENGINES, path={"model": "smart"})
    refused(429, authorize, SUPPORT, model="summarizer,smart")
    refused(429, authorize, SUPPORT, model="summarizer", body={"fallbacks": ["smart"]})
    refused(429, authorize, MASTER, endpoint="/fallback/{model}", path={"model": "smart"})


def set_exhausted_budgets(entries: list[dict[str, Any]], clock: FakeClock) -> None:
    """Change the live part of the policy, as the operator does while the proxy runs, and let
    the time pass after which the hook looks at its files again."""
    policy_file = Path(os.environ[gateway_auth.POLICY_ENV])
    policy = json.loads(policy_file.read_text())
    policy[gateway_auth.EXHAUSTED_BUDGETS_KEY] = entries
    write_atomically(policy_file, json.dumps(policy))
    clock.advance()


def budget(quota: str, *, caller=None, tag=None, models=("smart",)) -> dict[str, Any]:
    return {
        "quota": quota,
        "caller": caller,
        "tag": tag,
        "models": list(models),
        "message": f"the budget of ModelQuota {quota!r} is exhausted",
    }


def test_an_exhausted_caller_budget_refuses_that_caller_only(keys: Path, clock: FakeClock) -> None:
    authorize(SUPPORT, model="smart")
    set_exhausted_budgets([budget("support-daily", caller="support-bot")], clock)
    error = refused(429, authorize, SUPPORT, model="smart")
    assert error.message == "the budget of ModelQuota 'support-daily' is exhausted"
    assert error.error_type == "budget_exceeded"
    # Wherever the request names a covered model.
    refused(429, authorize, SUPPORT, model="summarizer", body={"fallbacks": ["smart"]})
    refused(429, authorize, SUPPORT, endpoint=ENGINES, path={"model": "smart"})
    # Other models, other callers and the master key are served.
    authorize(SUPPORT, model="summarizer")
    authorize(SUPPORT, endpoint="/v1/models")
    authorize(BILLING, model="summarizer", tags=["summarize"])
    authorize(MASTER, model="smart")
    # Back under budget (a new period): the operator empties the list; no restart.
    set_exhausted_budgets([], clock)
    authorize(SUPPORT, model="smart")


def test_an_exhausted_task_budget_refuses_requests_of_that_task(
    keys: Path, clock: FakeClock
) -> None:
    set_exhausted_budgets(
        [budget("summarize-monthly", tag="summarize", models=["summarizer"])], clock
    )
    # Whichever form the tag takes, whoever sends it.
    refused(429, authorize, BILLING, model="summarizer", tags=["task:summarize"])
    refused(429, authorize, BILLING, model="summarizer", tags=["summarize"])
    refused(429, authorize, MASTER, model="summarizer", tags=["task:summarize"])
    authorize(MASTER, model="summarizer", tags=["task:triage"])
    authorize(MASTER, model="summarizer")
    authorize(SUPPORT, model="smart", tags=["task:summarize"])


def test_a_caller_and_task_budget_needs_both(keys: Path, clock: FakeClock) -> None:
    set_exhausted_budgets(
        [budget("support-triage", caller="support-bot", tag="triage", models=["smart"])], clock
    )
    refused(429, authorize, SUPPORT, model="smart", tags=["task:triage"])
    authorize(SUPPORT, model="smart")
    authorize(MASTER, model="smart", tags=["task:triage"])


def test_a_malformed_budget_list_refuses_nothing(keys: Path, clock: FakeClock) -> None:
    set_exhausted_budgets(["not an entry", {"caller": "support-bot"}], clock)  # type: ignore[list-item]
    authorize(SUPPORT, model="smart")


def test_request_tags_are_read_where_litellm_reads_them() -> None:
    body = {
        "tags": ["a"],
        "metadata": {"tags": ["b"]},
        "litellm_metadata": {"tags": ["c"]},
    }
    assert request_tags({"x-litellm-tags": "d, e"}, body) == ["d", "e", "a", "b", "c"]
    assert request_tags({}, {"metadata": "not a dict"}) == []
    # A JSON string, as multipart and extra_body clients send metadata: LiteLLM parses it
    # after this hook, and counts its tags.
    as_text = {"metadata": '{"tags": ["task:x"]}', "litellm_metadata": '{"tags": ["y"]}'}
    assert request_tags({}, as_text) == ["task:x", "y"]


def _imported_modules(path: str) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(Path(path).read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names)


def test_shipped_module_imports_only_the_standard_library_and_litellm() -> None:
    # llmroute_file_reread is shipped next to it; llmroute only where the package is installed.
    assert _imported_modules(gateway_auth.__file__) == {
        "litellm",
        "llmroute_file_reread",
        "llmroute",
    }
    assert _imported_modules(file_reread.__file__) == set()


# -- through LiteLLM's own types (imports litellm: a few seconds, once) ----------------------

# Importing litellm must not fetch its price map from the network.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def request(
    path: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    *,
    endpoint: str | None = None,
    path_params: dict[str, str] | None = None,
):
    """A request as LiteLLM's app hands it to the hook: routed, so the scope carries the
    matched route (its template) and the path parameters."""
    from starlette.requests import Request

    payload = json.dumps(body or {}).encode()
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": payload, "more_body": False}

    raw_headers = [(b"content-type", b"application/json")] + [
        (k.lower().encode(), v.encode()) for k, v in (headers or {}).items()
    ]
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": raw_headers,
        "client": ("127.0.0.1", 12345),
        "server": ("127.0.0.1", 4000),
        "scheme": "http",
        "route": SimpleNamespace(path=endpoint or path),
        "path_params": path_params or {},
    }
    return Request(scope, receive)


def hook(
    path: str,
    key: str,
    body: dict[str, Any] | None = None,
    *,
    endpoint: str | None = None,
    path_params: dict[str, str] | None = None,
    **headers: str,
):
    routed = request(path, body, headers, endpoint=endpoint, path_params=path_params)
    return asyncio.run(gateway_auth.user_api_key_auth(routed, key))


def test_litellm_hook_labels_requests_with_the_callers_name(keys: Path) -> None:
    from litellm.proxy._types import LitellmUserRoles

    token = hook("/v1/chat/completions", BILLING, {"model": "summarizer", "tags": ["summarize"]})
    assert (token.key_alias, token.team_id, token.team_alias, token.user_id) == ("billing",) * 4
    assert token.models == ["summarizer"]
    assert token.api_key != BILLING  # only a hash leaves the hook
    master = hook("/v1/chat/completions", MASTER, {"model": "smart"})
    assert master.user_role == LitellmUserRoles.PROXY_ADMIN
    assert master.key_alias == gateway_auth.MASTER_IDENTITY


def test_litellm_hook_raises_proxy_exceptions_with_the_status(keys: Path) -> None:
    from litellm.proxy._types import ProxyException

    cases = [
        ("/v1/chat/completions", "nope", {"model": "smart"}, {}, "401"),
        ("/v1/chat/completions", BILLING, {"model": "smart"}, {}, "403"),
        ("/chat/completions", BILLING, {"model": "summarizer"}, {"x-litellm-tags": "x"}, "403"),
        ("/key/generate", SUPPORT, {}, {}, "403"),
    ]
    for path, key, body, headers, code in cases:
        with pytest.raises(ProxyException) as error:
            hook(path, key, body, **headers)
        assert error.value.code == code, (path, key, error.value.message)


def test_litellm_hook_reads_the_model_from_the_matched_route(keys: Path) -> None:
    from litellm.proxy._types import ProxyException

    engines = {"endpoint": ENGINES, "path_params": {"model": "smart"}}
    with pytest.raises(ProxyException) as error:
        hook("/engines/smart/chat/completions", BILLING, {"model": "summarizer"}, **engines)
    assert error.value.code == "400"
    with pytest.raises(ProxyException) as error:
        hook("/engines/smart/chat/completions", BILLING, {"tags": ["summarize"]}, **engines)
    assert error.value.code == "403"
    token = hook(
        "/engines/summarizer/chat/completions",
        BILLING,
        {"tags": ["summarize"]},
        endpoint=ENGINES,
        path_params={"model": "summarizer"},
    )
    assert token.key_alias == "billing"


def test_caller_endpoints_are_routes_litellm_serves() -> None:
    """Every template of CALLER_ENDPOINTS is the template of a route in LiteLLM's app (with its
    lazily registered features), and its model parameter is one of that route's parameters."""
    from fastapi.routing import iter_route_contexts
    from litellm.proxy._lazy_features import register_all_features
    from litellm.proxy.proxy_server import app

    register_all_features(app)
    served = {}
    for context in iter_route_contexts(app.routes):
        template = getattr(context.original_route, "path", None)
        served[template] = set(getattr(context, "param_convertors", None) or {})
    for endpoint, param in gateway_auth.CALLER_ENDPOINTS.items():
        assert endpoint in served, endpoint
        if param:
            assert param in served[endpoint], (endpoint, param)


def test_litellm_hook_lets_public_routes_through(keys: Path) -> None:
    assert hook("/health/liveliness", "").api_key is None


def test_module_works_when_loaded_the_way_litellm_loads_it(
    keys: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # LiteLLM executes the file next to config.yaml without registering it in sys.modules.
    import importlib.util

    shipped = tmp_path / "llmroute_auth.py"
    shipped.write_text(Path(gateway_auth.__file__).read_text())
    # With the helper it imports next to it, on the path, as in the pod.
    (tmp_path / "llmroute_file_reread.py").write_text(Path(file_reread.__file__).read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = importlib.util.spec_from_file_location("llmroute_auth", shipped)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert "llmroute_auth" not in sys.modules
    assert module.FileReread.__module__ == "llmroute_file_reread"
    assert module.gateway().authenticate(BILLING).name == "billing"


@pytest.mark.parametrize(
    "name",
    [
        "smart/anthropic/claude-sonnet-4-5",  # a target's deployment id (model_info.id)
        "anthropic/claude-sonnet-4-5",  # a target's litellm_params.model
        "claude-sonnet-4-5",
    ],
)
def test_only_the_routes_model_names_are_served(keys: Path, name: str) -> None:
    # LiteLLM serves a deployment named by its id or its provider model directly, past the
    # quota filter and the budgets keyed by model name: whoever asks, the gateway refuses.
    for key in (SUPPORT, MASTER):
        error = refused(400, authorize, key, model=name)
        assert error.error_type == "invalid_request_error"
        assert "smart" in error.message and "summarizer" in error.message
        refused(400, authorize, key, model="smart", body={"fallbacks": [name]})
        refused(400, authorize, key, endpoint=ENGINES, path={"model": name})
    authorize(SUPPORT, model="smart")
    authorize(MASTER, model="summarizer")
    # The master key's management endpoints name models of their own.
    authorize(MASTER, endpoint="/model/info", query={"model": name})
