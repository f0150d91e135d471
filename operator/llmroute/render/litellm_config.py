"""The LiteLLM proxy config (config.yaml) of a route, as a dict.

Keys follow litellm 1.106.2 (llmroute.versions.LITELLM_VERSION): model_list and its
litellm_params, router_settings (the arguments of litellm.Router), litellm_settings and
general_settings of the proxy.
"""

from __future__ import annotations

from typing import Any, Final

from llmroute.api.route import MULTI_VALUE_CREDENTIALS, Model, Route, Target
from llmroute.render.credentials import LITELLM_MASTER_KEY_ENV, SecretEnvs, env_ref
from llmroute.render.names import managed_ollama_url
from llmroute.render.quota_effects import declared_order
from llmroute.render.redis_connection import redis_connection
from llmroute.render.sizing import (
    LimitDivision,
    LimitShare,
    divide_limit,
    limit_processes,
)

AUTH_MODULE: Final = "llmroute_auth"
AUTH_FUNCTION: Final = f"{AUTH_MODULE}.user_api_key_auth"
# Run by every LiteLLM worker before it reads the config (LITELLM_WORKER_STARTUP_HOOKS).
STARTUP_HOOK: Final = f"{AUTH_MODULE}:seal_litellm_master_key"
# payloads/stream_usage.py, shipped next to config.yaml.
STREAM_USAGE_CALLBACK: Final = "llmroute_stream_usage.stream_usage"
# payloads/quota_routing.py, shipped next to config.yaml: applies the quotas' states live.
QUOTA_ROUTING_CALLBACK: Final = "llmroute_quota_routing.quota_routing"

# Cluster-wide (rpm, tpm) of each target, by deployment id (quota_effects.target_limits).
TargetLimits = dict[str, tuple[int | None, int | None]]

# Prefixes of litellm_params.model, by spec provider.
PROVIDER_PREFIX: Final = {
    "anthropic": "anthropic",
    "openai": "openai",
    "gemini": "gemini",
    "azure": "azure",
    "bedrock": "bedrock",
    "vertex_ai": "vertex_ai",
    "mistral": "mistral",
    "groq": "groq",
    # ollama_chat speaks Ollama's /api/chat: the server applies the model's own chat template
    # and tool calling works. Plain `ollama/` flattens messages into one /api/generate prompt.
    # Both stream, and both raise LiteLLM's mapped errors, so fallbacks behave the same.
    "ollama": "ollama_chat",
    # Any server that speaks the OpenAI API, at the target's apiBase.
    "openai-compatible": "openai",
}
# Prefixes of an embedding model's targets where they differ: LiteLLM 1.106.2 maps no
# embedding provider for ollama_chat (litellm.embedding refuses it); ollama/ embeds through
# Ollama's /api/embed.
EMBEDDING_PROVIDER_PREFIX: Final = {**PROVIDER_PREFIX, "ollama": "ollama"}

# Routing strategies that LiteLLM runs per model through router_settings.routing_groups.
# priority and weighted are LiteLLM's default simple-shuffle, steered by `order` and `weight`.
GROUP_STRATEGIES: Final = {
    "cost": "cost-based-routing",
    "latency": "latency-based-routing",
    "least-busy": "least-busy",
}

# Labels that grow with clients rather than with the route; LiteLLM refuses to start on a
# name it does not know, so only names litellm 1.106.2 defines.
PROMETHEUS_EXCLUDED_LABELS: Final = (
    "client_ip",
    "user_agent",
    "hashed_api_key",
    "end_user",
    "user_email",
    "org_id",
    "org_alias",
)

# LiteLLM's cost router reads a zero price as "no price" and ranks the target as expensive
# ($5 a token). A free target (a local Ollama) must win instead: give it a price so small that
# spend stays zero to the precision anyone reads it at.
MIN_ROUTING_PRICE_PER_TOKEN: Final = 1e-12

# openai-compatible servers often need no key, but the OpenAI client refuses to start without one.
NO_KEY: Final = "no-key"


def _api_base(route: Route, target: Target) -> str | None:
    if target.api_base is not None:
        return target.api_base
    if target.provider == "ollama":
        return route.ollama_external_url or managed_ollama_url(route.name, route.namespace)
    return None


def _price(per_million: float, cost_strategy: bool) -> float:
    per_token = per_million / 1_000_000
    if cost_strategy and per_token == 0:
        return MIN_ROUTING_PRICE_PER_TOKEN
    return per_token


