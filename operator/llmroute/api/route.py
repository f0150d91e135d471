"""The typed LLMRoute: what the operator, the renderer and the CLI read of a route.

parse_route turns the object (a dict as the API server returns it, or a manifest file) into
frozen dataclasses, once, at the edge; everything inward takes a Route. Absent fields get the
CRD's own defaults (read from the schema by llmroute.api.defaults), so a manifest that never
went through an API server parses exactly like the stored object. Types and the rules render
depends on are checked here; the cross-field rules are those of llmroute.api.validation (the
Python mirrors of the CRD's CEL rules), applied, not repeated. A spec that cannot work raises
SpecError naming the field, so objects stored before a schema change fail with a message
instead of rendering a gateway that cannot work.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from llmroute.api import validation
from llmroute.api.expose import Expose, ExposeError, parse_expose
from llmroute.api.schema import schema_default, schema_enum

# The enums of the CRD schema, read from it.
PROVIDERS: Final = frozenset(schema_enum("LLMRoute", "spec.models[].targets[].provider"))
STRATEGIES: Final = frozenset(schema_enum("LLMRoute", "spec.models[].strategy"))
MODES: Final = frozenset(schema_enum("LLMRoute", "spec.models[].mode"))
EMBEDDING_MODE: Final = "embedding"
FALLBACK_ON: Final = frozenset(schema_enum("LLMRoute", "spec.router.fallbackOn[]"))
LOG_LEVELS: Final = frozenset(schema_enum("LLMRoute", "spec.proxy.logLevel"))
# LiteLLM has one switch for upstream failures (router_settings.fallbacks): errors, rate limits
# and timeouts fall back together. Only context-window errors have a switch of their own.
UPSTREAM_FAILURES: Final = frozenset({"errors", "rateLimit", "timeout"})

# Used with fullmatch: Python's `$` also matches before a final newline, which the API
# server's patterns (Go) refuse.
_MODEL_NAME: Final = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._:/-]{0,62}")
_CALLER_NAME: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_API_BASE: Final = re.compile(r"^https?://")
_OLLAMA_MODEL: Final = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._:/-]*")
_QUANTITY: Final = re.compile(r"([0-9]+(\.[0-9]+)?)([KMGTPE]i?)?")
# No credentials in the URL: the password comes from a Secret only.
_REDIS_URL: Final = re.compile(
    r"redis://(?P<host>[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?)(:(?P<port>[0-9]{1,5}))?/?"
)
REDIS_PORT: Final = 6379


@dataclass(frozen=True)
class CredentialKey:
    """One value of a multi-value credential Secret (credentialsSecretRef)."""

    param: str  # the litellm_params key the value feeds
    secret_key: str  # the key inside the Secret
    required: bool


# The providers whose credentialsSecretRef holds several values, and the Secret keys each reads.
# The keys are the environment variable names the providers' own tooling uses, so an existing
# Secret (e.g. made with `kubectl create secret generic --from-env-file`) fits as is.
MULTI_VALUE_CREDENTIALS: Final[dict[str, tuple[CredentialKey, ...]]] = {
    "bedrock": (
        CredentialKey("aws_access_key_id", "AWS_ACCESS_KEY_ID", True),
        CredentialKey("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY", True),
        CredentialKey("aws_session_token", "AWS_SESSION_TOKEN", False),
        CredentialKey("aws_region_name", "AWS_REGION_NAME", False),
    ),
    "vertex_ai": (
        # the service account's JSON key file, as text
        CredentialKey("vertex_credentials", "VERTEXAI_CREDENTIALS", True),
        CredentialKey("vertex_project", "VERTEXAI_PROJECT", False),
        CredentialKey("vertex_location", "VERTEXAI_LOCATION", False),
    ),
    "azure": (
        # an Entra ID service principal; a plain API key goes through apiKeySecretRef
        CredentialKey("tenant_id", "AZURE_TENANT_ID", True),
        CredentialKey("client_id", "AZURE_CLIENT_ID", True),
        CredentialKey("client_secret", "AZURE_CLIENT_SECRET", True),
    ),
}

# Defaults the CRD leaves absent on purpose (its descriptions say what absence means).
TARGET_WEIGHT: Final = 1  # spec.models[].targets[].weight, read only by strategy weighted
# One worker: ~21 ms of CPU a request, so ~45 requests/s on its CPU, and ~350 MiB RSS
# (docs/benchmarks.md); 1 CPU / 1 Gi fits it with headroom.
PROXY_RESOURCES: Final = {
    "requests": {"cpu": "500m", "memory": "512Mi"},
    "limits": {"cpu": "1", "memory": "1Gi"},
}
PROXY_WORKERS: Final = 0  # 0: derived from the container's CPU and memory limits
# Counters and cached answers of one gateway: a few MB of keys, one core at most (Redis
# serves its commands on one thread; a request costs the proxy a few round trips).
REDIS_RESOURCES: Final = {
    "requests": {"cpu": "100m", "memory": "64Mi"},
    "limits": {"cpu": "1", "memory": "256Mi"},
}


def _default(path: str) -> Any:
    """The CRD's default of an LLMRoute field, e.g. ``spec.router.numRetries``."""
    return schema_default("LLMRoute", path)


