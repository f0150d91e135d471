"""Authentication for an LLMRoute's LiteLLM proxy (general_settings.custom_auth).

The operator ships this file to the proxy pod as llmroute_auth.py, next to config.yaml, where
LiteLLM imports it; it may therefore import nothing but the standard library, litellm and
llmroute_file_reread (payloads/file_reread.py, shipped beside it).

It accepts the route's master key and the key of every declared caller. Keys are read from
files (mounted Secrets) only, and re-read when a file changes, so a rotated key works, and an
emptied or removed one stops working, without a restart (within a second: the files are
looked at no more than once a second, llmroute_file_reread.py). What a request may do comes from the
policy file the operator renders (llmroute_auth.json):
- a caller may use only the endpoints of CALLER_ENDPOINTS, only its allowed models and only
  its allowed tags (403; a task travels as the request tag "task:<name>", the bare name is
  accepted as well). The models a request names are resolved the way LiteLLM resolves the
  model it serves: the URL's model wins over the body's (a body naming another model is
  refused with 400), and request-body fallbacks count as named models;
- a model whose quota budget is exhausted with action reject answers 429, and so does a
  request of a caller or task whose own budget (a quota with match.caller / match.tag) is
  exhausted, for the models that quota covers; the operator updates those budgets in the
  policy file while the proxy runs;
- a missing, wrong or revoked key answers 401, and so does the placeholder value that
  `llmroute render` once wrote into generated master-key Secrets.
A caller's name becomes the key alias, team and user of its requests, so LiteLLM's metrics
attribute spend to it with labels bounded by the route's callers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

try:  # in the proxy pod: shipped next to this file, on PYTHONPATH
    from llmroute_file_reread import FileReread
except ImportError:  # imported from the llmroute package (the operator, tests)
    from llmroute.payloads.file_reread import FileReread

KEYS_DIR_ENV: Final = "LLMROUTE_KEYS_DIR"
DEFAULT_KEYS_DIR: Final = "/etc/llmroute/keys"
POLICY_ENV: Final = "LLMROUTE_AUTH_POLICY"
POLICY_FILE_NAME: Final = "llmroute_auth.json"
# LiteLLM refuses to start without a master key of its own (general_settings.master_key) and
# accepts it on paths that never call this hook (its UI login, session signing). The rendered
# config reads it from this variable, which seal_litellm_master_key fills in every worker with
# a random value no one is told: only this hook's keys, read from their files, authenticate.
LITELLM_MASTER_KEY_ENV: Final = "LLMROUTE_LITELLM_MASTER_KEY"
# The identity of master-key requests in metrics; not a valid caller name, so no caller has it.
MASTER_IDENTITY: Final = "_master"
# Tasks travel as request tags "task:<name>" (the form LiteLLM's metrics count, see
# litellm_settings.custom_prometheus_tags); a caller's allowed tags name the tasks.
TASK_TAG_PREFIX: Final = "task:"
# sha256 digests of values that must never authenticate: the placeholder `llmroute render`
# once printed in generated master-key Secrets (applied output may still hold it). Digests, so
# the value itself appears nowhere in what is rendered.
UNUSABLE_KEY_SHA256: Final = frozenset(
    {"6995ee02999e0d0c7423975ecb514dba7350e181a4b124396399d7500917deb8"}
)

# The endpoints a caller (any key but the master key) may use, by the route template LiteLLM
# 1.106.2's FastAPI app matched (request.scope["route"].path), each with where its model comes
# from: the path parameter holding it (the URL's model wins over the body's, as in LiteLLM's
# resolve_inference_model), BODY_MODEL (the JSON or form field "model"), or None (the endpoint
# lists models and names none). Every other endpoint is refused to callers: it may name models
# in ways this hook cannot check (file, batch and response ids, headers, nested fields) or it
# is not a model API at all. docs/operations.md lists these endpoints for users.
BODY_MODEL: Final = ""
CALLER_ENDPOINTS: Final[dict[str, str | None]] = {
    # OpenAI-compatible, model in the body
    "/chat/completions": BODY_MODEL,
    "/v1/chat/completions": BODY_MODEL,
    "/completions": BODY_MODEL,
    "/v1/completions": BODY_MODEL,
    "/embeddings": BODY_MODEL,
    "/v1/embeddings": BODY_MODEL,
    "/responses": BODY_MODEL,
    "/v1/responses": BODY_MODEL,
    "/images/generations": BODY_MODEL,
    "/v1/images/generations": BODY_MODEL,
    "/images/edits": BODY_MODEL,
    "/v1/images/edits": BODY_MODEL,
    "/audio/speech": BODY_MODEL,
    "/v1/audio/speech": BODY_MODEL,
    "/audio/transcriptions": BODY_MODEL,
    "/v1/audio/transcriptions": BODY_MODEL,
    "/moderations": BODY_MODEL,
    "/v1/moderations": BODY_MODEL,
    "/rerank": BODY_MODEL,
    "/v1/rerank": BODY_MODEL,
    "/v2/rerank": BODY_MODEL,
    # Anthropic's Messages API, model in the body
    "/v1/messages": BODY_MODEL,
    "/v1/messages/count_tokens": BODY_MODEL,
    # Azure OpenAI and the legacy engines paths: the model is in the URL
    "/openai/deployments/{model:path}/chat/completions": "model",
    "/engines/{model:path}/chat/completions": "model",
    "/openai/deployments/{model:path}/completions": "model",
    "/engines/{model:path}/completions": "model",
    "/openai/deployments/{model:path}/embeddings": "model",
    "/engines/{model:path}/embeddings": "model",
    "/openai/deployments/{model:path}/images/generations": "model",
    "/openai/deployments/{model:path}/images/edits": "model",
    # Google's generateContent API: the model is in the URL
    "/models/{model_name:path}:generateContent": "model_name",
    "/v1beta/models/{model_name:path}:generateContent": "model_name",
    "/models/{model_name:path}:streamGenerateContent": "model_name",
    "/v1beta/models/{model_name:path}:streamGenerateContent": "model_name",
    "/models/{model_name:path}:countTokens": "model_name",
    "/v1beta/models/{model_name:path}:countTokens": "model_name",
    # Model listing (exactly these paths) and one model's entry
    "/models": None,
    "/v1/models": None,
    "/models/{model_id}": "model_id",
    "/v1/models/{model_id}": "model_id",
}
# The auth policy's list of exhausted caller and task budgets (render/caller_budgets.py).
EXHAUSTED_BUDGETS_KEY: Final = "exhaustedBudgets"
# Request-body fields LiteLLM's router reads fallback models from.
FALLBACK_FIELDS: Final = ("fallbacks", "context_window_fallbacks")
# Path parameters that name a model on endpoints outside CALLER_ENDPOINTS (master-key
# requests, which may use any endpoint, still get the quota check on the model they name).
_MODEL_PATH_PARAMS: Final = ("model", "model_name", "model_id")


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


def usable_key(key: str) -> bool:
    """False for an empty key and for the values of UNUSABLE_KEY_SHA256."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return bool(key) and digest not in UNUSABLE_KEY_SHA256


