"""Render: golden outputs for representative routes, determinism, and what render refuses.

Regenerate the golden files after an intended change with
    UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_render.py
and review the diff: it is the change in what the operator applies.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmroute import versions
from llmroute.api.quota import QuotaEffect
from llmroute.api.route import SpecError
from llmroute.api.validation import (
    LITELLM_OWNED_SETTINGS,
    MERGED_LITELLM_SETTINGS,
    RESERVED_PROXY_ENV,
    RESERVED_PROXY_ENV_PREFIX,
)
from llmroute.payloads import (
    FILE_REREAD,
    GATEWAY_AUTH,
    PROXY_WORKERS,
    QUOTA_ROUTING,
    STREAM_USAGE,
    payload_text,
)
from llmroute.payloads import gateway_auth as gateway_auth_module
from llmroute.render import RenderedRoute
from llmroute.render.credentials import secret_env_var
from llmroute.render.litellm_config import QUOTA_ROUTING_CALLBACK, STREAM_USAGE_CALLBACK
from llmroute.render.proxy import (
    AUTH_MODULE_FILE,
    FILE_REREAD_MODULE_FILE,
    QUOTA_ROUTING_MODULE_FILE,
    STREAM_USAGE_MODULE_FILE,
    WORKERS_MODULE_FILE,
)
from manifests import render_manifest

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "route.yaml").is_file())
# The ConfigMap's module files, each the text of a payload: in expected.yaml by name only.
SHIPPED_PAYLOADS = {
    AUTH_MODULE_FILE: GATEWAY_AUTH,
    STREAM_USAGE_MODULE_FILE: STREAM_USAGE,
    QUOTA_ROUTING_MODULE_FILE: QUOTA_ROUTING,
    FILE_REREAD_MODULE_FILE: FILE_REREAD,
    WORKERS_MODULE_FILE: PROXY_WORKERS,
}


def load_case(case: str) -> tuple[dict[str, Any], list[QuotaEffect], dict[str, Any]]:
    directory = GOLDEN / case
    route = yaml.safe_load((directory / "route.yaml").read_text())
    quotas_file = directory / "quotas.yaml"
    quotas = [
        QuotaEffect.from_quota(q)
        for q in (yaml.safe_load(quotas_file.read_text()) if quotas_file.exists() else [])
    ]
    options_file = directory / "options.yaml"
    options = yaml.safe_load(options_file.read_text()) if options_file.exists() else {}
    return route, quotas, options


def render_case(case: str):
    route, quotas, options = load_case(case)
    return render_manifest(route, quotas=quotas, **options)


def golden_view(rendered) -> dict[str, Any]:
    """The rendered route as stored in expected.yaml; the payloads' texts stand in by name."""
    view = dataclasses.asdict(rendered)
    view["secret_refs"] = [[ref.name, ref.field] for ref in rendered.secret_refs]
    view["limit_division"] = json.loads(json.dumps(view["limit_division"]))  # tuples as lists
    if view["generated_redis_secret"] is None:
        del view["generated_redis_secret"]  # only routes with a managed Redis have one
    for obj in view["objects"]:
        if obj["kind"] == "ConfigMap":
            for file, payload in SHIPPED_PAYLOADS.items():
                assert obj["data"][file] == payload_text(payload)
                obj["data"][file] = f"<the text of operator/llmroute/payloads/{payload}>"
    return view


