"""Would LiteLLM load this config? Checked with the pinned litellm release itself.

`import litellm` takes seconds and ~180 MB, so it happens on the first check, not at import,
and results are cached by the config's content: a resync of an unchanged route costs nothing.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any, Final

# Set when the check first imports litellm: never fetch a price map over the network.
_OFFLINE_ENV: Final = {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}
# Stands in for secret values, which the check neither has nor needs.
_PLACEHOLDER: Final = "llmroute-check-placeholder"
# Settings that open network connections (Redis) are checked for shape only.
_CONNECTING_SETTINGS: Final = frozenset(
    {"redis_host", "redis_port", "redis_password", "redis_url", "cache_kwargs"}
)

# The smallest config LiteLLM accepts: checking it loads everything later checks use.
_WARM_UP_CONFIG: Final = {
    "model_list": [{"model_name": "warm-up", "litellm_params": {"model": "openai/warm-up"}}]
}

_cache: dict[str, tuple[str, ...]] = {}
_lock = threading.Lock()


def warm_up_config_check() -> None:
    """Import litellm and build one Router now, instead of in the first route's reconcile."""
    problems = check_litellm_config(_WARM_UP_CONFIG)
    if problems:
        raise RuntimeError(f"litellm rejects the warm-up config: {problems}")


def check_litellm_config(config: Mapping[str, Any]) -> list[str]:
    """Problems that would stop LiteLLM from loading the config, or from routing as rendered.

    Empty list: the config loads. Each problem is one sentence for a status condition.
    """
    digest = hashlib.sha256(
        json.dumps(config, sort_keys=True, default=str).encode("utf-8")
    ).hexdigest()
    with _lock:
        cached = _cache.get(digest)
    if cached is None:
        cached = tuple(_structure_problems(config)) + tuple(_litellm_problems(config))
        with _lock:
            _cache[digest] = cached
    return list(cached)


def _model_names(config: Mapping[str, Any]) -> set[str]:
    return {
        str(d.get("model_name")) for d in config.get("model_list") or () if isinstance(d, Mapping)
    }


def _chains(setting: object) -> Iterator[tuple[str, object]]:
    for entry in setting if isinstance(setting, list) else ():
        if isinstance(entry, Mapping):
            yield from entry.items()


def _structure_problems(config: Mapping[str, Any]) -> Iterator[str]:
    """What LiteLLM accepts at start-up but fails on, or silently ignores, later."""
    router = config.get("router_settings") or {}
    names = _model_names(config)
    aliases = dict(router.get("model_group_alias") or {})
    callable_names = names | set(aliases)
    for setting in ("fallbacks", "context_window_fallbacks"):
        for source, chain in _chains(router.get(setting)):
            if source not in callable_names:
                yield f"router_settings.{setting}: {source!r} is not a model of the config"
            for target in chain if isinstance(chain, list) else [chain]:
                if target not in callable_names:
                    yield (
                        f"router_settings.{setting}: {source!r} falls back to {target!r}, "
                        "which is not a model of the config"
                    )
    for alias, target in aliases.items():
        if alias in names:
            yield f"router_settings.model_group_alias: {alias!r} is also a model of the config"
        if target not in names:
            yield f"router_settings.model_group_alias: {alias!r} points to unknown model {target!r}"
    ids = [
        (d.get("model_info") or {}).get("id")
        for d in config.get("model_list") or ()
        if isinstance(d, Mapping)
    ]
    duplicates = sorted({i for i in ids if i is not None and ids.count(i) > 1})
    if duplicates:
        yield f"model_list: deployment ids {duplicates} are not unique"


def _without_secrets(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("os.environ/"):
        return _PLACEHOLDER
    if isinstance(value, Mapping):
        return {k: _without_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_secrets(v) for v in value]
    return value


def _import_litellm() -> Any:
    for key, value in _OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    import litellm

    return litellm


def _litellm_problems(config: Mapping[str, Any]) -> Iterator[str]:
    litellm = _import_litellm()
    model_list = _without_secrets(copy.deepcopy(list(config.get("model_list") or [])))
    router_settings = {
        k: _without_secrets(v)
        for k, v in (config.get("router_settings") or {}).items()
        if k not in _CONNECTING_SETTINGS
    }
    unknown = sorted(set(router_settings) - set(litellm.Router.get_valid_args()))
    if unknown:
        yield f"router_settings: LiteLLM does not know {unknown}"
        for key in unknown:
            router_settings.pop(key)
    try:
        router = litellm.Router(
            model_list=model_list,
            # The proxy drops a deployment it cannot load and serves the rest; a check must not.
            ignore_invalid_deployments=False,
            **router_settings,
        )
    except Exception as e:  # every way LiteLLM refuses a config is a finding, not a crash
        yield f"LiteLLM refuses the router config: {type(e).__name__}: {e}"
    else:
        try:
            yield from _cost_routing_problems(litellm, router, config)
        finally:
            router.discard()
    yield from _prometheus_problems(config)


def _cost_routing_problems(litellm: Any, router: Any, config: Mapping[str, Any]) -> Iterator[str]:
    """Cost-routed targets need a price LiteLLM can find, or the router ranks them blindly."""
    cost_models = {
        str(g.get("group_name"))
        for g in (config.get("router_settings") or {}).get("routing_groups") or ()
        if isinstance(g, Mapping) and g.get("routing_strategy") == "cost-based-routing"
    }
    for deployment in config.get("model_list") or ():
        if deployment.get("model_name") not in cost_models:
            continue
        params = deployment.get("litellm_params") or {}
        if params.get("input_cost_per_token") or params.get("output_cost_per_token"):
            continue
        if params.get("model") in litellm.model_cost:
            continue
        yield (
            f"model {deployment.get('model_name')!r}: deployment "
            f"{(deployment.get('model_info') or {}).get('id')!r} ({params.get('model')}) has no "
            "price LiteLLM knows, so cost-based routing cannot rank it; set its pricing"
        )


def _prometheus_problems(config: Mapping[str, Any]) -> Iterator[str]:
    settings = config.get("litellm_settings") or {}
    excluded = settings.get("prometheus_exclude_labels") or []
    if not excluded:
        return
    from litellm.types.integrations.prometheus import UserAPIKeyLabelNames

    known = {label.value for label in UserAPIKeyLabelNames}
    known |= {f"tag_{t}".replace(":", "_") for t in settings.get("custom_prometheus_tags") or ()}
    unknown = sorted(set(excluded) - known)
    if unknown:
        # The proxy refuses to start on these.
        yield f"litellm_settings.prometheus_exclude_labels: unknown labels {unknown}"
