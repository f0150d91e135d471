"""Authentication for an LLMRoute's LiteLLM proxy (general_settings.custom_auth).

The operator ships this file to the proxy pod as llmroute_auth.py, next to config.yaml, where
LiteLLM imports it; it may therefore import nothing but the standard library and litellm.

It accepts the route's master key and the key of every declared caller. Keys are read from
files (mounted Secrets) and re-read when a file changes, so a rotated key works, and the old
one stops working, without a restart. What a request may do comes from the policy file the
operator renders (llmroute_auth.json):
- a caller is limited to the model APIs, to its allowed models and to its allowed tags (403;
  a task travels as the request tag "task:<name>", the bare name is accepted as well);
- a model whose quota budget is exhausted with action reject answers 429;
- a missing, wrong or revoked key answers 401.
A caller's name becomes the key alias, team and user of its requests, so LiteLLM's metrics
attribute spend to it with labels bounded by the route's callers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final

KEYS_DIR_ENV: Final = "LLMROUTE_KEYS_DIR"
DEFAULT_KEYS_DIR: Final = "/etc/llmroute/keys"
POLICY_ENV: Final = "LLMROUTE_AUTH_POLICY"
POLICY_FILE_NAME: Final = "llmroute_auth.json"
MASTER_KEY_ENV: Final = "LLMROUTE_MASTER_KEY"
# The identity of master-key requests in metrics; not a valid caller name, so no caller has it.
MASTER_IDENTITY: Final = "_master"
# Tasks travel as request tags "task:<name>" (the form LiteLLM's metrics count, see
# litellm_settings.custom_prometheus_tags); a caller's allowed tags name the tasks.
TASK_TAG_PREFIX: Final = "task:"
# Model listing routes: they name no model, so a caller limited to models may still use them.
_LISTING_ROUTES: Final = ("/models", "/v1/models")


class GatewayAuthError(Exception):
    """A refused request: the HTTP status, the message clients see, the OpenAI error type."""

    def __init__(self, status: int, message: str, error_type: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type


class Identity:
    """Who a key belongs to, and what the policy allows it."""

    # A plain class, not a dataclass: LiteLLM executes this file as a module it does not
    # register in sys.modules, and dataclasses look their module up there.
    __slots__ = ("is_master", "key_hash", "models", "name", "tags")

    def __init__(
        self,
        name: str,
        is_master: bool,
        models: tuple[str, ...] | None,  # None: every model of the route
        tags: tuple[str, ...] | None,  # None: any tag
        key_hash: str,
    ) -> None:
        self.name = name
        self.is_master = is_master
        self.models = models
        self.tags = tags
        self.key_hash = key_hash


class _FileCache:
    """File contents, re-read only when the file changes.

    Kubelet updates a mounted Secret by swapping a symlink to a new directory, so the path
    then resolves to a new inode; an in-place rewrite changes the mtime or size.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Path, tuple[tuple[int, int, int], Any]] = {}

    def read(self, path: Path, parse: Callable[[bytes], Any]) -> Any:
        try:
            stat = path.stat()
            signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            with self._lock:
                cached = self._entries.get(path)
            if cached is not None and cached[0] == signature:
                return cached[1]
            value = parse(path.read_bytes())
        except OSError:  # missing or unreadable: no key, so nothing matches it
            with self._lock:
                self._entries.pop(path, None)
            return None
        with self._lock:
            self._entries[path] = (signature, value)
        return value


def _parse_key(raw: bytes) -> str | None:
    # Secrets made from files often end in a newline that is not part of the key.
    key = raw.decode("utf-8", errors="replace").strip()
    return key or None


def _parse_policy(raw: bytes) -> dict[str, Any]:
    policy = json.loads(raw.decode("utf-8"))
    if not isinstance(policy, dict):
        raise ValueError("the auth policy must be a JSON object")
    return policy


def _same(presented: bytes, key: str | None) -> bool:
    return key is not None and hmac.compare_digest(presented, key.encode("utf-8"))