def limit_division(route: Route, limits: TargetLimits) -> LimitDivision:
    """Every rpm/tpm limit of the route's config, and each process's share of it.

    Without Redis each LiteLLM process counts on its own, so each gets its share of the
    limit, rounded up (llmroute.render.sizing.limit_processes says by how many processes).
    """
    processes = limit_processes(route)
    shares = []
    for model in route.models:
        for target in model.targets:
            rpm, tpm = limits.get(target.deployment_id, (None, None))
            for kind, limit in (("rpm", rpm), ("tpm", tpm)):
                if limit is not None:
                    per_process = divide_limit(limit, processes.fewest)
                    shares.append(LimitShare(target.deployment_id, kind, limit, per_process))
    return LimitDivision(processes, tuple(shares))


def _litellm_params(
    route: Route,
    model: Model,
    target: Target,
    envs: SecretEnvs,
    shares: dict[tuple[str, str], int],
) -> dict[str, Any]:
    strategy = model.strategy
    prefixes = EMBEDDING_PROVIDER_PREFIX if model.embeds else PROVIDER_PREFIX
    params: dict[str, Any] = {"model": f"{prefixes[target.provider]}/{target.model}"}
    api_base = _api_base(route, target)
    if api_base is not None:
        params["api_base"] = api_base
    if target.api_version is not None:
        params["api_version"] = target.api_version
    if target.api_key_ref is not None:
        params["api_key"] = envs.ref(target.api_key_ref.name, target.api_key_ref.key)
    elif target.credentials_secret is not None:
        for cred in MULTI_VALUE_CREDENTIALS[target.provider]:
            params[cred.param] = envs.ref(
                target.credentials_secret, cred.secret_key, optional=not cred.required
            )
    elif target.provider == "openai-compatible":
        params["api_key"] = NO_KEY
    order = declared_order(model, target)
    if order is not None:
        params["order"] = order
    if strategy == "weighted":
        params["weight"] = target.weight
    # Each process's share of the cluster-wide limits (limit_division).
    for kind in ("rpm", "tpm"):
        if (target.deployment_id, kind) in shares:
            params[kind] = shares[(target.deployment_id, kind)]
    cost_strategy = strategy == "cost"
    if target.pricing is not None:
        params["input_cost_per_token"] = _price(target.pricing.input_per_million_usd, cost_strategy)
        params["output_cost_per_token"] = _price(
            target.pricing.output_per_million_usd, cost_strategy
        )
    elif target.provider == "ollama":
        # Local models cost nothing; saying so keeps spend at zero instead of unpriced.
        params["input_cost_per_token"] = _price(0, cost_strategy)
        params["output_cost_per_token"] = _price(0, cost_strategy)
    if target.timeout_seconds is not None:
        params["timeout"] = target.timeout_seconds
    return params


def render_litellm_config(route: Route, limits: TargetLimits, envs: SecretEnvs) -> dict[str, Any]:
    """The config.yaml of the route's proxy; registers the Secret-fed env vars it names in envs.

    Every target of the spec is in it, whatever the quotas' states: those reach the running
    proxies through the quota routing file (render.quota_routing), so the config, and the
    pods, stay as they are when a quota changes state.
    """
    shares = {(s.deployment, s.kind): s.per_process for s in limit_division(route, limits).shares}
    model_list: list[dict[str, Any]] = []
    for model in route.models:
        for target in model.targets:
            model_info: dict[str, Any] = {"id": target.deployment_id}
            if model.embeds:
                # LiteLLM's health checks embed instead of chatting with such a deployment.
                model_info["mode"] = model.mode
            model_list.append(
                {
                    "model_name": model.name,
                    "litellm_params": _litellm_params(route, model, target, envs, shares),
                    "model_info": model_info,
                }
            )

    extra = route.proxy.litellm
    litellm_settings = _litellm_settings(route, envs)
    # Keys llmroute owns were refused when the spec was parsed, so these add only new ones.
    callbacks = [*litellm_settings["callbacks"]]
    callbacks += [c for c in extra.litellm_settings.get("callbacks", ()) if c not in callbacks]
    return {
        "model_list": model_list,
        "router_settings": {
            **_router_settings(route, envs, model_list),
            **extra.router_settings,
        },
        "litellm_settings": {**litellm_settings, **extra.litellm_settings, "callbacks": callbacks},
        "general_settings": {
            # LiteLLM will not start without a master key and accepts it on paths that skip
            # custom_auth; this one is random per worker and known to no one, so the route's
            # master key (read by the hook from its file) is the only one, and revocable.
            "master_key": env_ref(LITELLM_MASTER_KEY_ENV),
            # Without a database LiteLLM answers a wrong key with 400 "No connected db.";
            # the hook answers 401, knows the route's callers, and reads rotated keys.
            "custom_auth": AUTH_FUNCTION,
            **extra.general_settings,
        },
    }


