"""Status conditions in the metav1.Condition shape, for both kinds (LLMRoute and ModelQuota)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from llmroute.api.periods import format_time


def set_condition(
    conditions: Sequence[dict[str, Any]],
    type_: str,
    status: bool | None,
    reason: str,
    message: str,
    generation: int | None,
    *,
    now: dt.datetime | None = None,
    order: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """A copy of `conditions` with `type_` set; lastTransitionTime moves only on a change.

    status None is "Unknown". now: the time of a change (default: the clock). order: the
    kind's condition types in order; when given, the result is sorted by it.
    """
    value = {True: "True", False: "False", None: "Unknown"}[status]
    previous = next((c for c in conditions if c.get("type") == type_), None)
    unchanged = previous is not None and previous.get("status") == value
    condition: dict[str, Any] = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": (
            previous.get("lastTransitionTime")
            if unchanged and previous is not None
            else format_time(now or dt.datetime.now(dt.UTC))
        ),
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    result = [c for c in conditions if c.get("type") != type_] + [condition]
    return ordered(result, order) if order is not None else result


def condition_status(conditions: Sequence[dict[str, Any]], type_: str) -> str | None:
    return next((c.get("status") for c in conditions if c.get("type") == type_), None)


def ordered(conditions: Sequence[dict[str, Any]], order: Sequence[str]) -> list[dict[str, Any]]:
    """Conditions in a fixed order, so an unchanged set compares (and patches) equal."""
    rank = {t: i for i, t in enumerate(order)}
    return sorted(conditions, key=lambda c: rank.get(c.get("type", ""), len(rank)))