def target_identity(provider: str, model: str, api_base: str | None) -> str:
    """What tells a target from the other targets of its model, whatever its position.

    "<provider>/<model>", plus a digest of its apiBase when it has one (an apiBase may be
    long and carry characters that do not belong in a metric label).
    """
    identity = f"{provider}/{model}"
    if api_base:
        digest = hashlib.sha256(api_base.rstrip("/").encode("utf-8")).hexdigest()[:8]
        identity += f"@{digest}"
    return identity


def deployment_ids(model_name: str, identities: Sequence[str]) -> tuple[str, ...]:
    """model_info.id of each target of a model in the LiteLLM config, from its identity.

    Metrics carry it (label model_id), so usage and quotas map back to the spec's target.
    "<model name>/<identity>": reordering targets keeps every id, so the pods of a rollout
    (old and new config side by side) charge each target's spend to the same id. Targets
    with the same identity (the same provider model twice, say with two keys) get "#2",
    "#3"... by their order among themselves; they match the same quotas either way.
    """
    seen: Counter[str] = Counter()
    ids = []
    for identity in identities:
        seen[identity] += 1
        repeat = f"#{seen[identity]}" if seen[identity] > 1 else ""
        ids.append(f"{model_name}/{identity}{repeat}")
    return tuple(ids)


def position_deployment_id(model_name: str, target_index: int) -> str:
    """The id releases before stable ids gave a target: its position. Read only, to count
    the spend of proxies still running such a config while they are replaced."""
    return f"{model_name}/{target_index}"