def _router_settings(
    route: Route,
    envs: SecretEnvs,
    model_list: list[dict[str, Any]],
) -> dict[str, Any]:
    router = route.router
    settings: dict[str, Any] = {
        # LiteLLM's strategy setting is global; models with another strategy get a routing group.
        "routing_strategy": "simple-shuffle",
        "num_retries": router.num_retries,
        "timeout": router.timeout_seconds,
        "allowed_fails": router.allowed_fails,
        "cooldown_time": router.cooldown_seconds,
        # Every move to the next priority level of a model counts as one fallback, as does every
        # move to a fallback model: allow as many as there are targets, so no chain is cut short
        # (LiteLLM's default is 5).
        "max_fallbacks": max(5, len(model_list)),
    }
    groups = [
        {
            # Named like the model it governs, so the group adds no new callable model name
            # (LiteLLM logs that the name is shadowed, which is the intent).
            "group_name": model.name,
            "models": [model.name],
            "routing_strategy": GROUP_STRATEGIES[model.strategy],
        }
        for model in route.models
        if model.strategy in GROUP_STRATEGIES
    ]
    if groups:
        settings["routing_groups"] = groups

    # As written: a fallback model whose targets are all out of budget fails at once (the
    # quota filter), and LiteLLM moves on to the next one.
    chains = {
        model.name: chain
        for model in route.models
        if (chain := [f for f in dict.fromkeys(model.fallbacks) if f != model.name])
    }
    if router.fallback_on & {"errors", "rateLimit", "timeout"} and chains:
        settings["fallbacks"] = [{name: list(chain)} for name, chain in chains.items()]
    # A provider's "prompt too long" answer reaches the router as ContextWindowExceededError.
    # (enable_pre_call_checks would catch it before the call, but only for models in LiteLLM's
    # price map, and it logs an error with a traceback for every request to any other model.)
    if "contextWindow" in router.fallback_on:
        if chains:
            settings["context_window_fallbacks"] = [
                {name: list(chain)} for name, chain in chains.items()
            ]
    elif "fallbacks" in settings:
        # Without its own entry a context-window error would take the general chain;
        # an empty chain makes LiteLLM return the error instead.
        settings["context_window_fallbacks"] = [{name: []} for name in chains]
    if any("rpm" in d["litellm_params"] or "tpm" in d["litellm_params"] for d in model_list):
        # Without this check LiteLLM reads rpm/tpm only as routing weights.
        settings["optional_pre_call_checks"] = ["enforce_model_rate_limits"]
    redis = redis_connection(route)
    if redis is not None:
        settings["redis_host"] = redis.host
        settings["redis_port"] = redis.port
        if redis.password_ref is not None:
            settings["redis_password"] = envs.ref(redis.password_ref.name, redis.password_ref.key)
        # Routes may share one Redis: keep each route's counters and cooldowns apart.
        settings["cache_kwargs"] = {"namespace": _redis_namespace(route)}
        if redis.tls:
            settings["cache_kwargs"]["ssl"] = True
    return settings


def _redis_namespace(route: Route) -> str:
    return f"llmroute:{route.namespace}:{route.name}"


def _litellm_settings(route: Route, envs: SecretEnvs) -> dict[str, Any]:
    router = route.router
    settings: dict[str, Any] = {
        # Quota accounting reads prometheus; it cost 0.1-2.2 ms of the ~20 ms of CPU a request
        # takes (docs/benchmarks.md). The stream-usage hook makes every provider report a
        # stream's usage, which LiteLLM does not ask for in chains that mix providers.
        # The quota filter applies the quotas' states to each request's deployments.
        "callbacks": ["prometheus", STREAM_USAGE_CALLBACK, QUOTA_ROUTING_CALLBACK],
        # The operator scrapes /metrics without a key; the NetworkPolicy limits who can.
        "require_auth_for_metrics_endpoint": False,
        "prometheus_exclude_labels": list(PROMETHEUS_EXCLUDED_LABELS),
        # A provider that lacks an OpenAI parameter gets the request without it, instead of
        # failing it: fallback chains mix providers.
        "drop_params": True,
        "request_timeout": router.timeout_seconds,
    }
    if route.tasks:
        # One bounded label per declared task (tag_task_<t>="true|false"), true when the
        # request carries the tag "task:<t>"; undeclared request tags add no series.
        settings["custom_prometheus_tags"] = [f"task:{task}" for task in route.tasks]
    if router.cache_enabled:
        cache_params: dict[str, Any] = {"type": "local", "ttl": router.cache_ttl_seconds}
        redis = redis_connection(route)
        if redis is not None:
            # One cache for every replica and worker: an answer is paid for once.
            cache_params = {
                "type": "redis",
                "host": redis.host,
                "port": redis.port,
                "ttl": router.cache_ttl_seconds,
                "namespace": _redis_namespace(route),
            }
            if redis.password_ref is not None:
                ref = redis.password_ref
                cache_params["password"] = envs.ref(ref.name, ref.key)
            if redis.tls:
                cache_params["ssl"] = True
        settings["cache"] = True
        settings["cache_params"] = cache_params
    return settings
