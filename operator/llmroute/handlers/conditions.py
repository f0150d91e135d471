"""Status conditions in the metav1.Condition shape."""

from __future__ import annotations

import datetime as dt


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[dict],
    type_: str,
    status: bool | None,
    reason: str,
    message: str,
    generation: int | None,
) -> list[dict]:
    """A copy of `conditions` with `type_` set; lastTransitionTime moves only on a change."""
    value = {True: "True", False: "False", None: "Unknown"}[status]
    previous = next((c for c in conditions if c.get("type") == type_), None)
    changed = previous is None or previous.get("status") != value
    condition = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now() if changed else previous["lastTransitionTime"],
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return [c for c in conditions if c.get("type") != type_] + [condition]


def condition_status(conditions: list[dict], type_: str) -> str | None:
    return next((c.get("status") for c in conditions if c.get("type") == type_), None)


def ordered(conditions: list[dict], order: tuple[str, ...]) -> list[dict]:
    """Conditions in a fixed order, so an unchanged set compares (and patches) equal."""
    rank = {t: i for i, t in enumerate(order)}
    return sorted(conditions, key=lambda c: rank.get(c["type"], len(rank)))
