"""The LiteLLM proxy's quota filter: ModelQuota states applied to each request, live.

Shipped in the route's ConfigMap as llmroute_quota_routing.py next to config.yaml and
registered in litellm_settings.callbacks as ``llmroute_quota_routing.quota_routing``.
Standard library, litellm and llmroute_file_reread (shipped beside it) only.

The operator writes the quotas' effects into llmroute_quota.json, next to this module in the
same ConfigMap (render/quota_routing.py says what it holds): for every model, each target's
routing level, or null for a target whose budget is exhausted. The kubelet updates the file
in the running pod; this module looks at it no more than once a second (its inode, mtime and
size, with llmroute_file_reread) and re-reads it when it changed, so a quota changing state
restarts nothing.

LiteLLM 1.106.2 calls ``async_filter_deployments`` each time it routes a request to a model
(router.py, async_get_healthy_deployments): the first attempt, each retry, each order level
it falls back through and each fallback model. It gets the model's deployments that are not
cooling down, before LiteLLM keeps only the lowest `order` level (or the level of an order
fallback, ``_target_order``). So this filter removes exhausted targets and rewrites each
remaining target's `order` to the level the plan gives it (soft-limited targets behind the
others); LiteLLM's own level handling then tries them in that order.

When the quotas leave nothing at the requested level, the filter raises
QuotaLevelExhausted (HTTP 402, which LiteLLM does not retry) rather than return an empty list:
an empty list becomes LiteLLM's "no deployments available" error, which the router retries
numRetries times with back-off before it falls back. Raised, it moves the request at once to
the next level, then to the model's fallbacks, as a failing target would.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import litellm
from litellm.integrations.custom_logger import CustomLogger

try:  # in the proxy: shipped beside this module
    from llmroute_file_reread import FileReread
except ImportError:  # imported from the llmroute package (tests, the config check)
    from llmroute.payloads.file_reread import FileReread

ROUTING_ENV: Final = "LLMROUTE_QUOTA_ROUTING"
ROUTING_FILE_NAME: Final = "llmroute_quota.json"

log = logging.getLogger("llmroute.quota_routing")

# Levels by model name, then by deployment id; None: the target takes no request.
Levels = dict[str, dict[str, int | None]]


class QuotaLevelExhausted(litellm.PaymentRequiredError):
    """The quotas leave no target of the model at this routing level. Built by exhausted();
    the constructor is LiteLLM's own, so LiteLLM can copy the error as it copies its own."""


def exhausted(model: str, level: int | None) -> QuotaLevelExhausted:
    where = f" at routing level {level}" if level is not None else ""
    return QuotaLevelExhausted(
        message=f"no target of model {model!r}{where} has quota budget left",
        model=model,
        llm_provider="llmroute",
    )


def _parse_or_problem(raw: bytes) -> Levels | str:
    """The file's levels, or what is wrong with it (json.JSONDecodeError is a ValueError)."""
    try:
        return _parse(raw)
    except ValueError as error:
        return str(error)


def _parse(raw: bytes) -> Levels:
    document = json.loads(raw.decode("utf-8"))
    models = document.get("models") if isinstance(document, dict) else None
    if not isinstance(models, dict):
        raise ValueError("the quota routing file has no 'models' object")
    levels: Levels = {}
    for name, targets in models.items():
        if not isinstance(targets, dict):
            raise ValueError(f"model {name!r}: targets must be an object")
        levels[str(name)] = {
            str(k): v if isinstance(v, int) and not isinstance(v, bool) else None
            for k, v in targets.items()
        }
    return levels


class QuotaRoutingFile:
    """The routing levels of the file, re-read when it changes, looked at no more than once a
    second (llmroute_file_reread). A missing or broken file routes as the config says (and is
    logged once): the quotas' effects are then not applied, but the gateway keeps serving."""

    def __init__(self, path: Path, clock: Callable[[], float] | None = None) -> None:
        self.path = path
        self._files = FileReread(clock=clock)
        self._problem = ""

    def levels(self) -> Levels:
        parsed = self._files.read(self.path, _parse_or_problem)
        if isinstance(parsed, dict):
            self._report("")
            return parsed
        reason = parsed if isinstance(parsed, str) else "missing or unreadable"
        self._report(f"quota routing file {self.path} not applied: {reason}")
        return {}

    def _report(self, problem: str) -> None:
        if problem and problem != self._problem:
            log.warning("%s", problem)
        self._problem = problem

    def filter(
        self, model: str, deployments: list[dict], target_level: int | None = None
    ) -> list[dict]:
        """The deployments the quotas let this request reach, each on its planned level."""
        planned = self.levels().get(model)
        if planned is None:
            return deployments  # a model the file does not know: as configured
        if target_level is not None and target_level not in planned.values():
            raise exhausted(model, target_level)
        kept: list[dict] = []
        changed = False
        for deployment in deployments:
            deployment_id = (deployment.get("model_info") or {}).get("id")
            if deployment_id not in planned:
                kept.append(deployment)  # not a target the plan knows: as configured
                continue
            level = planned[deployment_id]
            if level is None:
                changed = True
                continue
            params = deployment.get("litellm_params") or {}
            if params.get("order") != level:
                # A copy: the router's own deployment dicts stay as configured.
                deployment = {**deployment, "litellm_params": {**params, "order": level}}
                changed = True
            kept.append(deployment)
        if deployments and not kept:
            raise exhausted(model, target_level)
        return kept if changed else deployments


_files: dict[str, QuotaRoutingFile] = {}
_files_lock = threading.Lock()


def routing_file() -> QuotaRoutingFile:
    """The routing file of this proxy: $LLMROUTE_QUOTA_ROUTING, else next to this module."""
    path = os.environ.get(ROUTING_ENV) or str(Path(__file__).with_name(ROUTING_FILE_NAME))
    with _files_lock:
        found = _files.get(path)
        if found is None:
            found = _files[path] = QuotaRoutingFile(Path(path))
        return found


class QuotaRouting(CustomLogger):
    async def async_filter_deployments(
        self,
        model: str,
        healthy_deployments: list,
        messages: Any,
        request_kwargs: dict | None = None,
        parent_otel_span: Any = None,
    ) -> list[dict]:
        if not isinstance(healthy_deployments, list):
            return healthy_deployments
        # LiteLLM reads (and removes) the order level of an order fallback after this hook.
        target = (request_kwargs or {}).get("_target_order")
        level = target if isinstance(target, int) and not isinstance(target, bool) else None
        return routing_file().filter(model, healthy_deployments, level)


quota_routing = QuotaRouting()
