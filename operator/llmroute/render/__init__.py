"""Render: a typed LLMRoute (plus the effects of its quotas) in, LiteLLM config and manifests out.

Pure functions: no I/O, no Kubernetes client, no secret values; the same input always gives the
same output. They take the typed objects of llmroute.api (parsed once, where a route enters),
never raw dicts. The route's reconcile fetches inputs, calls render_route, and applies what it
returns.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from llmroute.api.quota import QuotaEffect
from llmroute.api.route import Route, SecretReference
from llmroute.payloads import (
    FILE_REREAD,
    GATEWAY_AUTH,
    PROXY_WORKERS,
    QUOTA_ROUTING,
    STREAM_USAGE,
    payload_text,
)
from llmroute.render.auth_policy import key_mounts, render_auth_policy, spec_auth_policy
from llmroute.render.caller_budgets import LIVE_POLICY_KEY, render_exhausted_budgets
from llmroute.render.check import check_litellm_config, warm_up_config_check
from llmroute.render.credentials import SecretEnvs
from llmroute.render.expose import render_exposure
from llmroute.render.litellm_config import limit_division, render_litellm_config
from llmroute.render.names import endpoint, master_key_secret_name
from llmroute.render.ollama import render_ollama_objects
from llmroute.render.proxy import (
    master_key_ref,
    render_config_map,
    render_deployment,
    render_horizontal_pod_autoscaler,
    render_master_key_secret,
    render_network_policy,
    render_pod_disruption_budget,
    render_service,
)
from llmroute.render.quota_effects import plan_routing, target_limits
from llmroute.render.quota_routing import render_quota_routing
from llmroute.render.redis import render_redis_objects, render_redis_password_secret
from llmroute.render.sizing import LimitDivision

__all__ = [
    "RenderedRoute",
    "check_litellm_config",
    "config_hash",
    "render_route",
    "warm_up_config_check",
]


@dataclass(frozen=True)
class RenderedRoute:
    config: dict[str, Any]  # the LiteLLM config (config.yaml)
    config_hash: str  # sha256 prefix (16 hex) of what the proxy reads from the ConfigMap at start
    objects: list[dict[str, Any]]  # child manifests in apply order, without ownerReferences
    generated_secret: dict[str, Any] | None  # master-key Secret to create once, or None
    secret_refs: tuple[SecretReference, ...]  # every Secret the route reads, with its field
    models: list[str]  # model names clients may send, in spec order
    endpoint: str = ""  # http://<route>.<ns>.svc:4000
    # Models that answer 429 because of their quotas: name -> the message clients get.
    rejected_models: dict[str, str] = field(default_factory=dict)
    # rpm/tpm limits and each proxy process's share of them (the LimitsExact condition).
    limit_division: LimitDivision | None = None
    # The managed Redis's password Secret to create once (without its value), or None.
    generated_redis_secret: dict[str, Any] | None = None


def auth_module_source() -> str:
    """The text of payloads/gateway_auth.py, shipped to the proxy as llmroute_auth.py."""
    return payload_text(GATEWAY_AUTH)


def stream_usage_module_source() -> str:
    """The text of payloads/stream_usage.py, shipped to the proxy as llmroute_stream_usage.py."""
    return payload_text(STREAM_USAGE)


def quota_routing_module_source() -> str:
    """The text of payloads/quota_routing.py, shipped to the proxy as llmroute_quota_routing.py."""
    return payload_text(QUOTA_ROUTING)


def file_reread_module_source() -> str:
    """The text of payloads/file_reread.py, shipped to the proxy as llmroute_file_reread.py."""
    return payload_text(FILE_REREAD)


def workers_module_source() -> str:
    """The text of payloads/proxy_workers.py, shipped to the proxy as llmroute_proxy_workers.py."""
    return payload_text(PROXY_WORKERS)


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def config_hash(
    config: Mapping[str, Any], *, auth_policy: object = None, key_files: object = None
) -> str:
    """sha256 prefix (16 hex) of what the proxy reads at start-up.

    The config, the auth module and the spec's part of its policy, the callbacks, the file
    re-read helper they import, the launcher the container runs, and the layout of the key
    files. Not what the quotas' states decide (the quota routing file, the policy's rejected
    models and exhausted budgets): the proxies re-read those while they run, so a quota
    changing state changes no hash and restarts no proxy.
    """
    payload = _canonical(
        {
            "config": config,
            "authModule": auth_module_source(),
            "streamUsageModule": stream_usage_module_source(),
            "quotaRoutingModule": quota_routing_module_source(),
            "fileRereadModule": file_reread_module_source(),
            "workersModule": workers_module_source(),
            "authPolicy": auth_policy,
            "keyFiles": key_files,
        }
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def render_route(
    route: Route,
    *,
    quotas: Sequence[QuotaEffect] = (),
    master_key_secret: str | None = None,
    operator_namespace: str | None = None,
) -> RenderedRoute:
    """Everything a route needs in the cluster.

    route: the parsed LLMRoute (llmroute.api.route.parse_route).
    quotas: the effects of the ModelQuotas that reference the route.
    master_key_secret: the Secret holding the generated master key (key "masterKey"), when the
        route references none; defaults to "<route>-master-key".
    operator_namespace: where the operator runs; its pods may scrape the proxies' /metrics and
        read the managed Ollama's models. None (unknown): the NetworkPolicies admit no
        operator pod at all.
    """
    parsed = route
    # The config follows the specs only; the quotas' states go to the files re-read live.
    limits = target_limits(parsed, quotas)
    plan = plan_routing(parsed, quotas)
    envs = SecretEnvs()
    config = render_litellm_config(parsed, limits, envs)

    generated_name = master_key_secret or master_key_secret_name(parsed.name)
    master = master_key_ref(parsed, generated_name)
    mounts = key_mounts(parsed, master)
    policy = render_auth_policy(parsed, plan, mounts)
    layout = [[m.volume, m.directory, m.ref.name, m.ref.key] for m in mounts]
    # Caller and task budgets change while the proxies run: in the file the hook re-reads,
    # outside the hash (spec_auth_policy), so a budget running out restarts nothing.
    policy[LIVE_POLICY_KEY] = render_exhausted_budgets(parsed, quotas)
    digest = config_hash(config, auth_policy=spec_auth_policy(policy), key_files=layout)

    config_map = render_config_map(
        parsed,
        yaml.safe_dump(config, sort_keys=False, default_flow_style=False, allow_unicode=True),
        auth_module_source(),
        json.dumps(policy, indent=2, sort_keys=True) + "\n",
        stream_usage_module_source(),
        quota_routing_module_source(),
        json.dumps(render_quota_routing(parsed, plan), indent=2, sort_keys=True) + "\n",
        file_reread_module=file_reread_module_source(),
        workers_module=workers_module_source(),
    )
    objects = [
        config_map,
        # Before the pods exist, so they are never reachable beyond what the policy allows.
        render_network_policy(parsed, operator_namespace),
        render_service(parsed),
        render_deployment(
            parsed,
            config_hash=digest,
            secret_envs=envs.envs(),
            key_mounts=mounts,
        ),
    ]
    objects += [
        o
        for o in (render_pod_disruption_budget(parsed), render_horizontal_pod_autoscaler(parsed))
        if o is not None
    ]
    objects += render_ollama_objects(parsed, operator_namespace)
    objects += render_redis_objects(parsed)
    exposure = render_exposure(parsed)
    if exposure is not None:
        # Last: outside clients are sent to the Service only once everything behind it exists.
        objects.append(exposure)
    return RenderedRoute(
        config=config,
        config_hash=digest,
        objects=objects,
        generated_secret=(
            render_master_key_secret(parsed, generated_name)
            if parsed.master_key_ref is None
            else None
        ),
        secret_refs=parsed.secret_references(),
        models=[m.name for m in parsed.models],
        endpoint=endpoint(parsed.name, parsed.namespace),
        rejected_models=dict(plan.rejected),
        limit_division=limit_division(parsed, limits),
        generated_redis_secret=render_redis_password_secret(parsed),
    )
