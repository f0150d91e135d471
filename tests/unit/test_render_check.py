"""Rendered configs against the pinned litellm itself: they load (check_litellm_config), and the
router built from them routes the way render intends (mocked upstreams, no network)."""

from __future__ import annotations

import asyncio
import copy
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmroute.api.quota import QuotaEffect
from llmroute.render import check, check_litellm_config
from manifests import render_manifest

# litellm's own types trip pydantic's ReadOnly warnings when its router first loads them.
pytestmark = pytest.mark.filterwarnings("ignore:Item.*ReadOnly:UserWarning")

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "route.yaml").is_file())


def rendered_config(case: str, quotas: list[QuotaEffect] | None = None) -> dict[str, Any]:
    directory = GOLDEN / case
    route = yaml.safe_load((directory / "route.yaml").read_text())
    if quotas is None and (directory / "quotas.yaml").exists():
        quotas = [
            QuotaEffect.from_quota(q)
            for q in yaml.safe_load((directory / "quotas.yaml").read_text())
        ]
    return render_manifest(route, quotas=quotas or []).config


@pytest.mark.parametrize("case", CASES)
def test_every_golden_config_loads_in_litellm(case: str) -> None:
    assert check_litellm_config(rendered_config(case)) == []


def broken(case: str, change) -> dict[str, Any]:
    config = copy.deepcopy(rendered_config(case))
    change(config)
    return config


def test_fallback_to_an_unknown_model_is_reported() -> None:
    config = broken(
        "priority-chain",
        lambda c: c["router_settings"]["fallbacks"][0]["smart"].append("gpt-5"),
    )
    problems = check_litellm_config(config)
    assert any("'gpt-5'" in p and "router_settings.fallbacks" in p for p in problems), problems


def test_alias_to_an_unknown_model_is_reported() -> None:
    config = broken(
        "priority-chain",
        lambda c: c["router_settings"].update(model_group_alias={"old": "missing"}),
    )
    assert any("model_group_alias" in p for p in check_litellm_config(config))


def test_unknown_routing_strategy_is_reported() -> None:
    config = broken(
        "cost-pricing",
        lambda c: c["router_settings"]["routing_groups"][0].update(routing_strategy="cheapest"),
    )
    problems = check_litellm_config(config)
    assert any("LiteLLM refuses the router config" in p for p in problems), problems


def test_unknown_provider_is_reported() -> None:
    config = broken(
        "priority-chain",
        lambda c: c["model_list"][0]["litellm_params"].update(model="nosuchprovider/model-x"),
    )
    assert any("LiteLLM refuses" in p for p in check_litellm_config(config))


def test_unknown_router_setting_is_reported() -> None:
    config = broken("priority-chain", lambda c: c["router_settings"].update(fallback_on=["x"]))
    assert any("fallback_on" in p for p in check_litellm_config(config))


def test_unknown_prometheus_label_is_reported() -> None:
    config = broken(
        "priority-chain",
        lambda c: c["litellm_settings"]["prometheus_exclude_labels"].append("client_ipv6"),
    )
    assert any("client_ipv6" in p for p in check_litellm_config(config))


def test_cost_routing_without_a_known_price_is_reported() -> None:
    def drop_prices(config: dict[str, Any]) -> None:
        for deployment in config["model_list"]:
            if deployment["model_name"] == "cheap":
                deployment["litellm_params"].pop("input_cost_per_token", None)
                deployment["litellm_params"].pop("output_cost_per_token", None)

    problems = check_litellm_config(broken("cost-pricing", drop_prices))
    assert any("cheap/openai/gpt-4o" in p and "price" in p for p in problems), problems


def test_results_are_cached_by_content(monkeypatch: pytest.MonkeyPatch) -> None:
    config = broken("external-ollama", lambda c: c["router_settings"].update(num_retries=4))
    assert check_litellm_config(config) == []

    def fail(_config):
        raise AssertionError("litellm consulted again for an unchanged config")

    monkeypatch.setattr(check, "_litellm_problems", fail)
    assert check_litellm_config(copy.deepcopy(config)) == []


# -- routing behaviour ------------------------------------------------------------------------

