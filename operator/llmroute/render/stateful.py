"""What the StatefulSets llmroute runs (the managed Ollama and the managed Redis) share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmroute.render.proxy import RUN_AS_USER


def stateful_pod_security_context() -> dict[str, Any]:
    """An unprivileged pod whose volume is writable by its group."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        # OnRootMismatch skips the recursive chown of the whole volume (gigabytes of models)
        # on every start once the owner is right.
        "fsGroup": RUN_AS_USER,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def volume_claim_template(
    name: str, labels: Mapping[str, str], size: str, storage_class: str | None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
    }
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": spec,
    }
