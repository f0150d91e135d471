"""Valid LLMRoute and ModelQuota manifests, and a way to break them one field at a time.

Shared by the offline validation tests and the API server tests, so both judge the same
manifests.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from llmroute.api import API_VERSION

DELETE = object()
# What `llmroute render` once printed as the generated master key (a public value).
OLD_RENDER_PLACEHOLDER = "generated-by-llmroute-on-create"

ROUTE: dict[str, Any] = {
    "apiVersion": API_VERSION,
    "kind": "LLMRoute",
    "metadata": {"name": "gateway"},
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
                "fallbacks": ["cheap"],
            },
            {"name": "cheap", "targets": [{"provider": "ollama", "model": "llama3.2"}]},
        ],
        "ollama": {"models": ["llama3.2"]},
    },
}

# The smallest route the operator makes Ready: one OpenAI target, whose key is "openai" in
# the Secret provider-keys.
OPENAI_ROUTE: dict[str, Any] = {
    "apiVersion": API_VERSION,
    "kind": "LLMRoute",
    "metadata": {"name": "gateway"},
    "spec": {
        "models": [
            {
                "name": "smart",
                "targets": [
                    {
                        "provider": "openai",
                        "model": "gpt-4",
                        "apiKeySecretRef": {"name": "provider-keys", "key": "openai"},
                    }
                ],
            }
        ]
    },
}

QUOTA: dict[str, Any] = {
    "apiVersion": API_VERSION,
    "kind": "ModelQuota",
    "metadata": {"name": "anthropic-monthly"},
    "spec": {
        "routeRef": {"name": "gateway"},
        "match": {"provider": "anthropic"},
        "budget": {"limitUSD": 100},
    },
}


def changed(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with each dotted path (``spec.models[0].name``) set, or deleted."""
    obj = copy.deepcopy(base)
    for path, value in changes.items():
        parts: list[str | int] = [
            int(index) if index else name
            for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path)
        ]
        parent: Any = obj
        for part in parts[:-1]:
            parent = parent[part]
        if value is DELETE:
            del parent[parts[-1]]
        else:
            parent[parts[-1]] = value
    return obj


def render_manifest(obj: Any, **options: Any) -> Any:
    """Render an LLMRoute manifest as the operator and the CLI do: parse it (the edge), render."""
    from llmroute.api.route import parse_route
    from llmroute.render import render_route

    return render_route(parse_route(obj), **options)


def compose_manifest(obj: Any, **options: Any) -> Any:
    """The Compose project of an LLMRoute manifest, parsed at the edge as the CLI does."""
    from llmroute.api.route import parse_route
    from llmroute.render.compose import render_compose

    return render_compose(parse_route(obj), **options)
