"""docs/api.md is generated from the CRDs and must not drift from them."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from llmroute.api.crds import schema_for

REPO_ROOT = Path(__file__).resolve().parents[2]


def _generator() -> ModuleType:
    # The script's name has a dash (it is run, not imported), so load it by path.
    path = REPO_ROOT / "hack" / "gen-api-docs.py"
    spec = importlib.util.spec_from_file_location("gen_api_docs", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_docs_are_up_to_date() -> None:
    expected = _generator().render()
    actual = (REPO_ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert actual == expected, "docs/api.md is out of date: run python hack/gen-api-docs.py"


def test_check_mode_agrees() -> None:
    assert _generator().main(["--check"]) == 0


def test_every_spec_and_status_field_has_a_row() -> None:
    text = _generator().render()
    for kind in ("LLMRoute", "ModelQuota"):
        schema = schema_for(kind)
        for section in ("spec", "status"):
            for name in schema["properties"][section]["properties"]:
                assert f"| `{section}.{name}` |" in text, f"{kind} {section}.{name}"
    assert "| `spec.models[].targets[].provider` | string |" in text
    assert "| `spec.router.numRetries` | integer | `2` |" in text
