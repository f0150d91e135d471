"""Offline validation of LLMRoute / ModelQuota manifests, as the API server would judge them.

`llmroute validate` runs this in CI pipelines that have no cluster. It checks a manifest
against the CRD's OpenAPI schema (with the defaults applied first, as the API server does),
the list-type invariants (unique model and caller names), and Python mirrors of the CRD's CEL
rules. Each error names the field, often more precisely than the API server can: a CEL rule
on ``spec`` can only say "spec.models", the mirror says which fallback of which model.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from llmroute.api import API_VERSION
from llmroute.api.crds import kinds, schema_for
from llmroute.api.pod_fields import route_pod_field_errors
from llmroute.api.schema import default_value


@dataclass(frozen=True, order=True)
class ValidationError:
    """One problem with a manifest: the field it concerns and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


# How many x-kubernetes-validations rules each schema node carries, per kind, all mirrored
# below. tests/unit/test_validation.py compares this with the CRDs, so a new CEL rule cannot
# ship without its mirror.
MIRRORED_RULES: dict[str, dict[str, int]] = {
    "LLMRoute": {
        "": 2,
        "spec": 4,
        "spec.models[]": 1,
        "spec.models[].targets[]": 4,
        "spec.access.from[]": 1,
        "spec.proxy.autoscaling": 1,
        "spec.proxy.env[]": 1,
        "spec.ollama": 1,
        "spec.expose": 2,
        "spec.router": 1,
        "spec.redis": 1,
    },
    "ModelQuota": {"spec": 2, "spec.match": 1},
}

# Providers whose public APIs need a key; bedrock and vertex_ai may use the pod's cloud identity.
KEYED_PROVIDERS = ("anthropic", "openai", "gemini", "mistral", "groq", "azure")
# Providers without a well-known endpoint.
ENDPOINT_PROVIDERS = ("azure", "openai-compatible")

# spec.proxy.litellm: the keys of each section of LiteLLM's config that llmroute renders from
# the spec (changing them there would break fallbacks, quotas, metrics or caching behind the
# spec's back), and general settings that change who may call the gateway (the auth hook and
# its policy must stay the only door). tests/unit/test_render.py checks that every key the
# renderer writes is listed. litellm_settings.callbacks is merged, not refused.
LITELLM_OWNED_SETTINGS: Final[Mapping[str, frozenset[str]]] = {
    "litellmSettings": frozenset(
        {
            "cache",
            "cache_params",
            "custom_prometheus_tags",
            "drop_params",
            "prometheus_exclude_labels",
            "request_timeout",
            "require_auth_for_metrics_endpoint",
        }
    ),
    "routerSettings": frozenset(
        {
            "allowed_fails",
            "cache_kwargs",
            "context_window_fallbacks",
            "cooldown_time",
            "fallbacks",
            "max_fallbacks",
            "model_group_alias",
            "model_list",
            "num_retries",
            "optional_pre_call_checks",
            "redis_host",
            "redis_password",
            "redis_port",
            "routing_groups",
            "routing_strategy",
            "timeout",
        }
    ),
    "generalSettings": frozenset(
        {
            "admin_only_routes",
            "allowed_routes",
            "custom_auth",
            "custom_sso",
            "database_url",
            "enable_jwt_auth",
            "litellm_jwtauth",
            "master_key",
            "pass_through_endpoints",
            "public_routes",
            "store_model_in_db",
        }
    ),
}
MERGED_LITELLM_SETTINGS: Final = ("callbacks",)
# The proxy container's variables that llmroute sets; spec.proxy.env may not replace them.
RESERVED_PROXY_ENV: Final = frozenset(
    {
        "DISABLE_ADMIN_UI",
        "HOME",
        "LITELLM_LOCAL_MODEL_COST_MAP",
        "LITELLM_LOG",
        "LITELLM_WORKER_STARTUP_HOOKS",
        "PYTHONPATH",
        "PYTHONSAFEPATH",
    }
)
RESERVED_PROXY_ENV_PREFIX: Final = "LLMROUTE_"

