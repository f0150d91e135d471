"""Versions pinned once: the proxy image tag follows the litellm pin of the package."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from llmroute import versions

ROOT = Path(__file__).resolve().parents[2]


def test_litellm_pin_matches_the_proxy_image() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [re.fullmatch(r"litellm(\[[^\]]*\])?==(.+)", d) for d in dependencies]
    (pin,) = [m.group(2) for m in pins if m]
    assert pin == versions.LITELLM_VERSION
    assert versions.LITELLM_IMAGE.endswith(f":v{pin}")


def test_tool_versions_are_pinned_exactly() -> None:
    pinned = dict(
        line.split("=", 1)
        for line in (ROOT / "hack/versions.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert set(pinned) == {
        "KUBERNETES_VERSION",
        "ETCD_VERSION",
        "HELM_VERSION",
        "KWOK_VERSION",
        "KUBE_ROUTER_VERSION",
    }
    assert all(re.fullmatch(r"v\d+\.\d+\.\d+", v) for v in pinned.values())
