"""The CustomResourceDefinitions, loaded from the YAML files in crds/ (the single source of truth).

An installed package carries them as package data (``llmroute/crds``); a source checkout reads
``<repo>/crds`` directly, so an edit to a CRD is seen without reinstalling.
"""

from __future__ import annotations

import copy
import functools
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from llmroute.api import VERSION

_CHECKOUT_CRDS = Path(__file__).resolve().parents[3] / "crds"


def crd_dir() -> Traversable:
    """The directory that holds the CRD YAML files."""
    packaged = resources.files("llmroute") / "crds"
    if packaged.is_dir():
        return packaged
    if _CHECKOUT_CRDS.is_dir():
        return _CHECKOUT_CRDS
    raise FileNotFoundError(
        f"no CRDs found: neither the package data {packaged} nor {_CHECKOUT_CRDS} exists"
    )


@functools.cache
def _load() -> tuple[dict[str, Any], ...]:
    directory = crd_dir()
    crds = []
    for entry in sorted(directory.iterdir(), key=lambda e: e.name):
        if entry.name.endswith((".yaml", ".yml")):
            crds.extend(
                doc
                for doc in yaml.safe_load_all(entry.read_text(encoding="utf-8"))
                if doc and doc.get("kind") == "CustomResourceDefinition"
            )
    if not crds:
        raise FileNotFoundError(f"no CustomResourceDefinition in {directory}")
    return tuple(crds)


def load_crds() -> list[dict[str, Any]]:
    """Every CRD manifest, ready to create (a fresh copy the caller may change)."""
    return copy.deepcopy(list(_load()))


def kinds() -> list[str]:
    """The kinds the CRDs define (LLMRoute, ModelQuota)."""
    return [crd["spec"]["names"]["kind"] for crd in _load()]


def crd_for(kind: str) -> dict[str, Any]:
    """The CRD manifest of ``kind`` (shared and cached: do not modify it)."""
    for crd in _load():
        if crd["spec"]["names"]["kind"] == kind:
            return crd
    raise KeyError(f"no CRD defines kind {kind!r}; known: {', '.join(kinds())}")


def schema_for(kind: str, version: str = VERSION) -> dict[str, Any]:
    """The openAPIV3Schema of ``kind`` at ``version`` (shared and cached: do not modify it)."""
    for served in crd_for(kind)["spec"]["versions"]:
        if served["name"] == version:
            return served["schema"]["openAPIV3Schema"]
    raise KeyError(f"the {kind} CRD has no version {version!r}")