ROUTE_NAME_MAX = 45
# Route names ending so would share a child object with another route (gw's managed Ollama
# Service gw-ollama is route gw-ollama's proxy Service). Derived from the table of child
# suffixes (llmroute.render.children.colliding_name_endings; a unit test keeps them equal).
REFUSED_ROUTE_NAME_ENDINGS = ("-ollama", "-redis")
_ROUTE_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def validate(obj: Any) -> list[ValidationError]:
    """Every problem with an LLMRoute or ModelQuota manifest; an empty list means it is valid."""
    if not isinstance(obj, dict):
        return [ValidationError("<root>", "a manifest must be a mapping")]
    kind = obj.get("kind")
    if kind not in kinds():
        return [ValidationError("kind", f"must be one of {', '.join(kinds())}, not {kind!r}")]
    if obj.get("apiVersion") != API_VERSION:
        return [
            ValidationError("apiVersion", f"must be {API_VERSION}, not {obj.get('apiVersion')!r}")
        ]

    schema = schema_for(kind)
    defaulted = copy.deepcopy(obj)
    default_value(defaulted, schema)

    errors = list(_schema_errors(defaulted, kind))
    errors.extend(_list_type_errors(defaulted, schema, ""))
    metadata = defaulted.get("metadata")
    if not isinstance(metadata, dict) or not (metadata.get("name") or metadata.get("generateName")):
        errors.append(ValidationError("metadata.name", "Required value"))
    errors.extend(_CEL_MIRRORS[kind](defaulted))
    return list(dict.fromkeys(errors))


def validate_all(objs: Iterable[Any]) -> list[tuple[int, ValidationError]]:
    """Validate several manifests (one YAML stream); each error with its document's index."""
    return [(index, error) for index, obj in enumerate(objs) for error in validate(obj)]


# -- OpenAPI schema ---------------------------------------------------------------------------


def _schema_errors(obj: dict[str, Any], kind: str) -> Iterator[ValidationError]:
    for error in _validator(kind).iter_errors(obj):
        yield from _convert(error)


@functools.cache
def _validator(kind: str) -> Any:
    # jsonschema is imported here, not at module level: only `llmroute validate` needs it and
    # the operator's start-up should not pay for it.
    import jsonschema

    validator_class = jsonschema.Draft7Validator
    return validator_class(
        _to_json_schema(schema_for(kind)), format_checker=validator_class.FORMAT_CHECKER
    )


