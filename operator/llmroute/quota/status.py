"""A ModelQuota's next status, and what a sync should tell the world: pure functions.

The handler reads the quota, its route and the route's proxy replicas, and gets back the
status to write (or None when nothing but the clock would change), the event to post when the
state moved, and whether the route must be rendered again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from llmroute import reasons
from llmroute.api.periods import format_time
from llmroute.api.quota import (
    ENFORCE,
    OK,
    REJECT,
    SHADOW,
    SOFT_LIMITED,
    QuotaSpec,
    QuotaSpecError,
    RouteTarget,
    matched_deployments,
    scope_problem,
)
from llmroute.conditions import set_condition
from llmroute.quota.ledger import (
    Ledger,
    ReplicaScrape,
    advance,
    budget_state,
    percent_used,
)

CONDITION_ORDER: Final = ("Ready", "Synced")
# Ready=False reasons of a quota whose caller or tag the route does not declare.
UNDECLARED_REASONS: Final = {
    "spec.match.caller": reasons.CALLER_NOT_DECLARED,
    "spec.match.tag": reasons.TASK_NOT_DECLARED,
}


@dataclass(frozen=True)
class QuotaEvent:
    """A Kubernetes event about the quota: type Normal or Warning, a reason, a message."""

    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class SyncResult:
    status: dict[str, Any]  # the whole next status
    write: bool  # False: the stored status already says all of it
    previous_state: str | None  # None before the first sync
    state: str | None  # None while the spec cannot be accounted
    event: QuotaEvent | None  # posted when the state moved
    rerender_route: bool  # the state moved and the quota shapes routing


def _set_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: dt.datetime,
) -> list[dict[str, Any]]:
    return set_condition(
        conditions, type_, status, reason, message, generation, now=now, order=CONDITION_ORDER
    )


def _comparable(status: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if k != "lastSync"}


def _money(value: float) -> str:
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.6f}"


def transition_event(
    previous: str | None, state: str, spec: QuotaSpec, spent_usd: float
) -> QuotaEvent | None:
    """The event for a state change (none for the first sync of a quota that is Ok)."""
    if (previous or OK) == state:
        return None
    used = percent_used(spent_usd, spec.limit_usd)
    figures = f"{_money(spent_usd)} of {_money(spec.limit_usd)} ({used:g}%) spent this period"
    if state == OK:
        effect = (
            f"the gateway serves {_scope_text(spec)} again"
            if spec.scoped
            else "the matched targets route normally"
        )
        event_type, reason = "Normal", "BudgetOk"
    elif state == SOFT_LIMITED:
        effect = (
            f"{_scope_text(spec)} are still served; refused with 429 at the limit"
            if spec.scoped
            else "the matched targets move behind the other targets of their model"
        )
        event_type, reason = "Warning", "SoftLimitReached"
        figures += f", soft limit {spec.soft_limit_percent}%"
    elif spec.scoped:
        effect = f"the gateway refuses {_scope_text(spec)} for the matched models with 429"
        event_type, reason = "Warning", "BudgetExhausted"
    elif spec.action == REJECT:
        effect = "requests for models left without targets are rejected with 429"
        event_type, reason = "Warning", "BudgetExhausted"
    else:
        effect = "traffic stops reaching the matched targets and falls back"
        event_type, reason = "Warning", "BudgetExhausted"
    if spec.enforcement == SHADOW:
        message = f"{state}: {figures}; shadow mode, routing unchanged (enforced: {effect})"
    else:
        message = f"{state}: {figures}; {effect}"
    return QuotaEvent(event_type, reason, message)


def _scope_text(spec: QuotaSpec) -> str:
    """Whose requests a scoped quota governs, for messages: "the requests of caller 'a'"."""
    parts = []
    if spec.caller is not None:
        parts.append(f"caller {spec.caller!r}")
    if spec.tag is not None:
        parts.append(f"task {spec.tag!r}")
    return "the requests of " + " for ".join(parts)


EVENT_SOURCE: Final = "llmroute"
_NAME_MAX: Final = 253
_NAME_DIGEST: Final = 16


def transition_event_object(
    quota: Mapping[str, Any], result: SyncResult, now: dt.datetime
) -> dict[str, Any] | None:
    """The core/v1 Event announcing `result`'s state change, or None when nothing moved.

    Its name is derived from the change itself (the quota's uid, spec generation, period and
    new state), not from the time: within one period and one generation the spend only grows,
    so each state is entered at most once, and a sync that computes the same change again (its
    status write lost, the operator restarted in between) gets 409 instead of a duplicate.
    """
    if result.event is None:
        return None
    meta = quota.get("metadata") or {}
    change = "/".join(
        str(part)
        for part in (
            meta.get("uid"),
            meta.get("generation"),
            result.status.get("periodStart"),
            result.state,
        )
    )
    digest = hashlib.sha256(change.encode()).hexdigest()[:_NAME_DIGEST]
    prefix = str(meta.get("name", ""))[: _NAME_MAX - _NAME_DIGEST - 1].rstrip(".-")
    timestamp = format_time(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{prefix}.{digest}", "namespace": meta.get("namespace")},
        "involvedObject": {
            "apiVersion": quota.get("apiVersion"),
            "kind": quota.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
        },
        "type": result.event.type,
        "reason": result.event.reason,
        "message": result.event.message,
        "source": {"component": EVENT_SOURCE},
        "reportingComponent": EVENT_SOURCE,
        "firstTimestamp": timestamp,
        "lastTimestamp": timestamp,
        "count": 1,
    }


def _scrape_summary(
    scrapes: Sequence[ReplicaScrape], errors: Mapping[str, str]
) -> tuple[bool, str, str, int]:
    answered = sum(1 for s in scrapes if s.deployments is not None)
    silent = [s for s in scrapes if s.deployments is None]
    if not scrapes:
        return False, reasons.NO_PROXY_REPLICAS, "the route has no proxy replica to read", 0
    if silent:
        details = "; ".join(f"{s.pod}: {errors.get(s.uid, 'no answer')}" for s in silent[:3])
        message = f"{len(silent)} of {len(scrapes)} proxy replicas did not answer ({details})"
        return False, reasons.SCRAPE_FAILED, message, answered
    return True, reasons.SYNCED, f"read {len(scrapes)} proxy replica(s)", answered


def next_status(
    quota: Mapping[str, Any],
    *,
    targets: Sequence[RouteTarget] | None,
    scrapes: Sequence[ReplicaScrape],
    now: dt.datetime,
    errors: Mapping[str, str] | None = None,
    scopes: tuple[Collection[str], Collection[str]] | None = None,
) -> SyncResult:
    """The status after one sync of `quota` at `now`.

    targets: the targets of the LLMRoute the quota references, None when it does not exist.
    scopes: the route's declared callers and tasks (llmroute.api.quota.stored_route_scopes);
        None: not checked.
    scrapes: every proxy replica of the route (answered or not).
    errors: why a replica did not answer, by pod UID (for the Synced condition).
    """
    old: dict[str, Any] = dict(quota.get("status") or {})
    generation = (quota.get("metadata") or {}).get("generation")
    conditions = list(old.get("conditions") or [])
    previous_state = old.get("state")

    try:
        spec = QuotaSpec.from_quota(quota)
    except QuotaSpecError as error:
        conditions = _set_condition(
            conditions, "Ready", False, reasons.INVALID_SPEC, str(error), generation, now
        )
        status = {**old, "observedGeneration": generation, "conditions": conditions}
        return SyncResult(
            status=status,
            write=_comparable(status) != _comparable(old),
            previous_state=previous_state,
            state=None,
            event=None,
            rerender_route=False,
        )

    if targets is None:
        scrapes = ()
        matched: frozenset[str] = frozenset()
    else:
        matched = matched_deployments(targets, spec)
    ledger = advance(Ledger.from_status(old), scrapes, matched, period=spec.period, now=now)
    state = budget_state(ledger.total.spend_usd, spec.limit_usd, spec.soft_limit_percent)

    if targets is None:
        message = f"LLMRoute {spec.route!r} not found in this namespace"
        conditions = _set_condition(
            conditions, "Ready", False, reasons.ROUTE_NOT_FOUND, message, generation, now
        )
        conditions = _set_condition(
            conditions, "Synced", False, reasons.ROUTE_NOT_FOUND, message, generation, now
        )
        answered = 0
    else:
        synced, reason, message, answered = _scrape_summary(scrapes, errors or {})
        conditions = _set_condition(conditions, "Synced", synced, reason, message, generation, now)
        undeclared = scope_problem(spec, *scopes) if scopes is not None else None
        if undeclared is not None:
            conditions = _set_condition(
                conditions,
                "Ready",
                False,
                UNDECLARED_REASONS[undeclared.field],
                f"{undeclared}; nothing is counted or enforced",
                generation,
                now,
            )
        elif not matched:
            ready_reason = reasons.NO_MATCHING_TARGETS
            ready_message = f"no target of LLMRoute {spec.route!r} matches; nothing is counted"
        elif spec.enforcement == SHADOW:
            ready_reason = reasons.SHADOW
            ready_message = f"{len(matched)} target(s) counted; shadow mode, routing unchanged"
        else:
            ready_reason = reasons.ENFORCED
            ready_message = f"{len(matched)} target(s) counted and governed"
        if undeclared is None:
            conditions = _set_condition(
                conditions, "Ready", True, ready_reason, ready_message, generation, now
            )

    status = {
        **old,
        **ledger.to_status(),
        "percentUsed": percent_used(ledger.total.spend_usd, spec.limit_usd),
        "state": state,
        "observedGeneration": generation,
        "conditions": conditions,
    }
    if answered:
        # Moves only when counters were read, so users see that the sync is alive.
        status["lastSync"] = format_time(now)
    event = transition_event(previous_state, state, spec, ledger.total.spend_usd)
    moved = (previous_state or OK) != state
    return SyncResult(
        status=status,
        write=bool(answered) or _comparable(status) != _comparable(old),
        previous_state=previous_state,
        state=state,
        event=event,
        rerender_route=moved and spec.enforcement == ENFORCE,
    )
