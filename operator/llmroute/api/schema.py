"""What the CRD schemas declare, read from them (defined once, there): defaults and enums.

The API server applies the defaults when it stores an object; applying them here as well lets
the renderer and `llmroute validate` see the same values for a manifest that never went
through an API server. Enums (a quota's period, action, enforcement and state) are read from
the schema too, so Python never repeats them.
"""

from __future__ import annotations

import copy
from typing import Any

from llmroute.api.crds import schema_for


def apply_defaults(spec: dict[str, Any], kind: str = "LLMRoute") -> dict[str, Any]:
    """A copy of ``spec`` with the CRD's defaults filled in, as the API server would."""
    defaulted = copy.deepcopy(spec)
    default_value(defaulted, schema_for(kind)["properties"]["spec"])
    return defaulted


def apply_object_defaults(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of a whole LLMRoute / ModelQuota object with its spec defaulted."""
    defaulted = copy.deepcopy(obj)
    default_value(defaulted, schema_for(defaulted["kind"]))
    return defaulted


def default_value(value: Any, schema: dict[str, Any]) -> None:
    """Fill in ``schema``'s defaults inside ``value``, in place, the way the API server does.

    A default applies where its field is absent (or null); a default of an object is itself
    defaulted, so ``router: {}`` comes out with every router default. Values of the wrong type
    are left alone: reporting them is validation's job.
    """
    if isinstance(value, dict):
        properties = schema.get("properties")
        if properties:
            for name, prop in properties.items():
                if "default" in prop and value.get(name) is None:
                    value[name] = copy.deepcopy(prop["default"])
            for name, prop in properties.items():
                if name in value:
                    default_value(value[name], prop)
        elif isinstance(schema.get("additionalProperties"), dict):
            for item in value.values():
                default_value(item, schema["additionalProperties"])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            default_value(item, schema["items"])


def _field_schema(kind: str, path: str) -> dict[str, Any]:
    schema = schema_for(kind)
    for part in path.split("."):
        name = part.removesuffix("[]")
        schema = schema["properties"][name]
        if part.endswith("[]"):
            schema = schema["items"]
    return schema


def schema_enum(kind: str, path: str) -> tuple[str, ...]:
    """The values the CRD allows for a dotted field path such as ``spec.action``, in order."""
    schema = _field_schema(kind, path)
    if "enum" not in schema:
        raise KeyError(f"{kind} {path} has no enum")
    return tuple(schema["enum"])


def schema_default(kind: str, path: str) -> Any:
    """The default the CRD declares for a dotted field path such as ``spec.ollama.storage.size``.

    For renderers that need a default where the object holding it is absent (an Ollama with
    no ``storage`` still gets a volume of the default size). List items are addressed by
    ``[]``: ``spec.models[].strategy``.
    """
    schema = _field_schema(kind, path)
    if "default" not in schema:
        raise KeyError(f"{kind} {path} has no default")
    return copy.deepcopy(schema["default"])