def _to_json_schema(node: Any) -> Any:
    """Translate a Kubernetes structural schema (OpenAPI v3.0 dialect) to Draft 7.

    Differences that matter: exclusiveMinimum/Maximum are booleans in v3.0, ``nullable`` adds
    null to the type, and an object without x-kubernetes-preserve-unknown-fields has no room
    for undeclared fields (the API server prunes them, and kubectl's strict field validation
    rejects them: worth an error offline, since a typo'd field is silently lost).
    """
    if isinstance(node, list):
        return [_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {
        key: _to_json_schema(value)
        for key, value in node.items()
        if not key.startswith("x-kubernetes-") and key not in ("nullable", "default")
    }
    for bound in ("Minimum", "Maximum"):
        if node.get(f"exclusive{bound}") is True:
            out[f"exclusive{bound}"] = out.pop(bound.lower())
        elif node.get(f"exclusive{bound}") is False:
            del out[f"exclusive{bound}"]
    if node.get("nullable") and "type" in node:
        out["type"] = [node["type"], "null"]
    if isinstance(node.get("pattern"), str):
        out["pattern"] = _end_of_text_anchors(node["pattern"])
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _end_of_text_anchors(pattern: str) -> str:
    """``$`` as the API server's (Go) regexps read it: the end of the text.

    Python's ``$`` also matches before a final newline, so "name\\n" would pass offline and be
    refused by the API server. Escaped dollars and dollars in character classes stay as they are.
    """
    out, in_class, i = [], False, 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "$":
            char = r"\Z"
        out.append(char)
        i += 1
    return "".join(out)


def _child(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if not _IDENTIFIER.fullmatch(str(key)):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _format_path(parts: Iterable[Any]) -> str:
    path = ""
    for part in parts:
        path = _child(path, part)
    return path or "<root>"


def _join(path: str, name: str) -> str:
    return _child("" if path == "<root>" else path, name)


def _quote(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _convert(error: Any) -> Iterator[ValidationError]:
    path = _format_path(error.absolute_path)
    kind, expected, instance = error.validator, error.validator_value, error.instance
    if kind == "required":
        for name in expected:
            if isinstance(instance, dict) and name not in instance:
                yield ValidationError(_join(path, name), "Required value")
    elif kind == "additionalProperties":
        declared = error.schema.get("properties", {})
        for name in instance:
            if name not in declared:
                yield ValidationError(_join(path, name), "unknown field")
    elif kind == "enum":
        supported = ", ".join(_quote(value) for value in expected)
        yield ValidationError(
            path, f"Unsupported value: {_quote(instance)}: supported values: {supported}"
        )
    elif kind == "type":
        yield ValidationError(
            path, f"Invalid value: {_quote(instance)}: must be of type {expected}"
        )
    elif kind == "pattern":
        yield ValidationError(path, f"Invalid value: {_quote(instance)}: should match {expected!r}")
    else:
        yield ValidationError(path, _bound_message(kind, expected, instance, error.message))


def _bound_message(kind: str, expected: Any, instance: Any, fallback: str) -> str:
    messages = {
        "minimum": f"should be greater than or equal to {expected}",
        "exclusiveMinimum": f"should be greater than {expected}",
        "maximum": f"should be less than or equal to {expected}",
        "exclusiveMaximum": f"should be less than {expected}",
        "minLength": f"should be at least {expected} chars long",
        "maxLength": f"may not be more than {expected} chars long",
        "minItems": f"should have at least {expected} items",
        "maxItems": f"must have at most {expected} items",
    }
    if kind in messages:
        return f"Invalid value: {_quote(instance)}: {messages[kind]}"
    return fallback


def _list_type_errors(value: Any, schema: dict[str, Any], path: str) -> Iterator[ValidationError]:
    """Duplicate keys in x-kubernetes-list-type map / set lists, anywhere in the object."""
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for name, item in value.items():
            if name in properties:
                yield from _list_type_errors(item, properties[name], _child(path, name))
            elif isinstance(additional, dict):
                yield from _list_type_errors(item, additional, _child(path, name))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        list_type = schema.get("x-kubernetes-list-type")
        keys = schema.get("x-kubernetes-list-map-keys", [])
        seen: set[str] = set()
        for index, item in enumerate(value):
            item_path = f"{path}[{index}]"
            if list_type == "map" and isinstance(item, dict):
                identity = _quote({key: item.get(key) for key in keys})
            elif list_type == "set":
                identity = _quote(item)
            else:
                identity = None
            if identity is not None:
                if identity in seen:
                    yield ValidationError(item_path, f"Duplicate value: {identity}")
                seen.add(identity)
            yield from _list_type_errors(item, schema["items"], item_path)


# -- mirrors of the CEL rules ----------------------------------------------------------------


def _dicts(value: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    if isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, dict):
                yield index, item


def _strings(value: Any) -> Iterator[tuple[int, str]]:
    if isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, str):
                yield index, item


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _route_rules(route: dict[str, Any]) -> Iterator[ValidationError]:
    name = _mapping(route.get("metadata")).get("name")
    if isinstance(name, str) and not (_ROUTE_NAME.fullmatch(name) and len(name) <= ROUTE_NAME_MAX):
        yield ValidationError(
            "metadata.name",
            f"{name!r} must be a DNS-1035 label (lower case letters, digits and '-', starting "
            f"with a letter) of at most {ROUTE_NAME_MAX} characters: it names the route's "
            "Service and workloads",
        )
    if isinstance(name, str):
        yield from (
            ValidationError(
                "metadata.name",
                f"{name!r} must not end in {ending!r}: route "
                f"{name[: -len(ending)]!r} names its children so (e.g. its managed Ollama's "
                "Service), and two routes must not claim one object",
            )
            for ending in REFUSED_ROUTE_NAME_ENDINGS
            if name.endswith(ending)
        )
    spec = route.get("spec")
    if not isinstance(spec, dict):
        return
    models = list(_dicts(spec.get("models")))
    # Only strings name models; a name of another type is a schema error, reported as such.
    model_names = {name for _, model in models if isinstance(name := model.get("name"), str)}
    for index, model in models:
        yield from _model_rules(model, f"spec.models[{index}]", model_names)
    managed = [
        f"spec.models[{index}].targets[{position}]"
        for index, model in models
        for position, target in _dicts(model.get("targets"))
        if target.get("provider") == "ollama" and "apiBase" not in target
    ]
    if managed and "ollama" not in spec:
        yield ValidationError(
            "spec.ollama",
            "Required value: an ollama target without apiBase uses the route's managed Ollama: "
            f"set spec.ollama (or give the target an apiBase); such targets: {', '.join(managed)}",
        )
    yield from _caller_rules(spec, model_names)
    for index, peer in _dicts(_mapping(spec.get("access")).get("from")):
        if "podSelector" not in peer and "namespaceSelector" not in peer:
            yield ValidationError(
                f"spec.access.from[{index}]",
                "a peer needs podSelector, namespaceSelector or both",
            )
    proxy = _mapping(spec.get("proxy"))
    autoscaling = _mapping(proxy.get("autoscaling"))
    yield from replica_bound_errors(autoscaling.get("minReplicas"), autoscaling.get("maxReplicas"))
    yield from litellm_settings_errors(_mapping(proxy.get("litellm")))
    for index, variable in _dicts(proxy.get("env")):
        yield from proxy_env_errors(f"spec.proxy.env[{index}]", variable)
    ollama = spec.get("ollama")
    if isinstance(ollama, dict):
        yield from external_ollama_errors(ollama)
    expose = spec.get("expose")
    if isinstance(expose, dict):
        yield from expose_errors(expose)
    yield from moved_router_redis_errors(_mapping(spec.get("router")))
    redis = spec.get("redis")
    if isinstance(redis, dict):
        yield from redis_mode_errors(redis)
    # What the API server refuses in the rendered Deployment, StatefulSet or NetworkPolicy.
    for path, message in route_pod_field_errors(spec):
        yield ValidationError(path, message)


# The cross-field rules that llmroute.api.route applies while it parses a route, written once
# here. They take plain values, so they judge a raw manifest and a parsed route alike.


def fallback_errors(
    path: str, name: Any, fallbacks: Iterable[Any], model_names: Container[Any]
) -> Iterator[ValidationError]:
    """A model's fallbacks name other models of the route (``path``: the model's field)."""
    for index, fallback in enumerate(fallbacks):
        if not isinstance(fallback, str):
            continue
        if fallback == name:
            yield ValidationError(
                f"{path}.fallbacks[{index}]",
                f"names the model itself ({_quote(fallback)}): a model cannot fall back to itself",
            )
        elif fallback not in model_names:
            yield ValidationError(
                f"{path}.fallbacks[{index}]", f"names no model of this route ({_quote(fallback)})"
            )


def credential_errors(
    path: str, has_api_key: bool, has_credentials: bool
) -> Iterator[ValidationError]:
    """A target's credential comes from one Secret reference (``path``: the target's field)."""
    if has_api_key and has_credentials:
        yield ValidationError(
            f"{path}.credentialsSecretRef",
            "set at most one of apiKeySecretRef and credentialsSecretRef",
        )


def endpoint_errors(path: str, provider: Any, has_api_base: bool) -> Iterator[ValidationError]:
    """Providers without a well-known endpoint need apiBase (``path``: the target's field)."""
    if provider in ENDPOINT_PROVIDERS and not has_api_base:
        yield ValidationError(
            f"{path}.apiBase",
            f"Required value: provider {provider} needs apiBase (the endpoint to call)",
        )


def caller_model_errors(
    path: str, models: Iterable[Any], model_names: Container[Any]
) -> Iterator[ValidationError]:
    """A caller's allowed models are models of the route (``path``: the caller's field)."""
    for position, model in enumerate(models):
        if isinstance(model, str) and model not in model_names:
            yield ValidationError(
                f"{path}.models[{position}]", f"names no model of this route ({_quote(model)})"
            )


def replica_bound_errors(low: Any, high: Any) -> Iterator[ValidationError]:
    """spec.proxy.autoscaling: minReplicas does not exceed maxReplicas."""
    if isinstance(low, int) and isinstance(high, int) and low > high:
        yield ValidationError(
            "spec.proxy.autoscaling.minReplicas",
            f"must not exceed maxReplicas ({low} > {high})",
        )


def litellm_settings_errors(overrides: Mapping[str, Any]) -> Iterator[ValidationError]:
    for section, owned in LITELLM_OWNED_SETTINGS.items():
        settings = overrides.get(section)
        if not isinstance(settings, Mapping):
            continue
        for key in sorted(k for k in settings if k in owned):
            yield ValidationError(
                f"spec.proxy.litellm.{section}.{key}",
                "is set by llmroute (from the route's spec, or to keep the gateway's key check "
                "the only way in) and cannot be overridden",
            )
    litellm_settings = overrides.get("litellmSettings")
    callbacks = litellm_settings.get("callbacks") if isinstance(litellm_settings, Mapping) else None
    if callbacks is not None and not (
        isinstance(callbacks, list) and all(isinstance(c, str) for c in callbacks)
    ):
        yield ValidationError(
            "spec.proxy.litellm.litellmSettings.callbacks",
            "must be a list of callback names (added to llmroute's own)",
        )


def proxy_env_errors(path: str, variable: Mapping[str, Any]) -> Iterator[ValidationError]:
    name = variable.get("name")
    if isinstance(name, str) and (
        name in RESERVED_PROXY_ENV or name.startswith(RESERVED_PROXY_ENV_PREFIX)
    ):
        yield ValidationError(
            f"{path}.name",
            f"{name} is set by llmroute ({RESERVED_PROXY_ENV_PREFIX}* and "
            f"{', '.join(sorted(RESERVED_PROXY_ENV))})",
        )
    if ("value" in variable) == ("valueFrom" in variable):
        yield ValidationError(path, "set exactly one of value and valueFrom")


def external_ollama_errors(ollama: Mapping[str, Any]) -> Iterator[ValidationError]:
    """spec.ollama.external excludes the fields of a managed Ollama."""
    if "external" not in ollama:
        return
    managed = [field for field in ("models", "storage", "gpu") if field in ollama]
    if managed:
        yield ValidationError(
            "spec.ollama.external",
            "external names an Ollama the operator does not manage: "
            f"{', '.join(managed)} cannot be set with it",
        )


def expose_errors(expose: Mapping[str, Any]) -> Iterator[ValidationError]:
    """spec.expose: one way in (an HTTPRoute or an Ingress); an Ingress names the namespace of
    its controller's pods, which no default could guess."""
    if ("httpRoute" in expose) == ("ingress" in expose):
        yield ValidationError("spec.expose", "set exactly one of httpRoute and ingress")
    if "ingress" in expose and "fromNamespace" not in expose:
        yield ValidationError(
            "spec.expose.fromNamespace",
            "Required value: ingress needs fromNamespace: the namespace of the ingress "
            "controller's pods, which the proxy's NetworkPolicy admits",
        )


def moved_router_redis_errors(router: Mapping[str, Any]) -> Iterator[ValidationError]:
    """spec.router.redis is gone: refused with where it went, never dropped silently."""
    if "redis" in router:
        yield ValidationError(
            "spec.router.redis",
            "spec.router.redis moved to spec.redis: write spec.redis.external with url "
            "redis://HOST:PORT (and passwordSecretRef), or spec.redis.managed",
        )


def redis_mode_errors(redis: Mapping[str, Any]) -> Iterator[ValidationError]:
    """spec.redis is either managed or external."""
    if ("managed" in redis) == ("external" in redis):
        yield ValidationError("spec.redis", "set exactly one of managed and external")


def _model_rules(
    model: dict[str, Any], path: str, model_names: set[Any]
) -> Iterator[ValidationError]:
    fallbacks = model.get("fallbacks")
    yield from fallback_errors(
        path, model.get("name"), fallbacks if isinstance(fallbacks, list) else (), model_names
    )
    for index, target in _dicts(model.get("targets")):
        yield from _target_rules(target, f"{path}.targets[{index}]")


def _target_rules(target: dict[str, Any], path: str) -> Iterator[ValidationError]:
    provider = target.get("provider")
    yield from credential_errors(
        path, "apiKeySecretRef" in target, "credentialsSecretRef" in target
    )
    if provider in KEYED_PROVIDERS and not (
        "apiKeySecretRef" in target or "credentialsSecretRef" in target
    ):
        yield ValidationError(
            f"{path}.apiKeySecretRef",
            f"Required value: provider {provider} needs a credential: "
            "set apiKeySecretRef or credentialsSecretRef",
        )
    yield from endpoint_errors(path, provider, "apiBase" in target)
    model = target.get("model")
    if isinstance(provider, str) and isinstance(model, str) and model.startswith(f"{provider}/"):
        yield ValidationError(
            f"{path}.model",
            f'model is the provider\'s own model id, without the "{provider}/" prefix '
            f"({_quote(model)})",
        )


def _caller_rules(spec: dict[str, Any], model_names: set[Any]) -> Iterator[ValidationError]:
    tasks = {task for _, task in _strings(spec.get("tasks"))}
    for index, caller in _dicts(_mapping(spec.get("auth")).get("callers")):
        path = f"spec.auth.callers[{index}]"
        models = caller.get("models")
        yield from caller_model_errors(
            path, models if isinstance(models, list) else (), model_names
        )
        for position, tag in _strings(caller.get("tags")):
            if tag not in tasks:
                yield ValidationError(
                    f"{path}.tags[{position}]",
                    f"is not a task declared in spec.tasks ({_quote(tag)})",
                )


def _quota_rules(quota: dict[str, Any]) -> Iterator[ValidationError]:
    # Imported here: llmroute.api.quota imports llmroute.api.route, which imports this module.
    from llmroute.api.quota import (
        REJECT,
        SCOPE_MATCH_FIELDS,
        SCOPED_ACTION_MESSAGE,
        SCOPED_LIMITS_MESSAGE,
        TARGET_MATCH_FIELDS,
    )

    spec = _mapping(quota.get("spec"))
    match = spec.get("match")
    if isinstance(match, dict) and not any(
        field in match for field in (*TARGET_MATCH_FIELDS, *SCOPE_MATCH_FIELDS)
    ):
        yield ValidationError(
            "spec.match", "match needs at least one of provider, model, modelName, caller and tag"
        )
    if isinstance(match, dict) and any(field in match for field in SCOPE_MATCH_FIELDS):
        if spec.get("action") != REJECT:
            yield ValidationError("spec", SCOPED_ACTION_MESSAGE)
        if "rpm" in spec or "tpm" in spec:
            yield ValidationError("spec", SCOPED_LIMITS_MESSAGE)


_CEL_MIRRORS: dict[str, Callable[[dict[str, Any]], Iterator[ValidationError]]] = {
    "LLMRoute": _route_rules,
    "ModelQuota": _quota_rules,
}
