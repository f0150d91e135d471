"""No secret value can reach a rendered object: render sees Secret names and keys only, and every
credential LiteLLM needs is an `os.environ/NAME` fed by a secretKeyRef."""

from __future__ import annotations

import dataclasses
import json
import string
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from llmroute.api.quota import QuotaEffect
from llmroute.api.route import MULTI_VALUE_CREDENTIALS
from llmroute.render.credentials import LITELLM_MASTER_KEY_ENV
from llmroute.render.litellm_config import NO_KEY
from manifests import render_manifest

DNS = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=12).map(
    lambda s: f"s{s}"
)
KEY = st.text(alphabet=string.ascii_letters + string.digits + "._-", min_size=1, max_size=16)
MODEL = st.text(alphabet=string.ascii_letters + string.digits + ".-:", min_size=1, max_size=20)
# Values a Secret might hold; the prefix cannot occur in anything render produces by itself.
SECRET_VALUE = st.text(alphabet=string.printable.strip(), min_size=8, max_size=40).map(
    lambda s: f"Sv!{s}"
)
CREDENTIAL_PARAMS = {"api_key", "redis_password", "password", "master_key"} | {
    c.param for creds in MULTI_VALUE_CREDENTIALS.values() for c in creds
}


@st.composite
def target(draw) -> dict[str, Any]:
    provider = draw(st.sampled_from(sorted(_providers())))
    spec: dict[str, Any] = {"provider": provider, "model": draw(MODEL)}
    if provider in ("openai-compatible", "azure") or draw(st.booleans()):
        spec["apiBase"] = f"https://{draw(DNS)}.example.com/v1"
    credentials = draw(st.sampled_from(["key", "whole", "none"]))
    if credentials == "whole" and provider in MULTI_VALUE_CREDENTIALS:
        spec["credentialsSecretRef"] = {"name": draw(DNS)}
    elif credentials != "none":
        spec["apiKeySecretRef"] = {"name": draw(DNS), "key": draw(KEY)}
    if draw(st.booleans()):
        spec["rpm"] = draw(st.integers(1, 10_000))
    return spec


def _providers() -> set[str]:
    from llmroute.api.route import PROVIDERS

    return set(PROVIDERS)


@st.composite
def route(draw) -> dict[str, Any]:
    count = draw(st.integers(1, 3))
    models = [
        {"name": f"m{i}", "targets": draw(st.lists(target(), min_size=1, max_size=3))}
        for i in range(count)
    ]
    if count > 1:
        models[0]["fallbacks"] = [f"m{i}" for i in range(1, count)]
    spec: dict[str, Any] = {"models": models}
    auth: dict[str, Any] = {}
    if draw(st.booleans()):
        auth["masterKeySecretRef"] = {"name": draw(DNS), "key": draw(KEY)}
    callers = draw(st.lists(st.tuples(DNS, KEY), max_size=3, unique_by=lambda c: c[0]))
    auth["callers"] = [
        {"name": name, "keySecretRef": {"name": f"{name}-key", "key": key}} for name, key in callers
    ]
    spec["auth"] = auth
    if draw(st.booleans()):
        password = {"name": draw(DNS), "key": draw(KEY)}
        spec["redis"] = {"external": {"url": "redis://redis", "passwordSecretRef": password}}
        spec["router"] = {"cache": {"enabled": True}}
    elif draw(st.booleans()):
        spec["redis"] = {"managed": {}}
        spec["router"] = {"cache": {"enabled": True}}
    return {
        "apiVersion": "llmroute.dev/v1alpha1",
        "kind": "LLMRoute",
        "metadata": {"name": draw(DNS), "namespace": draw(DNS)},
        "spec": spec,
    }


def secret_pairs(route: dict[str, Any]) -> set[tuple[str, str]]:
    """Every (Secret, key) the route may read, whole-Secret references expanded."""
    pairs: set[tuple[str, str]] = set()

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            for field, value in node.items():
                if field.endswith("SecretRef") and isinstance(value, dict):
                    if "key" in value:
                        pairs.add((value["name"], value["key"]))
                    else:
                        pairs.update((value["name"], c.secret_key) for c in _all_credential_keys())
                else:
                    visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    visit(route["spec"])
    return pairs


def _all_credential_keys():
    return [c for creds in MULTI_VALUE_CREDENTIALS.values() for c in creds]


def strings(node: Any):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings(value)
    elif isinstance(node, (list, tuple)):
        for item in node:
            yield from strings(item)


@settings(max_examples=60, deadline=None)
@given(route=route(), data=st.data())
def test_no_secret_value_reaches_any_rendered_object(route: dict[str, Any], data) -> None:
    # The cluster's Secrets, with values the renderer never gets to see.
    secrets = {pair: data.draw(SECRET_VALUE) for pair in sorted(secret_pairs(route))}
    quotas = [QuotaEffect(provider="openai", state="SoftLimited")]
    rendered = render_manifest(route, quotas=quotas)
    everything = json.dumps(dataclasses.asdict(rendered))
    for value in secrets.values():
        assert value not in everything
        assert json.dumps(value)[1:-1] not in everything


@settings(max_examples=60, deadline=None)
@given(route=route())
def test_credentials_are_environment_references_fed_by_secret_key_refs(route) -> None:
    rendered = render_manifest(route)
    deployment = next(o for o in rendered.objects if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    from_secrets = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    literal = {e["name"] for e in container["env"] if "value" in e}
    # Whatever names a credential in the config is an env reference to a Secret-fed variable.
    referenced: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in CREDENTIAL_PARAMS and isinstance(value, str):
                    assert value.startswith("os.environ/") or value == NO_KEY, (key, value)
                if isinstance(value, str) and value.startswith("os.environ/"):
                    referenced.add(value.removeprefix("os.environ/"))
                visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    visit(rendered.config)
    # LiteLLM's own master key is no Secret's: each worker sets a random one at start.
    assert rendered.config["general_settings"]["master_key"] == (
        f"os.environ/{LITELLM_MASTER_KEY_ENV}"
    )
    referenced.discard(LITELLM_MASTER_KEY_ENV)
    assert LITELLM_MASTER_KEY_ENV not in literal | set(from_secrets)
    assert referenced <= set(from_secrets)
    assert not referenced & literal
    # Every Secret-fed variable reads a key the route names, and nothing else.
    allowed = secret_pairs(route)
    if rendered.generated_secret is not None:
        allowed.add((rendered.generated_secret["metadata"]["name"], "masterKey"))
    if rendered.generated_redis_secret is not None:
        allowed.add((rendered.generated_redis_secret["metadata"]["name"], "password"))
    assert {(r["name"], r["key"]) for r in from_secrets.values()} <= allowed
    # No object carries Secret data, the generated master-key Secret included (the handler
    # writes its random key).
    for obj in rendered.objects:
        assert obj["kind"] != "Secret"
        assert "stringData" not in obj
    for generated in (rendered.generated_secret, rendered.generated_redis_secret):
        if generated is not None:
            assert "stringData" not in generated
            assert "data" not in generated