class _GoldenDumper(yaml.SafeDumper):
    """Multi-line strings (config.yaml, the auth policy) as literal blocks, for reviewable diffs."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_GoldenDumper.add_representer(str, _represent_str)


def gateway_source() -> str:
    return Path(gateway_auth_module.__file__).read_text()


def objects_by_kind(rendered) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in rendered.objects}


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    view = golden_view(render_case(case))
    expected_file = GOLDEN / case / "expected.yaml"
    text = yaml.dump(
        view, Dumper=_GoldenDumper, sort_keys=False, default_flow_style=False, width=100
    )
    if os.environ.get("UPDATE_GOLDEN") == "1":
        expected_file.write_text(text)
    assert expected_file.exists(), (
        f"no golden file; run with UPDATE_GOLDEN=1 to create {expected_file}"
    )
    assert view == yaml.safe_load(expected_file.read_text())


def test_there_are_golden_cases() -> None:
    assert len(CASES) >= 7


@pytest.mark.parametrize("case", CASES)
def test_config_map_carries_the_config_it_hashes(case: str) -> None:
    rendered = render_case(case)
    data = objects_by_kind(rendered)["ConfigMap"]["data"]
    assert yaml.safe_load(data["config.yaml"]) == rendered.config
    assert "&id" not in data["config.yaml"], "YAML anchors make the config hard to read"
    deployment = objects_by_kind(rendered)["Deployment"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["llmroute.dev/config-hash"] == rendered.config_hash
    assert len(rendered.config_hash) == 16
    int(rendered.config_hash, 16)


@pytest.mark.parametrize("case", CASES)
def test_render_is_deterministic(case: str) -> None:
    route, quotas, options = load_case(case)
    first = render_manifest(copy.deepcopy(route), quotas=quotas, **options)
    second = render_manifest(copy.deepcopy(route), quotas=list(quotas), **options)
    assert first == second


@pytest.mark.parametrize("case", CASES)
def test_metadata_outside_name_and_namespace_changes_nothing(case: str) -> None:
    route, quotas, options = load_case(case)
    noisy = copy.deepcopy(route)
    noisy["metadata"].update(
        uid="7f1d0c9e-0000-4000-8000-000000000001",
        resourceVersion="918273",
        generation=7,
        labels={"team": "x"},
        annotations={"kubectl.kubernetes.io/last-applied-configuration": "{}"},
        managedFields=[{"manager": "kubectl"}],
    )
    noisy["status"] = {"configHash": "0000000000000000", "observedGeneration": 6}
    assert render_manifest(noisy, quotas=quotas, **options) == render_manifest(
        route, quotas=quotas, **options
    )


def test_a_spec_change_changes_the_hash() -> None:
    route, _, _ = load_case("priority-chain")
    changed = copy.deepcopy(route)
    changed["spec"]["models"][0]["targets"][1]["model"] = "gpt-4o"
    assert render_manifest(route).config_hash != render_manifest(changed).config_hash


def test_caller_key_rotation_needs_no_new_hash_but_a_new_caller_does() -> None:
    route, _, _ = load_case("callers-access")
    base = render_manifest(route)
    # A rotated key is a new value in the same Secret: nothing render sees changes.
    assert render_manifest(copy.deepcopy(route)).config_hash == base.config_hash
    more = copy.deepcopy(route)
    more["spec"]["auth"]["callers"].append(
        {"name": "ops", "keySecretRef": {"name": "ops-key", "key": "key"}}
    )
    assert render_manifest(more).config_hash != base.config_hash


def test_defaults_applied_match_explicit_defaults() -> None:
    route, _, _ = load_case("priority-chain")
    explicit = copy.deepcopy(route)
    for model in explicit["spec"]["models"]:
        model["strategy"] = "priority"
    explicit["spec"]["router"] = {
        "numRetries": 2,
        "timeoutSeconds": 60,
        "fallbackOn": ["errors", "rateLimit", "timeout", "contextWindow"],
        "allowedFails": 3,
        "cooldownSeconds": 30,
        "cache": {"enabled": False, "ttlSeconds": 600},
    }
    explicit["spec"]["proxy"] = {
        "replicas": 1,
        "autoscaling": {
            "enabled": False,
            "minReplicas": 1,
            "maxReplicas": 5,
            "targetCPUUtilizationPercentage": 70,
        },
        "resources": {
            "requests": {"cpu": "500m", "memory": "512Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        },
        "workers": 0,
        "logLevel": "WARNING",
    }
    assert render_manifest(explicit) == render_manifest(route)


def test_child_objects_carry_the_contract_labels_and_no_owner_references() -> None:
    rendered = render_case("replicas-redis")
    expected = {
        "app.kubernetes.io/name": "litellm",
        "app.kubernetes.io/instance": "ha",
        "app.kubernetes.io/component": "proxy",
        "app.kubernetes.io/part-of": "llmroute",
        "app.kubernetes.io/managed-by": "llmroute",
        "llmroute.dev/route": "ha",
    }
    assert rendered.generated_secret is not None
    for obj in [*rendered.objects, rendered.generated_secret]:
        assert obj["metadata"]["labels"] == expected, obj["kind"]
        assert obj["metadata"]["namespace"] == "prod"
        assert "ownerReferences" not in obj["metadata"]
    assert [o["kind"] for o in rendered.objects] == [
        "ConfigMap",
        "NetworkPolicy",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
    ]


def test_generated_master_key_secret_holds_no_key() -> None:
    rendered = render_case("priority-chain")
    assert rendered.generated_secret == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "gateway-master-key",
            "namespace": "team-a",
            "labels": rendered.generated_secret["metadata"]["labels"],
        },
        "type": "Opaque",
    }
    # A referenced master key means nothing to generate.
    assert render_case("callers-access").generated_secret is None


def test_master_key_secret_name_can_be_chosen_by_the_handler() -> None:
    route, _, _ = load_case("priority-chain")
    rendered = render_manifest(route, master_key_secret="adopted-key")
    assert rendered.generated_secret is not None
    assert rendered.generated_secret["metadata"]["name"] == "adopted-key"
    pod = objects_by_kind(rendered)["Deployment"]["spec"]["template"]["spec"]
    master = next(v for v in pod["volumes"] if v["name"] == "master-key")
    assert master["secret"]["secretName"] == "adopted-key"


def test_proxy_pod_is_locked_down() -> None:
    rendered = render_case("priority-chain")
    pod = objects_by_kind(rendered)["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == versions.LITELLM_IMAGE
    assert container["args"][:6] == [
        "--config",
        "/etc/litellm/config.yaml",
        "--port",
        "4000",
        "--num_workers",
        "1",
    ]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert isinstance(pod["securityContext"]["runAsUser"], int)
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/etc/litellm", "/tmp", "/etc/llmroute/keys/master"} <= mounts
    env = {e["name"]: e for e in container["env"]}
    assert env["LITELLM_LOCAL_MODEL_COST_MAP"]["value"] == "True"
    assert pod["enableServiceLinks"] is False


def test_workers_follow_cpu_and_memory_limits() -> None:
    route, _, _ = load_case("priority-chain")

    def workers(resources: dict[str, Any] | None, workers: int | None = None) -> list[str]:
        changed = copy.deepcopy(route)
        changed["spec"]["proxy"] = {}
        if resources is not None:
            changed["spec"]["proxy"]["resources"] = resources
        if workers is not None:
            changed["spec"]["proxy"]["workers"] = workers
        pod = objects_by_kind(render_manifest(changed))["Deployment"]["spec"]["template"]["spec"]
        return pod["containers"][0]["args"][5:]

    assert workers(None) == ["1"]
    assert workers({"limits": {"cpu": "500m"}}) == ["1"]
    assert workers({"limits": {"cpu": "3.5", "memory": "4Gi"}})[0] == "3"
    # 2 Gi holds five processes of ~400 MiB: four workers and their supervisor, not eight.
    assert workers({"limits": {"cpu": "8", "memory": "2Gi"}})[0] == "4"
    # 1 Gi holds two processes: one worker, as a supervisor would need the other.
    assert workers({"limits": {"cpu": "2", "memory": "1Gi"}})[0] == "1"
    assert workers({"requests": {"cpu": "2"}})[0] == "2"
    assert workers({"limits": {"cpu": "4"}}, workers=2)[0] == "2"
    # Recycling needs the launcher's supervisor, which runs with two workers or more.
    assert "--max_requests_before_restart" not in workers({"limits": {"cpu": "1"}})
    assert "--max_requests_before_restart" in workers({"limits": {"cpu": "2"}})


def test_rate_limits_are_split_across_processes_without_redis() -> None:
    route, _, _ = load_case("priority-chain")
    route["spec"]["models"][0]["targets"][0]["rpm"] = 100
    route["spec"]["models"][0]["targets"][0]["tpm"] = 1000

    def limits(proxy: dict[str, Any], redis: bool = False) -> tuple[int, int]:
        changed = copy.deepcopy(route)
        changed["spec"]["proxy"] = proxy
        if redis:
            changed["spec"]["redis"] = {"external": {"url": "redis://redis:6379"}}
        params = render_manifest(changed).config["model_list"][0]["litellm_params"]
        return params["rpm"], params["tpm"]

    assert limits({}) == (100, 1000)
    assert limits({"replicas": 3}) == (34, 334)
    two_workers = {"resources": {"limits": {"cpu": "2", "memory": "2Gi"}}}
    assert limits({"replicas": 3, **two_workers}) == (17, 167)
    # Autoscaled: divided by the replicas that always run (minReplicas), not maxReplicas.
    assert limits({"autoscaling": {"enabled": True, "maxReplicas": 4}}) == (100, 1000)
    assert limits({"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 4}}) == (
        50,
        500,
    )
    assert limits({"replicas": 3, **two_workers}, redis=True) == (100, 1000)


def test_ollama_targets_use_the_managed_service_or_the_external_url() -> None:
    route, _, _ = load_case("priority-chain")
    managed = render_manifest(route).config["model_list"][-1]["litellm_params"]
    assert managed["model"] == "ollama_chat/llama3.2"
    assert managed["api_base"] == "http://gateway-ollama.team-a.svc:11434"
    external = copy.deepcopy(route)
    external["spec"]["ollama"] = {"external": {"url": "http://ollama.lan:11434"}}
    params = render_manifest(external).config["model_list"][-1]["litellm_params"]
    assert params["api_base"] == "http://ollama.lan:11434"


def embedding_route() -> dict[str, Any]:
    route, _, _ = load_case("priority-chain")
    route = copy.deepcopy(route)
    route["spec"]["models"] = [
        {
            "name": "embed",
            "mode": "embedding",
            "targets": [
                {"provider": "ollama", "model": "nomic-embed-text"},
                {
                    "provider": "openai",
                    "model": "text-embedding-3-small",
                    "apiKeySecretRef": {"name": "provider-keys", "key": "openai"},
                    "pricing": {"inputPerMillionUSD": 0.02, "outputPerMillionUSD": 0},
                },
            ],
        }
    ]
    return route


def test_an_embedding_model_renders_targets_litellm_embeds_with() -> None:
    """LiteLLM 1.106.2 embeds through `ollama/` (its /api/embed) but maps no embedding
    provider for `ollama_chat/`, the prefix chat targets use; model_info.mode tells its
    health checks to embed rather than chat."""
    deployments = render_manifest(embedding_route()).config["model_list"]
    assert [d["litellm_params"]["model"] for d in deployments] == [
        "ollama/nomic-embed-text",
        "openai/text-embedding-3-small",
    ]
    assert [d["model_info"]["mode"] for d in deployments] == ["embedding", "embedding"]
    # Priced by input tokens, like chat.
    assert deployments[1]["litellm_params"]["input_cost_per_token"] == pytest.approx(2e-8)


def test_litellm_maps_an_embedding_provider_for_each_rendered_embedding_target(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price map download
    import litellm

    for deployment in render_manifest(embedding_route()).config["model_list"]:
        params = deployment["litellm_params"]
        # Nothing listens on port 9: a mapped provider fails to connect, an unmapped one is
        # refused before any connection.
        with pytest.raises(Exception) as error:
            litellm.embedding(
                model=params["model"], input=["hi"], api_base="http://127.0.0.1:9", api_key="x"
            )
        assert "Unmapped LLM provider" not in str(error.value), params["model"]


def test_chat_models_keep_the_chat_prefix_and_no_mode() -> None:
    route, _, _ = load_case("priority-chain")
    deployments = render_manifest(route).config["model_list"]
    assert deployments[-1]["litellm_params"]["model"] == "ollama_chat/llama3.2"
    assert all("mode" not in d["model_info"] for d in deployments)


def test_a_model_falls_back_only_to_models_of_its_mode() -> None:
    route = embedding_route()
    route["spec"]["models"].append(
        {"name": "chat", "targets": [{"provider": "ollama", "model": "llama3.2"}]}
    )
    route["spec"]["models"][0]["fallbacks"] = ["chat"]
    with pytest.raises(SpecError, match=r"spec\.models\[0\]\.fallbacks\[0\]"):
        render_manifest(route)


def test_targets_sharing_a_key_share_one_env_var() -> None:
    rendered = render_case("cost-pricing")
    keys = [
        d["litellm_params"]["api_key"]
        for d in rendered.config["model_list"]
        if d["litellm_params"]["model"].startswith("openai/")
    ]
    assert keys == [f"os.environ/{secret_env_var('openai', 'api-key')}"] * 2
    pod = objects_by_kind(rendered)["Deployment"]["spec"]["template"]["spec"]
    names = [e["name"] for e in pod["containers"][0]["env"]]
    assert len(names) == len(set(names))


def test_secret_env_var_names_do_not_collide() -> None:
    pairs = [("a-b", "c"), ("a", "b-c"), ("a.b", "c"), ("A", "b_c"), ("x", "k"), ("x", "k2")]
    names = {secret_env_var(s, k) for s, k in pairs}
    assert len(names) == len(pairs)
    assert all(re.fullmatch(r"LLMROUTE_SECRET_[A-Z0-9_]+_[0-9a-f]{8}", n) for n in names)
    assert secret_env_var("a-b", "c") == secret_env_var("a-b", "c")


def test_quota_shadow_mode_changes_nothing() -> None:
    route, _, _ = load_case("quota-effects")
    shadow = [
        QuotaEffect(model_name="premium", state="Exhausted", action="reject", enforcement="shadow"),
        QuotaEffect(provider="anthropic", state="SoftLimited", enforcement="shadow"),
        QuotaEffect(provider="openai", rpm=1, enforcement="shadow"),
    ]
    assert render_manifest(route, quotas=shadow) == render_manifest(route)


def quota_routing(rendered: RenderedRoute) -> dict[str, Any]:
    return json.loads(objects_by_kind(rendered)["ConfigMap"]["data"]["llmroute_quota.json"])


def policy_of(rendered) -> dict:
    config_map = next(o for o in rendered.objects if o["kind"] == "ConfigMap")
    return json.loads(config_map["data"]["llmroute_auth.json"])


def test_caller_and_task_budgets_change_only_the_live_policy() -> None:
    route, quotas, options = load_case("callers-access")
    assert any(q.state == "Exhausted" and q.enforced for q in quotas)
    with_quotas = render_manifest(route, quotas=quotas, **options)
    without = render_manifest(route, **options)
    # The routing, the config and its hash (so the pods) stay as they are ...
    assert with_quotas.config == without.config
    assert with_quotas.config_hash == without.config_hash
    # ... and the auth policy the hook re-reads lists the exhausted, enforced budget only.
    assert policy_of(without)["exhaustedBudgets"] == []
    entries = policy_of(with_quotas)["exhaustedBudgets"]
    assert [(e["quota"], e["caller"], e["tag"], e["models"]) for e in entries] == [
        ("support-bot-daily", "support-bot", None, ["smart"])
    ]
    assert "support-bot-daily" in entries[0]["message"]
    assert {k: v for k, v in policy_of(with_quotas).items() if k != "exhaustedBudgets"} == {
        k: v for k, v in policy_of(without).items() if k != "exhaustedBudgets"
    }


def test_a_budget_of_a_caller_alone_covers_every_model() -> None:
    route, _, options = load_case("callers-access")
    effect = QuotaEffect(caller="billing", state="Exhausted", action="reject", name="all")
    (entry,) = policy_of(render_manifest(route, quotas=[effect], **options))["exhaustedBudgets"]
    assert entry["models"] == ["smart", "summarizer"]
    task = QuotaEffect(tag="triage", model="gpt-4o-mini", state="Exhausted", action="reject")
    (entry,) = policy_of(render_manifest(route, quotas=[task], **options))["exhaustedBudgets"]
    assert (entry["caller"], entry["tag"], entry["models"]) == (None, "triage", ["summarizer"])


def test_quota_effects_in_detail() -> None:
    rendered = render_case("quota-effects")
    config = rendered.config
    deployments = {}
    for d in config["model_list"]:
        deployments.setdefault(d["model_name"], []).append(
            (
                d["model_info"]["id"],
                d["litellm_params"].get("order"),
                d["litellm_params"].get("rpm"),
            )
        )
    # The config keeps every target in spec order, whatever the states. The openai quota's
    # 90 rpm (a spec, not a state) is split over the three openai targets it matches.
    assert deployments["smart"] == [
        ("smart/anthropic/claude-sonnet-4-5", 1, None),
        ("smart/openai/gpt-4o", 2, 30),
        ("smart/mistral/mistral-large-latest", 3, None),
    ]
    assert deployments["gpt4"] == [("gpt4/openai/gpt-4", 1, 30)]
    assert deployments["premium"] == [("premium/anthropic/claude-opus-4-1", 1, None)]
    assert "model_group_alias" not in config["router_settings"]
    fallbacks = {k: v for f in config["router_settings"]["fallbacks"] for k, v in f.items()}
    assert fallbacks == {
        "smart": ["gpt4", "local"],
        "gpt4": ["local"],
        "premium": ["smart"],
        "research": ["premium", "gpt4", "smart"],
    }
    # The states are in the quota routing file: anthropic is soft-limited, behind openai and
    # mistral (whose quota is only in shadow mode); gpt4's only target and premium's are out.
    assert quota_routing(rendered)["models"] == {
        "smart": {
            "smart/openai/gpt-4o": 1,
            "smart/mistral/mistral-large-latest": 2,
            "smart/anthropic/claude-sonnet-4-5": 3,
        },
        "gpt4": {"gpt4/openai/gpt-4": None},
        "premium": {"premium/anthropic/claude-opus-4-1": None},
        "local": {"local/ollama/llama3.2": 1},
        "research": {"research/openai/o3": 1},
    }
    # premium rejects: 429 from the auth hook, from the policy.
    assert set(rendered.rejected_models) == {"premium"}
    assert "ModelQuota 'premium'" in rendered.rejected_models["premium"]
    policy_json = objects_by_kind(rendered)["ConfigMap"]["data"]["llmroute_auth.json"]
    assert yaml.safe_load(policy_json)["rejectedModels"] == rendered.rejected_models
    # Clients still see every model.
    assert rendered.models == ["smart", "gpt4", "premium", "local", "research"]


def test_quota_states_change_neither_the_config_nor_the_hash() -> None:
    route, quotas, _ = load_case("quota-effects")
    unlimited = [dataclasses.replace(q, state="Ok") for q in quotas]
    rendered, calm = render_manifest(route, quotas=quotas), render_manifest(route, quotas=unlimited)
    assert rendered.config == calm.config
    assert rendered.config_hash == calm.config_hash
    deployment = objects_by_kind(rendered)["Deployment"]
    assert deployment == objects_by_kind(calm)["Deployment"]
    # What moves is in the files the proxies re-read.
    assert quota_routing(rendered) != quota_routing(calm)
    assert calm.rejected_models == {}


def test_soft_limit_in_a_cost_model_raises_the_order() -> None:
    route, _, _ = load_case("cost-pricing")
    rendered = render_manifest(
        route, quotas=[QuotaEffect(model="gpt-4o-mini", state="SoftLimited")]
    )
    assert quota_routing(rendered)["models"]["cheap"] == {
        "cheap/openai/gpt-4o": 1,
        "cheap/ollama/qwen2.5:7b": 1,
        "cheap/openai/gpt-4o-mini": 2,
    }
    # The config declares both levels, so LiteLLM falls back from the first to the second.
    cheap = [d for d in rendered.config["model_list"] if d["model_name"] == "cheap"]
    assert {d["litellm_params"]["order"] for d in cheap} == {1, 2}


def test_a_model_without_any_budget_left_rejects() -> None:
    route, _, _ = load_case("priority-chain")
    rendered = render_manifest(route, quotas=[QuotaEffect(state="Exhausted")])
    assert rendered.config == render_manifest(route).config
    assert all(
        level is None
        for targets in quota_routing(rendered)["models"].values()
        for level in targets.values()
    )
    assert set(rendered.rejected_models) == {"smart", "local"}
    assert "no fallback model has a target left" in rendered.rejected_models["smart"]


def test_quota_effect_validates_its_fields() -> None:
    with pytest.raises(ValueError, match="state"):
        QuotaEffect(state="Spent")
    with pytest.raises(ValueError, match="action"):
        QuotaEffect(action="drop")
    assert QuotaEffect.from_quota({"spec": {"match": {"provider": "groq"}}}) == QuotaEffect(
        provider="groq"
    )


BROKEN = [
    (lambda s: s["models"][0].update(strategy="random"), "spec.models[0].strategy"),
    (lambda s: s["models"][0].update(fallbacks=["nope"]), "spec.models[0].fallbacks[0]"),
    (lambda s: s["models"][0].update(fallbacks=["smart"]), "spec.models[0].fallbacks[0]"),
    (lambda s: s["models"][1].update(name="smart"), "spec.models[1].name"),
    # Python's `$` matches before a final newline; the API server's (Go) `$` does not.
    (lambda s: s["models"][1].update(name="cheap\n"), "spec.models[1].name"),
    (lambda s: s["models"][0].update(targets=[]), "spec.models[0].targets"),
    (lambda s: s.update(models=[]), "spec.models"),
    (
        lambda s: s["models"][0]["targets"][0].update(provider="cohere"),
        "spec.models[0].targets[0].provider",
    ),
    (
        lambda s: s["models"][0]["targets"][0].update(credentialsSecretRef={"name": "x"}),
        "spec.models[0].targets[0].credentialsSecretRef",
    ),
    (
        lambda s: s["models"][1]["targets"][0].update(credentialsSecretRef={"name": "x"}),
        "spec.models[1].targets[0].credentialsSecretRef",
    ),
    (
        lambda s: s["models"][0]["targets"][0].update(provider="openai-compatible"),
        "spec.models[0].targets[0].apiBase",
    ),
    (
        lambda s: s["models"][0]["targets"][0].update(pricing={"inputPerMillionUSD": 1}),
        "spec.models[0].targets[0].pricing.outputPerMillionUSD",
    ),
    (lambda s: s.update(router={"fallbackOn": ["errors"]}), "spec.router.fallbackOn"),
    (
        lambda s: s.update(proxy={"litellm": {"generalSettings": {"master_key": "sk-1"}}}),
        "spec.proxy.litellm.generalSettings.master_key",
    ),
    (
        lambda s: s.update(proxy={"env": [{"name": "HOME", "value": "/"}]}),
        "spec.proxy.env[0].name",
    ),
    (
        lambda s: s.update(
            proxy={"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}
        ),
        "spec.proxy.env[1].name",
    ),
    (lambda s: s.update(router={"fallbackOn": ["sometimes"]}), "spec.router.fallbackOn"),
    (
        lambda s: s.update(
            auth={
                "callers": [
                    {"name": "a", "keySecretRef": {"name": "k", "key": "k"}, "models": ["x"]}
                ]
            }
        ),
        "spec.auth.callers[0].models[0]",
    ),
    (
        lambda s: s.update(
            auth={"callers": [{"name": "Bad_Name", "keySecretRef": {"name": "k", "key": "k"}}]}
        ),
        "spec.auth.callers[0].name",
    ),
    (
        lambda s: s.update(
            auth={"callers": [{"name": "team-a\n", "keySecretRef": {"name": "k", "key": "k"}}]}
        ),
        "spec.auth.callers[0].name",
    ),
    (
        lambda s: s.update(
            proxy={"autoscaling": {"enabled": True, "minReplicas": 4, "maxReplicas": 2}}
        ),
        "spec.proxy.autoscaling.minReplicas",
    ),
]


@pytest.mark.parametrize(("breakage", "field"), BROKEN)
def test_render_names_the_field_it_cannot_render(breakage, field: str) -> None:
    route, _, _ = load_case("priority-chain")
    breakage(route["spec"])
    with pytest.raises(SpecError) as error:
        render_manifest(route)
    assert error.value.field == field


def test_context_window_only_fallbacks() -> None:
    route, _, _ = load_case("priority-chain")
    route["spec"]["router"] = {"fallbackOn": ["contextWindow"]}
    settings = render_manifest(route).config["router_settings"]
    assert "fallbacks" not in settings
    assert settings["context_window_fallbacks"] == [{"smart": ["local"]}]
    route["spec"]["router"] = {"fallbackOn": []}
    settings = render_manifest(route).config["router_settings"]
    assert "fallbacks" not in settings
    assert "context_window_fallbacks" not in settings


SETTINGS_SECTIONS = {
    "litellmSettings": "litellm_settings",
    "routerSettings": "router_settings",
    "generalSettings": "general_settings",
}


@pytest.mark.parametrize("case", CASES)
def test_spec_proxy_litellm_cannot_override_what_the_renderer_writes(case: str) -> None:
    route, _, _ = load_case(case)
    rendered = render_case(case)
    extra = route["spec"].get("proxy", {}).get("litellm", {})
    for section, config_key in SETTINGS_SECTIONS.items():
        written = set(rendered.config[config_key]) - set(extra.get(section, {}))
        unguarded = written - LITELLM_OWNED_SETTINGS[section] - set(MERGED_LITELLM_SETTINGS)
        assert not unguarded, f"{config_key}: add {sorted(unguarded)} to LITELLM_OWNED_SETTINGS"
    deployment = next(o for o in rendered.objects if o["kind"] == "Deployment")
    own = {v["name"] for v in route["spec"].get("proxy", {}).get("env", [])}
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        for variable in container.get("env", []):
            name = variable["name"]
            assert (
                name in own
                or name in RESERVED_PROXY_ENV
                or name.startswith(RESERVED_PROXY_ENV_PREFIX)
            ), f"{name}: add it to RESERVED_PROXY_ENV"


def test_spec_proxy_litellm_adds_callbacks_to_llmroutes_own() -> None:
    config = render_case("litellm-settings").config
    assert config["litellm_settings"]["callbacks"] == [
        "prometheus",
        STREAM_USAGE_CALLBACK,
        QUOTA_ROUTING_CALLBACK,
        "otel",
    ]
    assert config["router_settings"]["retry_policy"] == {
        "RateLimitErrorRetries": 0,
        "TimeoutErrorRetries": 1,
    }
    assert config["general_settings"]["custom_auth"] == "llmroute_auth.user_api_key_auth"


def test_a_secret_of_spec_proxy_env_is_referenced_like_the_others() -> None:
    rendered = render_case("litellm-settings")
    assert [ref.field for ref in rendered.secret_refs if ref.name == "otel-auth"] == [
        "spec.proxy.env[2].valueFrom.secretKeyRef"
    ]