def _names(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


class GatewayAuth:
    """The checks, independent of LiteLLM's request types (so tests can drive them directly)."""

    def __init__(self, keys_dir: Path, policy_file: Path) -> None:
        self.keys_dir = keys_dir
        self.policy_file = policy_file
        self._files = _FileCache()

    def policy(self) -> dict[str, Any]:
        policy = self._files.read(self.policy_file, _parse_policy)
        if policy is None:
            # Fail closed, and loudly: without a policy no caller is known.
            raise GatewayAuthError(
                500, f"the gateway's auth policy {self.policy_file} is missing", "auth_error"
            )
        return policy

    def _key(self, relative: object) -> str | None:
        if not isinstance(relative, str) or not relative:
            return None
        return self._files.read(self.keys_dir / relative, _parse_key)

    def authenticate(self, api_key: str | None) -> Identity:
        policy = self.policy()
        presented = (api_key or "").strip()
        if presented[:7].lower() == "bearer ":
            presented = presented[7:].strip()
        if not presented:
            raise GatewayAuthError(
                401,
                "No API key provided. Send it as 'Authorization: Bearer <key>'.",
                "auth_error",
            )
        candidate = presented.encode("utf-8")
        key_hash = hashlib.sha256(candidate).hexdigest()
        found: Identity | None = None
        # The mounted file wins; the env var serves a proxy started without the key volume.
        master = self._key(policy.get("masterKeyFile")) or _parse_key(
            os.environ.get(MASTER_KEY_ENV, "").encode()
        )
        if _same(candidate, master):
            found = Identity(MASTER_IDENTITY, True, None, None, key_hash)
        # Compare against every key, so the time taken does not tell which one matched.
        for caller in policy.get("callers") or ():
            if not isinstance(caller, Mapping):
                continue
            if _same(candidate, self._key(caller.get("keyFile"))) and found is None:
                found = Identity(
                    name=str(caller.get("name")),
                    is_master=False,
                    models=_names(caller.get("models")),
                    tags=_names(caller.get("tags")),
                    key_hash=key_hash,
                )
        if found is None:
            raise GatewayAuthError(401, "Invalid API key.", "auth_error")
        return found

    def authorize(
        self,
        identity: Identity,
        *,
        route: str,
        is_model_api_route: bool,
        model: str | None,
        tags: Iterable[str],
    ) -> None:
        if not identity.is_master:
            if not is_model_api_route:
                raise GatewayAuthError(
                    403, f"caller {identity.name!r} may not use {route}", "auth_error"
                )
            if identity.models is not None:
                if model is None and not route.startswith(_LISTING_ROUTES):
                    raise GatewayAuthError(
                        403,
                        f"caller {identity.name!r} is limited to models "
                        f"{list(identity.models)}; name one in the request body",
                        "key_model_access_denied",
                    )
                if model is not None and model not in identity.models:
                    raise GatewayAuthError(
                        403,
                        f"caller {identity.name!r} may not use model {model!r}; "
                        f"allowed: {list(identity.models)}",
                        "key_model_access_denied",
                    )
            if identity.tags is not None:
                undeclared = sorted(
                    {t for t in tags if t.removeprefix(TASK_TAG_PREFIX) not in identity.tags}
                )
                if undeclared:
                    raise GatewayAuthError(
                        403,
                        f"caller {identity.name!r} may not use tags {undeclared}; "
                        f"allowed: {list(identity.tags)}",
                        "auth_error",
                    )
        rejected = self.policy().get("rejectedModels") or {}
        if model is not None and model in rejected:
            raise GatewayAuthError(429, str(rejected[model]), "budget_exceeded")


def request_tags(headers: Mapping[str, str], body: Mapping[str, Any]) -> list[str]:
    """Every tag a request carries, in the places LiteLLM reads tags from."""
    tags: list[str] = []
    header = headers.get("x-litellm-tags")
    if header:
        tags += [t.strip() for t in header.split(",") if t.strip()]
    sources: list[object] = [body.get("tags")]
    for field in ("metadata", "litellm_metadata"):
        metadata = body.get(field)
        if isinstance(metadata, Mapping):
            sources.append(metadata.get("tags"))
    for source in sources:
        if isinstance(source, list):
            tags += [str(t) for t in source]
    return tags


_gateways: dict[tuple[str, str], GatewayAuth] = {}
_gateways_lock = threading.Lock()


def gateway() -> GatewayAuth:
    """The GatewayAuth for the current environment (LLMROUTE_KEYS_DIR, LLMROUTE_AUTH_POLICY)."""
    keys_dir = os.environ.get(KEYS_DIR_ENV) or DEFAULT_KEYS_DIR
    policy = os.environ.get(POLICY_ENV) or str(Path(__file__).with_name(POLICY_FILE_NAME))
    with _gateways_lock:
        found = _gateways.get((keys_dir, policy))
        if found is None:
            found = _gateways[(keys_dir, policy)] = GatewayAuth(Path(keys_dir), Path(policy))
        return found


async def _request_body(request: Any) -> Mapping[str, Any]:
    # LiteLLM has parsed (and cached) the body before it calls the hook; this reads that copy.
    from litellm.proxy.common_utils.http_parsing_utils import _read_request_body

    try:
        body = await _read_request_body(request=request)
    except Exception:  # a body LiteLLM cannot parse fails later, with LiteLLM's own error
        return {}
    return body if isinstance(body, Mapping) else {}


async def user_api_key_auth(request: Any, api_key: str) -> Any:
    """The hook LiteLLM calls for every authenticated route."""
    from litellm.proxy._types import LiteLLMRoutes, LitellmUserRoles, ProxyException, UserAPIKeyAuth
    from litellm.proxy.auth.auth_utils import get_request_route
    from litellm.proxy.auth.route_checks import RouteChecks

    route = get_request_route(request=request)
    if route in LiteLLMRoutes.public_routes.value:
        # LiteLLM's own check lets these through without a key; so does the hook.
        return UserAPIKeyAuth(user_role=LitellmUserRoles.INTERNAL_USER_VIEW_ONLY)
    auth = gateway()
    try:
        identity = auth.authenticate(api_key)
        body = await _request_body(request)
        model = body.get("model")
        auth.authorize(
            identity,
            route=route,
            is_model_api_route=RouteChecks.is_llm_api_route(route=route),
            model=model if isinstance(model, str) else None,
            tags=request_tags(request.headers, body),
        )
    except GatewayAuthError as e:
        raise ProxyException(
            message=e.message, type=e.error_type, param="None", code=e.status
        ) from None
    if identity.is_master:
        return UserAPIKeyAuth(
            api_key=identity.key_hash,
            user_role=LitellmUserRoles.PROXY_ADMIN,
            key_alias=MASTER_IDENTITY,
            team_id=MASTER_IDENTITY,
            team_alias=MASTER_IDENTITY,
            user_id=MASTER_IDENTITY,
        )
    return UserAPIKeyAuth(
        api_key=identity.key_hash,
        user_role=LitellmUserRoles.INTERNAL_USER,
        key_alias=identity.name,
        team_id=identity.name,
        team_alias=identity.name,
        user_id=identity.name,
        models=list(identity.models or ()),
    )
