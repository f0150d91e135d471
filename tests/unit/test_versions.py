"""Versions pinned once: the proxy image tag follows the litellm pin of the package, and the
Ollama image the operator deploys is the version the tests build and run."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from llmroute import versions

ROOT = Path(__file__).resolve().parents[2]


def test_litellm_pin_matches_the_proxy_image() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"dependencies": project["dependencies"], **project["optional-dependencies"]}
    litellm = {
        group: [r for r in requirements if re.match(r"litellm(\[|[=<>~!]|$)", r)]
        for group, requirements in groups.items()
    }
    # Pinned once, in the operator's extra; no other group names litellm.
    assert [group for group, found in litellm.items() if found] == ["operator"]
    (requirement,) = litellm["operator"]
    pin = re.fullmatch(r"litellm(\[[^\]]*\])?==(.+)", requirement)
    assert pin is not None, f"not an exact pin: {requirement}"
    assert pin.group(2) == versions.LITELLM_VERSION
    assert versions.LITELLM_IMAGE.endswith(f":v{pin.group(2)}")


def pinned_tools() -> dict[str, str]:
    return dict(
        line.split("=", 1)
        for line in (ROOT / "hack/versions.env").read_text().splitlines()
        if line and not line.startswith("#")
    )


def test_tool_versions_are_pinned_exactly() -> None:
    pinned = pinned_tools()
    go_tools = {
        "KUBERNETES_VERSION",
        "ETCD_VERSION",
        "HELM_VERSION",
        "KWOK_VERSION",
        "OLLAMA_VERSION",
        "KUBE_ROUTER_VERSION",
        "PROMETHEUS_VERSION",
        "GATEWAY_API_VERSION",  # a Go module too, read for its CRDs
    }
    pypi_tools = {"MINIAUDIO_SDIST_VERSION", "CYCLONEDX_BOM_VERSION"}
    assert set(pinned) == go_tools | pypi_tools
    assert all(re.fullmatch(r"v\d+\.\d+\.\d+", pinned[k]) for k in go_tools)
    assert all(re.fullmatch(r"\d+\.\d+(\.\d+)?", pinned[k]) for k in pypi_tools)


def test_the_ollama_the_tests_run_is_the_image_the_operator_deploys() -> None:
    built = pinned_tools()["OLLAMA_VERSION"]
    assert built == f"v{versions.OLLAMA_VERSION}"
    assert versions.OLLAMA_IMAGE.endswith(f":{versions.OLLAMA_VERSION}")