ROUTE = """
apiVersion: llmroute.dev/v1alpha1
kind: LLMRoute
metadata: {name: gw, namespace: t}
spec:
  router: {numRetries: 0}
  models:
    - name: smart
      targets:
        - {provider: anthropic, model: claude-sonnet-4-5, apiKeySecretRef: {name: k, key: a}}
        - {provider: openai, model: gpt-4o, apiKeySecretRef: {name: k, key: o}}
      fallbacks: [local]
    - name: local
      targets:
        - {provider: ollama, model: llama3.2}
    - name: cheap
      strategy: cost
      targets:
        - provider: openai
          model: gpt-4o-mini
          apiKeySecretRef: {name: k, key: o}
          pricing: {inputPerMillionUSD: 0.15, outputPerMillionUSD: 0.6}
        - {provider: ollama, model: llama3.2}
"""

FAILURES = {
    "error": "litellm.InternalServerError",
    "rate": "litellm.RateLimitError",
    "context": "litellm.ContextWindowExceededError",
}


def answers(
    model: str,
    *,
    fail: dict[str, str] | None = None,
    quotas: list[QuotaEffect] | None = None,
    fallback_on: list[str] | None = None,
    strategy: str | None = None,
    calls: int = 2,
) -> list[str]:
    """Which deployment answers each call, through a Router built from the rendered config,
    with the proxy's quota filter reading the rendered quota routing file."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    from llmroute.payloads import quota_routing

    route = yaml.safe_load(ROUTE)
    if fallback_on is not None:
        route["spec"]["router"]["fallbackOn"] = fallback_on
    if strategy is not None:
        route["spec"]["models"][0]["strategy"] = strategy
    rendered = render_manifest(route, quotas=quotas or [])
    config = check._without_secrets(rendered.config)
    for deployment in config["model_list"]:
        deployment_id = deployment["model_info"]["id"]
        deployment["litellm_params"]["mock_response"] = FAILURES.get(
            (fail or {}).get(deployment_id, ""), deployment_id
        )
    settings = {
        k: v for k, v in config["router_settings"].items() if k not in check._CONNECTING_SETTINGS
    }
    (config_map,) = [o for o in rendered.objects if o["kind"] == "ConfigMap"]
    with tempfile.TemporaryDirectory() as directory:
        routing_file = Path(directory) / quota_routing.ROUTING_FILE_NAME
        routing_file.write_text(config_map["data"][quota_routing.ROUTING_FILE_NAME])
        hook = quota_routing.QuotaRouting()
        router = litellm.Router(model_list=config["model_list"], **settings)
        litellm.callbacks.append(hook)

        async def ask() -> str:
            try:
                response = await router.acompletion(
                    model=model, messages=[{"role": "user", "content": "hi"}]
                )
            except Exception as e:
                return type(e).__name__
            return response.choices[0].message.content

        previous = os.environ.get(quota_routing.ROUTING_ENV)
        os.environ[quota_routing.ROUTING_ENV] = str(routing_file)
        try:
            return [asyncio.run(ask()) for _ in range(calls)]
        finally:
            if previous is None:
                os.environ.pop(quota_routing.ROUTING_ENV, None)
            else:
                os.environ[quota_routing.ROUTING_ENV] = previous
            litellm.callbacks.remove(hook)
            router.discard()


def test_priority_is_the_order_of_targets() -> None:
    assert answers("smart") == [
        "smart/anthropic/claude-sonnet-4-5",
        "smart/anthropic/claude-sonnet-4-5",
    ]
    assert answers("smart", fail={"smart/anthropic/claude-sonnet-4-5": "error"}) == [
        "smart/openai/gpt-4o",
        "smart/openai/gpt-4o",
    ]


def test_a_failing_chain_falls_back_to_the_next_model() -> None:
    fail = {"smart/anthropic/claude-sonnet-4-5": "rate", "smart/openai/gpt-4o": "error"}
    assert answers("smart", fail=fail) == ["local/ollama/llama3.2", "local/ollama/llama3.2"]
    assert answers("smart", fail=fail, fallback_on=["contextWindow"]) == ["InternalServerError"] * 2


def test_context_window_errors_follow_their_own_switch() -> None:
    fail = {"smart/anthropic/claude-sonnet-4-5": "context"}
    assert answers("smart", fail=fail, calls=1) == ["local/ollama/llama3.2"]
    no_context = ["errors", "rateLimit", "timeout"]
    assert answers("smart", fail=fail, fallback_on=no_context, calls=1) == [
        "ContextWindowExceededError"
    ]


def test_cost_routing_prefers_the_cheaper_target() -> None:
    # The free local model wins although LiteLLM reads a zero price as "unknown".
    assert answers("cheap", calls=3) == ["cheap/ollama/llama3.2"] * 3


def test_soft_limited_target_moves_behind() -> None:
    soft = [QuotaEffect(provider="anthropic", state="SoftLimited")]
    assert answers("smart", quotas=soft) == ["smart/openai/gpt-4o", "smart/openai/gpt-4o"]


def test_soft_limited_target_still_serves_when_the_others_fail() -> None:
    soft = [QuotaEffect(provider="anthropic", state="SoftLimited")]
    fail = {"smart/openai/gpt-4o": "error"}
    assert answers("smart", quotas=soft, fail=fail) == ["smart/anthropic/claude-sonnet-4-5"] * 2


@pytest.mark.parametrize("strategy", ["cost", "latency", "weighted", "least-busy"])
def test_soft_limit_under_other_strategies(strategy: str) -> None:
    # Without quotas the strategy chooses among both; both levels are declared in the config.
    served = set(answers("smart", strategy=strategy, calls=6))
    assert served <= {"smart/anthropic/claude-sonnet-4-5", "smart/openai/gpt-4o"}
    soft = [QuotaEffect(provider="openai", state="SoftLimited")]
    assert (
        answers("smart", strategy=strategy, quotas=soft, calls=4)
        == ["smart/anthropic/claude-sonnet-4-5"] * 4
    )
    fail = {"smart/anthropic/claude-sonnet-4-5": "error"}
    assert (
        answers("smart", strategy=strategy, quotas=soft, fail=fail) == ["smart/openai/gpt-4o"] * 2
    )
    # A failing target of a model without soft-limited targets goes to the model's fallbacks.
    assert (
        answers(
            "smart",
            strategy=strategy,
            fail={"smart/anthropic/claude-sonnet-4-5": "error", "smart/openai/gpt-4o": "error"},
        )
        == ["local/ollama/llama3.2"] * 2
    )


def test_exhausted_target_leaves_its_model() -> None:
    exhausted = [QuotaEffect(provider="anthropic", state="Exhausted")]
    assert answers("smart", quotas=exhausted) == ["smart/openai/gpt-4o"] * 2
    # When the remaining target fails, the model's fallback serves; the exhausted one never.
    fail = {"smart/openai/gpt-4o": "error"}
    assert answers("smart", quotas=exhausted, fail=fail) == ["local/ollama/llama3.2"] * 2


def test_exhausted_model_is_served_by_its_fallback() -> None:
    exhausted = [QuotaEffect(model_name="smart", state="Exhausted")]
    assert answers("smart", quotas=exhausted) == ["local/ollama/llama3.2", "local/ollama/llama3.2"]
    # Also without retries being spent on it: the filter's error is not one LiteLLM retries.
    assert (
        answers("smart", quotas=exhausted, fallback_on=["contextWindow"])
        == ["QuotaLevelExhausted"] * 2
    )


def test_a_fallback_model_out_of_budget_is_not_used() -> None:
    # smart falls back to local, whose only target is out of budget: local's target is never
    # called, and the caller learns why the chain ended there.
    fail = {"smart/anthropic/claude-sonnet-4-5": "error", "smart/openai/gpt-4o": "error"}
    exhausted = [QuotaEffect(model_name="local", state="Exhausted")]
    assert answers("smart", quotas=exhausted, fail=fail) == ["QuotaLevelExhausted"] * 2
    assert answers("local", quotas=exhausted) == ["QuotaLevelExhausted"] * 2


def test_a_config_keeps_every_target_whatever_the_quotas() -> None:
    # Every model rejected by its quotas: the hook answers 429 before LiteLLM routes anything,
    # and the config is the one without quotas.
    config = rendered_config("priority-chain", [QuotaEffect(state="Exhausted")])
    assert config == rendered_config("priority-chain", [])
    assert check_litellm_config(config) == []
