"""The body llmroute sends for a server-side apply."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmroute import kube


def test_characters_beyond_the_basic_plane_are_sent_as_themselves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An apply body is YAML to the API server, and YAML has no surrogate escapes: a model name
    # with an emoji, sent as JSON's "\ud83d\ude00", was refused ("found invalid Unicode
    # character escape code"). Found by tests/e2e/test_spec_properties.py.
    sent: dict[str, Any] = {}
    monkeypatch.setattr(kube, "_call", lambda api, method, path, **kw: sent.update(kw))
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "gw-litellm", "namespace": "ns"},
        "data": {"config.yaml": "model_name: smart \U0001f600\n"},
    }
    kube.apply(None, config_map)  # type: ignore[arg-type]
    body = sent["body"]
    assert "\\ud83d" not in body
    assert json.loads(body) == config_map
