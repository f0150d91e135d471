"""An LLMRoute as a Compose file: valid by the Compose schema, no secret values, the same
LiteLLM config as the cluster's, and a local Ollama with a volume when the route manages one.

No Compose engine runs here: the file is checked against the Compose Specification's JSON
schema (tests/unit/data/compose-spec.json, see compose-spec.README.md next to it).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from llmroute import versions
from llmroute.api.route import SpecError, parse_route
from llmroute.render.compose import (
    COMPOSE_OLLAMA_URL,
    OLLAMA_VOLUME,
    ComposeProject,
)
from llmroute.render.ollama import MODELS_DIR, READY_FILE
from llmroute.render.sizing import limit_processes
from manifests import OLD_RENDER_PLACEHOLDER, compose_manifest, render_manifest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((Path(__file__).parent / "data" / "compose-spec.json").read_text())
EXAMPLE_ROUTES = [
    pytest.param(doc, id=f"{path.stem}:{doc['metadata']['name']}")
    for path in sorted((REPO_ROOT / "examples").glob("*.yaml"))
    for doc in yaml.safe_load_all(path.read_text())
    if doc and doc.get("kind") == "LLMRoute"
]


def route(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "llmroute.dev/v1alpha1",
        "kind": "LLMRoute",
        "metadata": {"name": "gw", "namespace": "team-a"},
        "spec": {
            "models": [
                {
                    "name": "smart",
                    "targets": [
                        {
                            "provider": "anthropic",
                            "model": "claude-sonnet-4-5",
                            "apiKeySecretRef": {"name": "provider-keys", "key": "anthropic"},
                        },
                        {"provider": "ollama", "model": "llama3.2"},
                    ],
                }
            ],
            **spec,
        },
    }


def schema_errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(SCHEMA)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def config_of(project: ComposeProject) -> dict[str, Any]:
    """config.yaml as the proxy reads it (Compose turns $$ back into $)."""
    content = project.document["configs"]["config.yaml"]["content"]
    return yaml.safe_load(content.replace("$$", "$"))


def proxy(project: ComposeProject) -> dict[str, Any]:
    return project.document["services"]["litellm"]


# -- the Compose schema ---------------------------------------------------------------------------


@pytest.mark.parametrize("example", EXAMPLE_ROUTES)
def test_every_example_route_is_a_valid_compose_file(example: dict[str, Any]) -> None:
    document = compose_manifest(example).document
    assert schema_errors(document) == []
    # What the CLI prints: the YAML form validates too.
    assert schema_errors(yaml.safe_load(yaml.safe_dump(document))) == []


def test_the_schema_check_is_not_vacuous() -> None:
    document = copy.deepcopy(compose_manifest(route(ollama={"models": ["llama3.2"]})).document)
    document["services"]["litellm"]["no_such_setting"] = True
    document["configs"]["config.yaml"]["contents"] = "typo"
    errors = schema_errors(document)
    assert any("no_such_setting" in e for e in errors)
    assert any("contents" in e for e in errors)


@pytest.mark.parametrize(
    "spec",
    [
        {"ollama": {"models": ["llama3.2", "qwen2.5:7b"], "gpu": {"count": 1}, "keepAlive": "1h"}},
        {"ollama": {}},
        {"ollama": {"external": {"url": "http://host.docker.internal:11434"}}},
        {
            "tasks": ["summarize"],
            "auth": {
                "masterKeySecretRef": {"name": "gateway-admin", "key": "key"},
                "callers": [
                    {"name": "billing", "keySecretRef": {"name": "caller-keys", "key": "billing"}}
                ],
            },
            "router": {"cache": {"enabled": True}},
            "redis": {
                "external": {
                    "url": "redis://redis.lan:6379",
                    "passwordSecretRef": {"name": "redis", "key": "password"},
                }
            },
            "proxy": {"replicas": 3, "autoscaling": {"enabled": True, "maxReplicas": 6}},
            "ollama": {"external": {"url": "http://ollama.lan:11434"}},
        },
    ],
    ids=["managed-gpu", "managed-no-models", "external", "callers-redis-autoscaling"],
)
def test_route_variants_are_valid_compose_files(spec: dict[str, Any]) -> None:
    assert schema_errors(compose_manifest(route(**spec)).document) == []


# -- no secret values -----------------------------------------------------------------------------


def test_no_secret_value_and_every_key_comes_from_the_environment() -> None:
    project = compose_manifest(
        route(
            auth={
                "callers": [
                    {"name": "billing", "keySecretRef": {"name": "caller-keys", "key": "billing"}}
                ]
            },
            ollama={"models": ["llama3.2"]},
        )
    )
    document = project.document
    assert not any(OLD_RENDER_PLACEHOLDER in s for s in strings(document))
    # Secret-fed variables of the pod become ${VAR...} interpolations, nothing else.
    environment = proxy(project)["environment"]
    fed = {name: value for name, value in environment.items() if value.startswith("${")}
    # The master key reaches the proxy as a file only (see the secrets below), never as a
    # variable of its own.
    assert set(fed) == {
        next(n for n in environment if n.startswith("LLMROUTE_SECRET_PROVIDER_KEYS_ANTHROPIC")),
    }
    assert any(v.startswith("${ANTHROPIC_API_KEY:?") for v in fed.values())
    # Key files come from variables as well, never from a file on disk.
    assert document["secrets"] == {
        "master-key": {"environment": "LLMROUTE_MASTER_KEY"},
        "caller-billing": {"environment": "LLMROUTE_CALLER_BILLING"},
    }
    assert [(v.name, v.secret, v.key, v.required) for v in project.variables] == [
        ("ANTHROPIC_API_KEY", "provider-keys", "anthropic", True),
        ("LLMROUTE_CALLER_BILLING", "caller-keys", "billing", True),
        ("LLMROUTE_MASTER_KEY", "gw-master-key", "masterKey", True),
    ]


def test_key_files_land_where_the_auth_policy_looks_for_them() -> None:
    project = compose_manifest(
        route(
            auth={
                "callers": [
                    {"name": "billing", "keySecretRef": {"name": "caller-keys", "key": "billing"}}
                ]
            },
            ollama={},
        )
    )
    policy = json.loads(project.document["configs"]["llmroute_auth.json"]["content"])
    targets = {s["source"]: s["target"] for s in proxy(project)["secrets"]}
    keys_dir = "/etc/llmroute/keys"
    assert targets["master-key"] == f"{keys_dir}/{policy['masterKeyFile']}"
    assert targets["caller-billing"] == f"{keys_dir}/{policy['callers'][0]['keyFile']}"
    # An unprivileged proxy must be able to read them.
    assert {s["mode"] for s in proxy(project)["secrets"]} == {"0444"}


def test_variables_are_named_after_what_they_hold() -> None:
    project = compose_manifest(
        route(
            models=[
                {
                    "name": "chat",
                    "targets": [
                        {
                            "provider": "openai",
                            "model": "gpt-4o",
                            "apiKeySecretRef": {"name": "team-a", "key": "openai"},
                        },
                        {
                            "provider": "openai",
                            "model": "gpt-4o-mini",
                            "apiKeySecretRef": {"name": "team-b", "key": "openai"},
                        },
                        {
                            "provider": "bedrock",
                            "model": "anthropic.claude-3-haiku",
                            "credentialsSecretRef": {"name": "aws"},
                        },
                        {
                            "provider": "groq",
                            "model": "llama-3.1-8b-instant",
                            "apiKeySecretRef": {"name": "keys", "key": "groq"},
                        },
                    ],
                }
            ]
        )
    )
    names = {(v.secret, v.key): (v.name, v.required) for v in project.variables}
    # Two OpenAI keys cannot both be OPENAI_API_KEY: each is named after its Secret and key.
    assert names[("team-a", "openai")] == ("TEAM_A_OPENAI", True)
    assert names[("team-b", "openai")] == ("TEAM_B_OPENAI", True)
    assert names[("keys", "groq")] == ("GROQ_API_KEY", True)
    # A multi-value credential keeps the variable names its Secret's keys already are.
    assert names[("aws", "AWS_ACCESS_KEY_ID")] == ("AWS_ACCESS_KEY_ID", True)
    assert names[("aws", "AWS_SESSION_TOKEN")] == ("AWS_SESSION_TOKEN", False)
    environment = proxy(project)["environment"]
    assert "${AWS_SESSION_TOKEN:-}" in environment.values()


# -- the same config as the cluster's -------------------------------------------------------------


def test_the_config_is_the_clusters_with_the_ollama_address_of_the_service() -> None:
    spec_route = route(ollama={"models": ["llama3.2"]})
    project = compose_manifest(spec_route)
    cluster_config = render_manifest(spec_route).config
    compose_config = config_of(project)
    bases = [d["litellm_params"].get("api_base") for d in compose_config["model_list"]]
    assert bases == [None, COMPOSE_OLLAMA_URL]
    for deployment in cluster_config["model_list"]:
        if deployment["litellm_params"].get("api_base"):
            deployment["litellm_params"]["api_base"] = COMPOSE_OLLAMA_URL
    assert compose_config == cluster_config


def test_the_proxy_runs_as_the_deployment_says() -> None:
    spec_route = route(ollama={})
    project = compose_manifest(spec_route)
    deployment = next(o for o in render_manifest(spec_route).objects if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    service = proxy(project)
    assert service["image"] == versions.LITELLM_IMAGE == container["image"]
    assert service["entrypoint"] + service["command"] == container["command"] + container["args"]
    assert service["ports"] == ["127.0.0.1:4000:4000"]
    assert service["user"] == "65532:65532"
    assert service["read_only"] is True
    assert service["tmpfs"] == ["/tmp"]
    assert service["environment"]["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert {c["target"] for c in service["configs"]} == {
        "/etc/litellm/config.yaml",
        "/etc/litellm/llmroute_auth.py",
        "/etc/litellm/llmroute_auth.json",
        "/etc/litellm/llmroute_stream_usage.py",
        "/etc/litellm/llmroute_quota_routing.py",
        "/etc/litellm/llmroute_quota.json",
        "/etc/litellm/llmroute_file_reread.py",
        "/etc/litellm/llmroute_proxy_workers.py",
    }
    assert "/health/readiness" in " ".join(service["healthcheck"]["test"])


def test_dollar_signs_are_escaped_from_compose_interpolation() -> None:
    spec_route = route()
    spec_route["spec"]["models"][0]["targets"][1]["apiBase"] = "https://ollama.lan/?sig=$abc"
    content = compose_manifest(spec_route).document["configs"]["config.yaml"]["content"]
    assert "sig=$$abc" in content
    assert config_of(compose_manifest(spec_route))["model_list"][1]["litellm_params"][
        "api_base"
    ] == ("https://ollama.lan/?sig=$abc")


def test_limits_are_shared_by_the_workers_of_one_proxy() -> None:
    spec_route = route(proxy={"replicas": 4}, ollama={})
    spec_route["spec"]["models"][0]["targets"][0]["rpm"] = 60
    one = copy.deepcopy(spec_route)
    one["spec"]["proxy"]["replicas"] = 1
    processes = limit_processes(parse_route(one)).fewest
    rpm = config_of(compose_manifest(spec_route))["model_list"][0]["litellm_params"]["rpm"]
    assert rpm == -(-60 // processes)
    assert rpm > render_manifest(spec_route).config["model_list"][0]["litellm_params"]["rpm"]


def test_an_invalid_route_names_the_field() -> None:
    spec_route = route()
    spec_route["spec"]["models"][0]["fallbacks"] = ["missing"]
    with pytest.raises(SpecError) as error:
        compose_manifest(spec_route)
    assert error.value.field == "spec.models[0].fallbacks[0]"


# -- Ollama ---------------------------------------------------------------------------------------


def test_a_managed_ollama_runs_its_statefulset_container_with_a_named_volume() -> None:
    spec_route = route(
        ollama={"models": ["llama3.2", "qwen2.5:7b"], "numParallel": 2, "gpu": {"count": 1}}
    )
    project = compose_manifest(spec_route)
    document = project.document
    statefulset = next(o for o in render_manifest(spec_route).objects if o["kind"] == "StatefulSet")
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    ollama = document["services"]["ollama"]
    assert ollama["image"] == versions.OLLAMA_IMAGE == container["image"]
    # The same command (serve, then pull what the volume lacks), $ escaped for Compose.
    assert [c.replace("$$", "$") for c in ollama["entrypoint"]] == container["command"]
    assert document["volumes"] == {OLLAMA_VOLUME: {}}
    assert ollama["volumes"] == [f"{OLLAMA_VOLUME}:{MODELS_DIR}"]
    assert ollama["environment"]["LLMROUTE_OLLAMA_MODELS"] == "llama3.2 qwen2.5:7b"
    assert ollama["environment"]["OLLAMA_KEEP_ALIVE"] == "5m"  # the CRD's default
    assert ollama["environment"]["OLLAMA_NUM_PARALLEL"] == "2"
    # Healthy once every model is pulled, as the pod turns Ready; the proxy waits for it.
    assert ollama["healthcheck"]["test"] == ["CMD", "test", "-f", READY_FILE]
    assert project.document["services"]["litellm"]["depends_on"] == {
        "ollama": {"condition": "service_healthy"}
    }
    # A fresh named volume belongs to root: the container keeps the image's user.
    assert "user" not in ollama
    assert ollama["read_only"] is True
    (device,) = ollama["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    assert not any(".svc:" in s for s in strings(config_of(project)))


def test_a_managed_ollama_without_models_or_gpu() -> None:
    document = compose_manifest(route(ollama={})).document
    ollama = document["services"]["ollama"]
    assert ollama["environment"]["LLMROUTE_OLLAMA_MODELS"] == ""
    assert "deploy" not in ollama
    assert document["services"]["litellm"]["depends_on"] == {
        "ollama": {"condition": "service_healthy"}
    }


def test_an_external_ollama_is_called_where_it_is() -> None:
    project = compose_manifest(route(ollama={"external": {"url": "http://ollama.lan:11434"}}))
    assert set(project.document["services"]) == {"litellm"}
    assert "volumes" not in project.document
    assert "depends_on" not in proxy(project)
    bases = [d["litellm_params"].get("api_base") for d in config_of(project)["model_list"]]
    assert bases == [None, "http://ollama.lan:11434"]