class SpecError(ValueError):
    """The route cannot work as specified; `field` names the offending spec field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class SecretKeyRef:
    name: str
    key: str


@dataclass(frozen=True)
class SecretReference:
    """A Secret the route reads, and the spec field that names it."""

    name: str
    key: str | None  # None: the Secret must exist, whichever keys it holds
    field: str  # e.g. spec.models[0].targets[1].apiKeySecretRef


@dataclass(frozen=True)
class Pricing:
    input_per_million_usd: float
    output_per_million_usd: float


@dataclass(frozen=True)
class Target:
    index: int
    path: str
    provider: str
    model: str
    api_base: str | None
    api_key_ref: SecretKeyRef | None
    credentials_secret: str | None
    api_version: str | None
    weight: int
    rpm: int | None
    tpm: int | None
    pricing: Pricing | None
    timeout_seconds: int | None
    deployment_id: str = ""  # model_info.id in the LiteLLM config (deployment_ids)


@dataclass(frozen=True)
class Model:
    index: int
    name: str
    strategy: str
    targets: tuple[Target, ...]
    fallbacks: tuple[str, ...]
    mode: str  # spec.models[].mode: chat, or embedding (/v1/embeddings)

    @property
    def embeds(self) -> bool:
        return self.mode == EMBEDDING_MODE


@dataclass(frozen=True)
class ManagedRedis:
    """spec.redis.managed: a Redis StatefulSet the operator runs for the route."""

    resources: dict[str, Any]
    persistence: bool  # an append-only file on a volume; off: counters and cache only
    storage_size: str
    storage_class: str | None  # None: the cluster's default class; "": no class


@dataclass(frozen=True)
class ExternalRedis:
    """spec.redis.external: a Redis the cluster already runs."""

    host: str
    port: int
    password_ref: SecretKeyRef | None
    tls: bool


@dataclass(frozen=True)
class Redis:
    """spec.redis: exactly one of managed and external."""

    managed: ManagedRedis | None
    external: ExternalRedis | None


@dataclass(frozen=True)
class RouterSettings:
    num_retries: int
    timeout_seconds: int
    fallback_on: frozenset[str]
    allowed_fails: int
    cooldown_seconds: int
    cache_enabled: bool
    cache_ttl_seconds: int


@dataclass(frozen=True)
class Caller:
    name: str
    path: str
    key_ref: SecretKeyRef
    models: tuple[str, ...] | None
    tags: tuple[str, ...] | None


@dataclass(frozen=True)
class Autoscaling:
    enabled: bool
    min_replicas: int
    max_replicas: int
    target_cpu_percent: int


@dataclass(frozen=True)
class ProxyEnvVar:
    """A variable of spec.proxy.env: a value, or a key of a Secret."""

    name: str
    value: str | None
    secret_ref: SecretKeyRef | None
    path: str


@dataclass(frozen=True)
class LiteLLMSettings:
    """spec.proxy.litellm: settings merged into the rendered config (owned keys refused)."""

    litellm_settings: dict[str, Any] = field(default_factory=dict)
    router_settings: dict[str, Any] = field(default_factory=dict)
    general_settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Proxy:
    replicas: int
    autoscaling: Autoscaling
    resources: dict[str, Any]
    image: str | None
    workers: int
    log_level: str
    litellm: LiteLLMSettings = field(default_factory=LiteLLMSettings)
    env: tuple[ProxyEnvVar, ...] = ()


@dataclass(frozen=True)
class Ollama:
    """The route's managed Ollama (spec.ollama without external)."""

    models: tuple[str, ...]  # pulled before the pod turns Ready, in spec order
    storage_size: str
    storage_class: str | None  # None: the cluster's default class; "": no class
    resources: dict[str, Any]
    gpu_count: int
    gpu_resource: str
    node_selector: dict[str, str]
    tolerations: tuple[dict[str, Any], ...]
    keep_alive: str
    num_parallel: int


@dataclass(frozen=True)
class Route:
    name: str
    namespace: str
    models: tuple[Model, ...]
    router: RouterSettings
    master_key_ref: SecretKeyRef | None
    callers: tuple[Caller, ...]
    access_from: tuple[dict[str, Any], ...]
    tasks: tuple[str, ...]
    proxy: Proxy
    ollama_external_url: str | None
    ollama: Ollama | None = None  # None: no managed Ollama (spec.ollama absent or external)
    expose: Expose | None = None  # None: reached only inside the cluster
    redis: Redis | None = None  # None: no shared Redis; limits are counted per process

    def model(self, name: str) -> Model:
        return next(m for m in self.models if m.name == name)

    def secret_references(self) -> tuple[SecretReference, ...]:
        """Every Secret the route references, in spec order, each with its field."""
        refs: list[SecretReference] = []
        if self.master_key_ref is not None:
            ref = self.master_key_ref
            refs.append(SecretReference(ref.name, ref.key, "spec.auth.masterKeySecretRef"))
        for model in self.models:
            for target in model.targets:
                if target.api_key_ref is not None:
                    ref = target.api_key_ref
                    refs.append(
                        SecretReference(ref.name, ref.key, f"{target.path}.apiKeySecretRef")
                    )
                if target.credentials_secret is not None:
                    # Each key the pods cannot start without; the optional ones may be absent.
                    required = [
                        c.secret_key for c in MULTI_VALUE_CREDENTIALS[target.provider] if c.required
                    ] or [None]
                    refs.extend(
                        SecretReference(
                            target.credentials_secret, key, f"{target.path}.credentialsSecretRef"
                        )
                        for key in required
                    )
        external = self.redis.external if self.redis is not None else None
        if external is not None and external.password_ref is not None:
            ref = external.password_ref
            refs.append(SecretReference(ref.name, ref.key, "spec.redis.external.passwordSecretRef"))
        for variable in self.proxy.env:
            if variable.secret_ref is not None:
                ref = variable.secret_ref
                refs.append(
                    SecretReference(ref.name, ref.key, f"{variable.path}.valueFrom.secretKeyRef")
                )
        for caller in self.callers:
            refs.append(
                SecretReference(
                    caller.key_ref.name, caller.key_ref.key, f"{caller.path}.keySecretRef"
                )
            )
        return tuple(refs)


