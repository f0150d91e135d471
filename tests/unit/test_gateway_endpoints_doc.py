"""docs/operations.md's "Endpoints callers may use" says what the gateway's auth hook does.

The hook's table, CALLER_ENDPOINTS (llmroute.payloads.gateway_auth), is the truth: the page
lists exactly its endpoints, each with where its model is named, and the OpenAI endpoints
the page says are refused are routes LiteLLM serves that the table leaves out.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llmroute.payloads import gateway_auth

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
# The page's "where the model is named" column, by the table's model source.
WHERE = {"the body's `model`": "body", "the URL": "url", "none (lists the route's models)": None}


def section() -> str:
    text = OPERATIONS.read_text()
    start = text.index("\n## Endpoints callers may use\n")
    return text[start : text.index("\n## ", start + 1)]


def tables(text: str) -> list[list[list[str]]]:
    """Each Markdown table of `text`, as rows of cells (the header and rule left out)."""
    found: list[list[list[str]]] = []
    rows: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif rows:
            found.append(rows[2:])
            rows = []
    return found


def paths(cell: str) -> list[str]:
    return re.findall(r"`(?:POST |GET )?(/[^`]*)`", cell)


def template(path: str) -> str:
    """A route template as the page writes it: path parameters without their converter."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def source(param: str | None) -> str | None:
    if param is None:
        return None
    return "body" if param == gateway_auth.BODY_MODEL else "url"


def test_the_page_lists_every_caller_endpoint_with_where_its_model_is_named() -> None:
    allowed, _refused = tables(section())
    documented = {}
    for _api, endpoints, where in allowed:
        for path in paths(endpoints):
            assert path not in documented, f"listed twice: {path}"
            documented[path] = WHERE[where]
    expected = {template(e): source(p) for e, p in gateway_auth.CALLER_ENDPOINTS.items()}
    assert documented == expected


def test_the_refused_openai_endpoints_are_litellm_routes_callers_cannot_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price map download
    from fastapi.routing import iter_route_contexts
    from litellm.proxy._lazy_features import register_all_features
    from litellm.proxy.proxy_server import app

    register_all_features(app)
    served = {
        template(path)
        for context in iter_route_contexts(app.routes)
        if (path := getattr(context.original_route, "path", None))
    }
    callers = {template(e) for e in gateway_auth.CALLER_ENDPOINTS}
    _allowed, refused = tables(section())
    listed = [path for _api, endpoints in refused for path in paths(endpoints)]
    assert listed
    for path in listed:
        assert path in served, f"LiteLLM serves no {path}"
        assert path not in callers, f"{path} is open to callers"