def _parse_key(raw: bytes) -> str | None:
    # Secrets made from files often end in a newline that is not part of the key.
    key = raw.decode("utf-8", errors="replace").strip()
    return key if usable_key(key) else None


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
        self._files = FileReread()

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
        # Only the mounted file: emptying or removing it revokes the key at once.
        master = self._key(policy.get("masterKeyFile"))
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
        endpoint: str | None,
        path_params: Mapping[str, object],
        body: Mapping[str, Any],
        query: Mapping[str, str],
        tags: Iterable[str],
    ) -> None:
        """Refuse what the identity may not do. route: the request's path; endpoint: the route
        template LiteLLM matched (None when unknown)."""
        models = requested_models(endpoint, path_params, body, query)
        if endpoint in CALLER_ENDPOINTS:
            check_route_models(self.policy().get("models"), models)
        if not identity.is_master:
            if endpoint not in CALLER_ENDPOINTS:
                raise GatewayAuthError(
                    403,
                    f"caller {identity.name!r} may not use {route}; callers may use the "
                    "chat, completions, embeddings, responses, images, audio, moderations, "
                    "rerank, Anthropic messages, Gemini generateContent and model listing "
                    "endpoints",
                    "auth_error",
                )
            if identity.models is not None:
                if not models and CALLER_ENDPOINTS[endpoint] is not None:
                    raise GatewayAuthError(
                        403,
                        f"caller {identity.name!r} is limited to models "
                        f"{list(identity.models)}; name one in the request",
                        "key_model_access_denied",
                    )
                denied = [m for m in models if m not in identity.models]
                if denied:
                    raise GatewayAuthError(
                        403,
                        f"caller {identity.name!r} may not use model {denied[0]!r}; "
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
        for model in models:
            if model in rejected:
                raise GatewayAuthError(429, str(rejected[model]), "budget_exceeded")
        check_exhausted_budgets(self.policy().get(EXHAUSTED_BUDGETS_KEY), identity, models, tags)


def check_route_models(route_models: object, models: Iterable[str]) -> None:
    """400 for a model that is not a model of the route. LiteLLM would serve a deployment
    named by its id (model_info.id) or its provider model (litellm_params.model) as well,
    and such a request would skip the quota filter and every budget keyed by model name."""
    served = [str(m) for m in route_models] if isinstance(route_models, list) else []
    for model in models:
        if model not in served:
            raise GatewayAuthError(
                400,
                # LiteLLM's own words for an unknown model, which clients may look for.
                f"Invalid model name passed in model={model}: this gateway serves {served}",
                "invalid_request_error",
            )


def check_exhausted_budgets(
    entries: object, identity: Identity, models: Iterable[str], tags: Iterable[str]
) -> None:
    """429 when an exhausted caller or task budget (policy "exhaustedBudgets", kept up to
    date by the operator while the proxy runs) covers this request: its caller and task
    match the entry's (an unset one matches any) and it names a model the entry lists."""
    if not isinstance(entries, list):
        return
    named = set(models)
    tasks = {t.removeprefix(TASK_TAG_PREFIX) for t in tags}
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        caller, tag = entry.get("caller"), entry.get("tag")
        if caller is not None and (identity.is_master or caller != identity.name):
            continue
        if tag is not None and tag not in tasks:
            continue
        covered = entry.get("models")
        if isinstance(covered, list) and named.intersection(str(m) for m in covered):
            raise GatewayAuthError(429, str(entry.get("message")), "budget_exceeded")


def _model_names(value: str) -> list[str]:
    # LiteLLM sends a chat completion naming "a,b" to each of the models.
    return [name.strip() for name in value.split(",") if name.strip()]


def _fallback_names(value: object) -> list[str]:
    """Model names in a fallbacks field: ["m", ...], [{"model": "m", ...}] or [{"a": ["b"]}].

    Every string that may name a model counts (a dict's keys too), so a form the router reads
    in a way this does not foresee is refused rather than let through.
    """
    if isinstance(value, str):
        return _model_names(value)
    if isinstance(value, Mapping):
        names: list[str] = []
        for key, item in value.items():
            if key != "model":
                names += _fallback_names(key)
            names += _fallback_names(item)
        return names
    if isinstance(value, list | tuple):
        return [name for item in value for name in _fallback_names(item)]
    return []


def requested_models(
    endpoint: str | None,
    path_params: Mapping[str, object],
    body: Mapping[str, Any],
    query: Mapping[str, str],
) -> list[str]:
    """Every model a request may be served by, resolved as LiteLLM 1.106.2 resolves it.

    The URL's model wins over the body's (resolve_inference_model in LiteLLM's
    http_parsing_utils); a body or query naming a different model than the URL is refused with
    400 rather than guessed at. Request-body fallbacks are models the request may reach too.
    """
    source = CALLER_ENDPOINTS.get(endpoint or "", BODY_MODEL)
    if source is None:  # listing
        return []
    url_model: str | None = None
    if endpoint in CALLER_ENDPOINTS:
        params: tuple[str, ...] = (source,) if source else ()
    else:  # master-key requests to other endpoints: any path parameter that names a model
        params = _MODEL_PATH_PARAMS
    for param in params:
        value = path_params.get(param)
        if isinstance(value, str) and value:
            url_model = value
            break
    body_model = body.get("model")
    if body_model is not None and not isinstance(body_model, str):
        if endpoint in CALLER_ENDPOINTS:
            raise GatewayAuthError(
                400, "the request's model must be a string", "invalid_request_error"
            )
        body_model = None  # another endpoint's own field (management APIs), not a model name
    query_model = query.get("model") or None
    model = url_model or body_model or query_model
    for other, where in ((body_model, "body"), (query_model, "query")):
        if other and model and other != model:
            raise GatewayAuthError(
                400,
                f"the request names model {model!r} in the "
                f"{'URL' if url_model else 'body'} but {other!r} in the {where}; name one",
                "invalid_request_error",
            )
    models = _model_names(model) if model else []
    for field in FALLBACK_FIELDS:
        models += _fallback_names(body.get(field))
    return list(dict.fromkeys(models))


def request_tags(headers: Mapping[str, str], body: Mapping[str, Any]) -> list[str]:
    """Every tag a request carries, in the places LiteLLM reads tags from."""
    tags: list[str] = []
    header = headers.get("x-litellm-tags")
    if header:
        tags += [t.strip() for t in header.split(",") if t.strip()]
    sources: list[object] = [body.get("tags")]
    for field in ("metadata", "litellm_metadata"):
        metadata = body.get(field)
        if isinstance(metadata, str):
            # Multipart and extra_body clients send metadata as JSON text, which LiteLLM
            # parses after this hook (litellm_pre_call_utils._normalized_metadata_object).
            try:
                metadata = json.loads(metadata)
            except ValueError:
                continue  # LiteLLM refuses it with 400
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


def _endpoint(request: Any) -> str | None:
    """The route template LiteLLM's FastAPI app matched (set before dependencies run)."""
    template = getattr(request.scope.get("route"), "path", None)
    return template if isinstance(template, str) and template else None


async def user_api_key_auth(request: Any, api_key: str) -> Any:
    """The hook LiteLLM calls for every authenticated route."""
    from litellm.proxy._types import LiteLLMRoutes, LitellmUserRoles, ProxyException, UserAPIKeyAuth
    from litellm.proxy.auth.auth_utils import get_request_route

    route = get_request_route(request=request)
    if route in LiteLLMRoutes.public_routes.value:
        # LiteLLM's own check lets these through without a key; so does the hook.
        return UserAPIKeyAuth(user_role=LitellmUserRoles.INTERNAL_USER_VIEW_ONLY)
    auth = gateway()
    try:
        identity = auth.authenticate(api_key)
        body = await _request_body(request)
        auth.authorize(
            identity,
            route=route,
            endpoint=_endpoint(request),
            path_params=dict(request.path_params),
            body=body,
            query=dict(request.query_params),
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


def seal_litellm_master_key() -> None:
    """A LiteLLM worker start-up hook (LITELLM_WORKER_STARTUP_HOOKS): give LiteLLM's own
    master key a random value before the worker reads its config, so the key LiteLLM accepts
    on its own paths is known to no one and dies with the worker."""
    os.environ[LITELLM_MASTER_KEY_ENV] = "sk-" + secrets.token_urlsafe(32)
