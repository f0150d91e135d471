"""The proxy's auth hook (payloads/gateway_auth.py, shipped as llmroute_auth.py), against key
files in a temporary directory laid out as the rendered pod mounts them."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmroute.payloads import gateway_auth
from llmroute.payloads.gateway_auth import GatewayAuth, GatewayAuthError, request_tags
from manifests import render_manifest

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


@pytest.fixture
def keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
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
    monkeypatch.delenv(gateway_auth.MASTER_KEY_ENV, raising=False)
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


def test_rotated_key_takes_effect_without_restart(keys: Path) -> None:
    gateway = auth()
    assert gateway.authenticate(BILLING).name == "billing"
    write_atomically(keys / "callers/billing/key", "billing-key-rotated")
    refused(401, gateway.authenticate, BILLING)
    assert gateway.authenticate("billing-key-rotated").name == "billing"
    # A rewrite in place (a different size, same inode) is noticed too.
    (keys / "callers/billing/key").write_text("billing-key-rotated-again")
    refused(401, gateway.authenticate, "billing-key-rotated")
    assert gateway.authenticate("billing-key-rotated-again").name == "billing"


def test_a_removed_key_file_revokes_the_key(keys: Path) -> None:
    assert auth().authenticate(SUPPORT).name == "support-bot"
    (keys / "callers/support-bot/api-key").unlink()
    refused(401, auth().authenticate, SUPPORT)


def test_master_key_from_env_when_no_file_is_mounted(
    keys: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (keys / "master/token").unlink()
    refused(401, auth().authenticate, MASTER)
    monkeypatch.setenv(gateway_auth.MASTER_KEY_ENV, "from-env")
    assert auth().authenticate("from-env").is_master


def test_missing_policy_fails_closed(keys: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(gateway_auth.POLICY_ENV, str(keys / "absent.json"))
    refused(500, auth().authenticate, MASTER)


def authorize(key: str, *, route="/v1/chat/completions", llm=True, model=None, tags=()):
    gateway = auth()
    gateway.authorize(
        gateway.authenticate(key), route=route, is_model_api_route=llm, model=model, tags=tags
    )


def test_callers_are_limited_to_their_models_and_tags(keys: Path) -> None:
    authorize(BILLING, model="summarizer", tags=["summarize"])
    authorize(BILLING, model="summarizer", tags=["task:summarize"])
    assert refused(403, authorize, BILLING, model="smart").error_type == "key_model_access_denied"
    refused(403, authorize, BILLING, model=None)
    authorize(BILLING, route="/v1/models", model=None)
    error = refused(403, authorize, BILLING, model="summarizer", tags=["summarize", "task:triage"])
    assert "task:triage" in error.message
    refused(403, authorize, BILLING, model="summarizer", tags=["env:prod"])
    # No allow-lists: any model and tag of the route.
    authorize(SUPPORT, model="smart", tags=["anything"])
    # Callers use the model APIs only; the master key may use the rest.
    refused(403, authorize, SUPPORT, route="/key/generate", llm=False)
    authorize(MASTER, route="/key/generate", llm=False)


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


def test_request_tags_are_read_where_litellm_reads_them() -> None:
    body = {
        "tags": ["a"],
        "metadata": {"tags": ["b"]},
        "litellm_metadata": {"tags": ["c"]},
    }
    assert request_tags({"x-litellm-tags": "d, e"}, body) == ["d", "e", "a", "b", "c"]
    assert request_tags({}, {"metadata": "not a dict"}) == []


def test_shipped_module_imports_only_the_standard_library_and_litellm() -> None:
    tree = ast.parse(Path(gateway_auth.__file__).read_text())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module.split(".")[0])
    assert modules - set(sys.stdlib_module_names) == {"litellm"}


# -- through LiteLLM's own types (imports litellm: a few seconds, once) ----------------------


def request(path: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None):
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
    }
    return Request(scope, receive)


def hook(path: str, key: str, body: dict[str, Any] | None = None, **headers: str):
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    return asyncio.run(gateway_auth.user_api_key_auth(request(path, body, headers), key))


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


def test_litellm_hook_lets_public_routes_through(keys: Path) -> None:
    assert hook("/health/liveliness", "").api_key is None


def test_module_works_when_loaded_the_way_litellm_loads_it(keys: Path, tmp_path: Path) -> None:
    # LiteLLM executes the file next to config.yaml without registering it in sys.modules.
    import importlib.util

    shipped = tmp_path / "llmroute_auth.py"
    shipped.write_text(Path(gateway_auth.__file__).read_text())
    spec = importlib.util.spec_from_file_location("llmroute_auth", shipped)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert "llmroute_auth" not in sys.modules
    assert module.gateway().authenticate(BILLING).name == "billing"