def _refuse(errors: Iterable[validation.ValidationError]) -> None:
    """Raise the first error of a cross-field rule of llmroute.api.validation, if any."""
    for error in errors:
        raise SpecError(error.path, error.message)


def _mapping(value: object, field: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(field, "must be an object")
    return value


def _list(value: object, field: str) -> Sequence[Any]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise SpecError(field, "must be a list")
    return value


def _str(value: object, field: str, *, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            raise SpecError(field, "is required")
        return None
    if not isinstance(value, str):
        raise SpecError(field, "must be a string")
    return value


def _int(value: object, field: str, default: int | None, *, minimum: int = 0) -> int | None:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(field, "must be an integer")
    if value < minimum:
        raise SpecError(field, f"must be at least {minimum}")
    return value


def _number(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(field, "must be a number")
    if value < 0:
        raise SpecError(field, "must not be negative")
    return float(value)


def _secret_key_ref(value: object, field: str) -> SecretKeyRef | None:
    if value is None:
        return None
    ref = _mapping(value, field)
    return SecretKeyRef(
        name=_str(ref.get("name"), f"{field}.name", required=True) or "",
        key=_str(ref.get("key"), f"{field}.key", required=True) or "",
    )


def _names(value: object, field: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = tuple(
        _str(v, f"{field}[{i}]", required=True) or "" for i, v in enumerate(_list(value, field))
    )
    if len(set(items)) != len(items):
        raise SpecError(field, "must not repeat an entry")
    return items


def _target(raw: object, path: str, index: int) -> Target:
    spec = _mapping(raw, path)
    provider = _str(spec.get("provider"), f"{path}.provider", required=True) or ""
    if provider not in PROVIDERS:
        raise SpecError(f"{path}.provider", f"unknown provider {provider!r}")
    model = _str(spec.get("model"), f"{path}.model", required=True) or ""
    api_base = _str(spec.get("apiBase"), f"{path}.apiBase")
    if api_base is not None and not _API_BASE.match(api_base):
        raise SpecError(f"{path}.apiBase", "must start with http:// or https://")
    api_key_ref = _secret_key_ref(spec.get("apiKeySecretRef"), f"{path}.apiKeySecretRef")
    credentials = _mapping(spec.get("credentialsSecretRef"), f"{path}.credentialsSecretRef")
    credentials_secret = (
        _str(credentials.get("name"), f"{path}.credentialsSecretRef.name", required=True)
        if spec.get("credentialsSecretRef") is not None
        else None
    )
    _refuse(
        validation.credential_errors(path, api_key_ref is not None, credentials_secret is not None)
    )
    if credentials_secret is not None and provider not in MULTI_VALUE_CREDENTIALS:
        raise SpecError(
            f"{path}.credentialsSecretRef",
            f"is read for providers {', '.join(sorted(MULTI_VALUE_CREDENTIALS))}; "
            f"use apiKeySecretRef for {provider}",
        )
    _refuse(validation.endpoint_errors(path, provider, api_base is not None))
    pricing_spec = spec.get("pricing")
    pricing = None
    if pricing_spec is not None:
        p = _mapping(pricing_spec, f"{path}.pricing")
        for field in ("inputPerMillionUSD", "outputPerMillionUSD"):
            if p.get(field) is None:
                raise SpecError(f"{path}.pricing.{field}", "is required when pricing is set")
        pricing = Pricing(
            input_per_million_usd=_number(
                p["inputPerMillionUSD"], f"{path}.pricing.inputPerMillionUSD"
            ),
            output_per_million_usd=_number(
                p["outputPerMillionUSD"], f"{path}.pricing.outputPerMillionUSD"
            ),
        )
    return Target(
        index=index,
        path=path,
        provider=provider,
        model=model,
        api_base=api_base,
        api_key_ref=api_key_ref,
        credentials_secret=credentials_secret,
        api_version=_str(spec.get("apiVersion"), f"{path}.apiVersion"),
        weight=_int(spec.get("weight"), f"{path}.weight", TARGET_WEIGHT, minimum=1)
        or TARGET_WEIGHT,
        rpm=_int(spec.get("rpm"), f"{path}.rpm", None, minimum=1),
        tpm=_int(spec.get("tpm"), f"{path}.tpm", None, minimum=1),
        pricing=pricing,
        timeout_seconds=_int(spec.get("timeoutSeconds"), f"{path}.timeoutSeconds", None, minimum=1),
    )


def _models(raw: object) -> tuple[Model, ...]:
    items = _list(raw, "spec.models")
    if not items:
        raise SpecError("spec.models", "must name at least one model")
    models: list[Model] = []
    for i, item in enumerate(items):
        path = f"spec.models[{i}]"
        spec = _mapping(item, path)
        name = _str(spec.get("name"), f"{path}.name", required=True) or ""
        if not _MODEL_NAME.fullmatch(name):
            raise SpecError(f"{path}.name", f"{name!r} is not a valid model name")
        strategy = _str(spec.get("strategy"), f"{path}.strategy") or _default(
            "spec.models[].strategy"
        )
        if strategy not in STRATEGIES:
            raise SpecError(f"{path}.strategy", f"unknown strategy {strategy!r}")
        targets_raw = _list(spec.get("targets"), f"{path}.targets")
        if not targets_raw:
            raise SpecError(f"{path}.targets", "must list at least one target")
        if len(targets_raw) > 16:
            raise SpecError(f"{path}.targets", "must list at most 16 targets")
        parsed = [_target(t, f"{path}.targets[{j}]", j) for j, t in enumerate(targets_raw)]
        ids = deployment_ids(
            name, [target_identity(t.provider, t.model, t.api_base) for t in parsed]
        )
        targets = tuple(
            dataclasses.replace(t, deployment_id=d) for t, d in zip(parsed, ids, strict=True)
        )
        fallbacks = _names(spec.get("fallbacks"), f"{path}.fallbacks") or ()
        mode = _str(spec.get("mode"), f"{path}.mode") or _default("spec.models[].mode")
        if mode not in MODES:
            raise SpecError(f"{path}.mode", f"unknown mode {mode!r}")
        models.append(Model(i, name, strategy, targets, fallbacks, mode))
    names = [m.name for m in models]
    for m in models:
        if m.name in names[: m.index]:
            raise SpecError(f"spec.models[{m.index}].name", f"model {m.name!r} is declared twice")
    # A request keeps its endpoint when it falls back: an embedding request cannot be served
    # by a chat model, nor a chat request by an embedding model.
    modes = {m.name: m.mode for m in models}
    for m in models:
        for j, fallback in enumerate(m.fallbacks):
            if fallback in modes and modes[fallback] != m.mode:
                raise SpecError(
                    f"spec.models[{m.index}].fallbacks[{j}]",
                    f"model {fallback!r} serves {modes[fallback]}, not {m.mode}",
                )
    for m in models:
        _refuse(validation.fallback_errors(f"spec.models[{m.index}]", m.name, m.fallbacks, names))
    return tuple(models)


def _router(raw: object) -> RouterSettings:
    spec = _mapping(raw, "spec.router")
    fallback_on_raw = spec.get("fallbackOn")
    fallback_on = (
        frozenset(_default("spec.router.fallbackOn"))
        if fallback_on_raw is None
        else frozenset(_names(fallback_on_raw, "spec.router.fallbackOn") or ())
    )
    unknown = fallback_on - FALLBACK_ON
    if unknown:
        raise SpecError("spec.router.fallbackOn", f"unknown entries {sorted(unknown)}")
    if fallback_on & UPSTREAM_FAILURES and not fallback_on >= UPSTREAM_FAILURES:
        raise SpecError(
            "spec.router.fallbackOn",
            "LiteLLM falls back on upstream errors, rate limits and timeouts alike; "
            "list all of errors, rateLimit and timeout, or none of them",
        )
    cache = _mapping(spec.get("cache"), "spec.router.cache")
    cache_enabled = cache.get("enabled", _default("spec.router.cache.enabled"))
    if not isinstance(cache_enabled, bool):
        raise SpecError("spec.router.cache.enabled", "must be true or false")
    _refuse(validation.moved_router_redis_errors(spec))

    def number(field: str, default: int, minimum: int) -> int:
        value = _int(spec.get(field), f"spec.router.{field}", default, minimum=minimum)
        return default if value is None else value

    return RouterSettings(
        num_retries=number("numRetries", _default("spec.router.numRetries"), 0),
        timeout_seconds=number("timeoutSeconds", _default("spec.router.timeoutSeconds"), 1),
        fallback_on=fallback_on,
        allowed_fails=number("allowedFails", _default("spec.router.allowedFails"), 0),
        cooldown_seconds=number("cooldownSeconds", _default("spec.router.cooldownSeconds"), 0),
        cache_enabled=cache_enabled,
        cache_ttl_seconds=_int(
            cache.get("ttlSeconds"),
            "spec.router.cache.ttlSeconds",
            _default("spec.router.cache.ttlSeconds"),
            minimum=1,
        )
        or _default("spec.router.cache.ttlSeconds"),
    )


def _callers(raw: object, model_names: Sequence[str]) -> tuple[Caller, ...]:
    callers: list[Caller] = []
    for i, item in enumerate(_list(raw, "spec.auth.callers")):
        path = f"spec.auth.callers[{i}]"
        spec = _mapping(item, path)
        name = _str(spec.get("name"), f"{path}.name", required=True) or ""
        if len(name) > 63 or not _CALLER_NAME.fullmatch(name):
            raise SpecError(f"{path}.name", f"{name!r} is not a valid caller name")
        if any(c.name == name for c in callers):
            raise SpecError(f"{path}.name", f"caller {name!r} is declared twice")
        key_ref = _secret_key_ref(spec.get("keySecretRef"), f"{path}.keySecretRef")
        if key_ref is None:
            raise SpecError(f"{path}.keySecretRef", "is required")
        models = _names(spec.get("models"), f"{path}.models")
        _refuse(validation.caller_model_errors(path, models or (), model_names))
        tags = _names(spec.get("tags"), f"{path}.tags")
        callers.append(Caller(name, path, key_ref, models, tags))
    return tuple(callers)


def _proxy(raw: object) -> Proxy:
    spec = _mapping(raw, "spec.proxy")
    scaling = _mapping(spec.get("autoscaling"), "spec.proxy.autoscaling")
    enabled = scaling.get("enabled", _default("spec.proxy.autoscaling.enabled"))
    if not isinstance(enabled, bool):
        raise SpecError("spec.proxy.autoscaling.enabled", "must be true or false")

    def number(
        mapping: Mapping[str, Any], field: str, path: str, default: int, minimum: int
    ) -> int:
        value = _int(mapping.get(field), f"{path}.{field}", default, minimum=minimum)
        return default if value is None else value

    autoscaling = Autoscaling(
        enabled=enabled,
        min_replicas=number(
            scaling,
            "minReplicas",
            "spec.proxy.autoscaling",
            _default("spec.proxy.autoscaling.minReplicas"),
            1,
        ),
        max_replicas=number(
            scaling,
            "maxReplicas",
            "spec.proxy.autoscaling",
            _default("spec.proxy.autoscaling.maxReplicas"),
            1,
        ),
        target_cpu_percent=number(
            scaling,
            "targetCPUUtilizationPercentage",
            "spec.proxy.autoscaling",
            _default("spec.proxy.autoscaling.targetCPUUtilizationPercentage"),
            1,
        ),
    )
    _refuse(validation.replica_bound_errors(autoscaling.min_replicas, autoscaling.max_replicas))
    resources = spec.get("resources")
    log_level = _str(spec.get("logLevel"), "spec.proxy.logLevel") or _default("spec.proxy.logLevel")
    if log_level not in LOG_LEVELS:
        raise SpecError("spec.proxy.logLevel", f"unknown log level {log_level!r}")
    return Proxy(
        replicas=number(spec, "replicas", "spec.proxy", _default("spec.proxy.replicas"), 0),
        autoscaling=autoscaling,
        resources=dict(_mapping(resources, "spec.proxy.resources"))
        if resources is not None
        else dict(PROXY_RESOURCES),
        image=_str(spec.get("image"), "spec.proxy.image"),
        workers=number(spec, "workers", "spec.proxy", PROXY_WORKERS, 0),
        log_level=log_level,
        litellm=_litellm_settings(spec.get("litellm")),
        env=_proxy_env(spec.get("env")),
    )


def _litellm_settings(raw: object) -> LiteLLMSettings:
    path = "spec.proxy.litellm"
    spec = _mapping(raw, path)
    sections = {
        section: dict(_mapping(spec.get(section), f"{path}.{section}"))
        for section in validation.LITELLM_OWNED_SETTINGS
    }
    _refuse(validation.litellm_settings_errors(sections))
    return LiteLLMSettings(
        litellm_settings=sections["litellmSettings"],
        router_settings=sections["routerSettings"],
        general_settings=sections["generalSettings"],
    )


def _proxy_env(raw: object) -> tuple[ProxyEnvVar, ...]:
    variables: list[ProxyEnvVar] = []
    for i, item in enumerate(_list(raw, "spec.proxy.env")):
        path = f"spec.proxy.env[{i}]"
        spec = _mapping(item, path)
        _refuse(validation.proxy_env_errors(path, spec))
        name = _str(spec.get("name"), f"{path}.name", required=True) or ""
        if any(v.name == name for v in variables):
            raise SpecError(f"{path}.name", f"{name} is set twice")
        value_from = _mapping(spec.get("valueFrom"), f"{path}.valueFrom")
        variables.append(
            ProxyEnvVar(
                name=name,
                value=_str(spec.get("value"), f"{path}.value"),
                secret_ref=_secret_key_ref(
                    value_from.get("secretKeyRef"), f"{path}.valueFrom.secretKeyRef"
                ),
                path=path,
            )
        )
    return tuple(variables)


def _ollama_default(field: str) -> Any:
    # Also where the object holding a field is absent: an Ollama without `storage` still gets
    # a volume of the default size.
    return _default(f"spec.ollama.{field}")


def _managed_ollama(spec: Mapping[str, Any]) -> Ollama:
    path = "spec.ollama"
    models = _names(spec.get("models"), f"{path}.models") or ()
    for i, model in enumerate(models):
        if not _OLLAMA_MODEL.fullmatch(model):
            raise SpecError(f"{path}.models[{i}]", f"{model!r} is not a valid Ollama model name")
    storage = _mapping(spec.get("storage"), f"{path}.storage")
    size = _str(storage.get("size"), f"{path}.storage.size") or _ollama_default("storage.size")
    if not _QUANTITY.fullmatch(size):
        raise SpecError(f"{path}.storage.size", f"{size!r} is not a volume size such as 20Gi")
    # "" is meaningful here (no class: a pre-provisioned volume), so it is not read as absent.
    storage_class = storage.get("storageClassName")
    if storage_class is not None and not isinstance(storage_class, str):
        raise SpecError(f"{path}.storage.storageClassName", "must be a string")
    gpu = _mapping(spec.get("gpu"), f"{path}.gpu")
    gpu_count = _int(gpu.get("count"), f"{path}.gpu.count", _ollama_default("gpu.count"))
    node_selector = _mapping(spec.get("nodeSelector"), f"{path}.nodeSelector")
    for key, value in node_selector.items():
        if not isinstance(value, str):
            raise SpecError(f"{path}.nodeSelector.{key}", "must be a string")
    num_parallel = _int(
        spec.get("numParallel"), f"{path}.numParallel", _ollama_default("numParallel"), minimum=1
    )
    return Ollama(
        models=models,
        storage_size=size,
        storage_class=storage_class,
        resources=dict(_mapping(spec.get("resources"), f"{path}.resources")),
        gpu_count=gpu_count or 0,
        gpu_resource=_str(gpu.get("resourceName"), f"{path}.gpu.resourceName")
        or _ollama_default("gpu.resourceName"),
        node_selector=dict(node_selector),
        tolerations=tuple(
            dict(_mapping(t, f"{path}.tolerations[{i}]"))
            for i, t in enumerate(_list(spec.get("tolerations"), f"{path}.tolerations"))
        ),
        keep_alive=_str(spec.get("keepAlive"), f"{path}.keepAlive") or _ollama_default("keepAlive"),
        num_parallel=num_parallel or _ollama_default("numParallel"),
    )


def _redis(raw: object) -> Redis | None:
    if raw is None:
        return None
    path = "spec.redis"
    spec = _mapping(raw, path)
    _refuse(validation.redis_mode_errors(spec))
    if spec.get("external") is not None:
        external = _mapping(spec["external"], f"{path}.external")
        url = _str(external.get("url"), f"{path}.external.url", required=True) or ""
        match = _REDIS_URL.fullmatch(url)
        port = int(match["port"]) if match and match["port"] else REDIS_PORT
        if match is None or not 1 <= port <= 65535:
            raise SpecError(
                f"{path}.external.url", f"{url!r} is not redis://HOST:PORT (no credentials)"
            )
        tls = external.get("tls", _default(f"{path}.external.tls"))
        if not isinstance(tls, bool):
            raise SpecError(f"{path}.external.tls", "must be true or false")
        return Redis(
            managed=None,
            external=ExternalRedis(
                host=match["host"],
                port=port,
                password_ref=_secret_key_ref(
                    external.get("passwordSecretRef"), f"{path}.external.passwordSecretRef"
                ),
                tls=tls,
            ),
        )
    managed = _mapping(spec.get("managed"), f"{path}.managed")
    persistence = _mapping(managed.get("persistence"), f"{path}.managed.persistence")
    enabled = persistence.get("enabled", _default(f"{path}.managed.persistence.enabled"))
    if not isinstance(enabled, bool):
        raise SpecError(f"{path}.managed.persistence.enabled", "must be true or false")
    size = _str(persistence.get("size"), f"{path}.managed.persistence.size") or _default(
        f"{path}.managed.persistence.size"
    )
    if not _QUANTITY.fullmatch(size):
        raise SpecError(
            f"{path}.managed.persistence.size", f"{size!r} is not a volume size such as 1Gi"
        )
    storage_class = persistence.get("storageClassName")
    if storage_class is not None and not isinstance(storage_class, str):
        raise SpecError(f"{path}.managed.persistence.storageClassName", "must be a string")
    resources = managed.get("resources")
    return Redis(
        managed=ManagedRedis(
            resources=dict(_mapping(resources, f"{path}.managed.resources"))
            if resources is not None
            else dict(REDIS_RESOURCES),
            persistence=enabled,
            storage_size=size,
            storage_class=storage_class,
        ),
        external=None,
    )


def parse_route(route: Mapping[str, Any]) -> Route:
    """Read an LLMRoute object (a dict as the API server returns it, defaults possibly absent)."""
    metadata = _mapping(route.get("metadata"), "metadata")
    name = _str(metadata.get("name"), "metadata.name", required=True) or ""
    namespace = _str(metadata.get("namespace"), "metadata.namespace") or "default"
    spec = _mapping(route.get("spec"), "spec")
    models = _models(spec.get("models"))
    auth = _mapping(spec.get("auth"), "spec.auth")
    access = _mapping(spec.get("access"), "spec.access")
    access_from = tuple(
        dict(_mapping(peer, f"spec.access.from[{i}]"))
        for i, peer in enumerate(_list(access.get("from"), "spec.access.from"))
    )
    ollama = _mapping(spec.get("ollama"), "spec.ollama")
    external = _mapping(ollama.get("external"), "spec.ollama.external")
    external_url = _str(external.get("url"), "spec.ollama.external.url")
    if external_url is not None and not _API_BASE.match(external_url):
        raise SpecError("spec.ollama.external.url", "must start with http:// or https://")
    _refuse(validation.external_ollama_errors(ollama))
    try:
        expose = parse_expose(spec.get("expose"))
    except ExposeError as error:
        raise SpecError(error.field, error.message) from error
    return Route(
        name=name,
        namespace=namespace,
        models=models,
        router=_router(spec.get("router")),
        master_key_ref=_secret_key_ref(
            auth.get("masterKeySecretRef"), "spec.auth.masterKeySecretRef"
        ),
        callers=_callers(auth.get("callers"), [m.name for m in models]),
        access_from=access_from,
        tasks=_names(spec.get("tasks"), "spec.tasks") or (),
        proxy=_proxy(spec.get("proxy")),
        ollama_external_url=external_url.rstrip("/") if external_url else None,
        ollama=(
            _managed_ollama(ollama)
            if spec.get("ollama") is not None and external_url is None
            else None
        ),
        expose=expose,
        redis=_redis(spec.get("redis")),
    )
