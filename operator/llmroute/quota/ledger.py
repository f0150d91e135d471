"""The spend ledger of a ModelQuota: pure arithmetic over the proxies' counters.

The proxies count spend in memory, from zero, for as long as each process lives. The ledger
turns those counters into totals for the budget period that survive proxy and operator
restarts. It lives in the ModelQuota's status and holds two things:

- the totals of the current period (spend, tokens, requests);
- per proxy replica (by pod UID), the counters it showed at the last sync, per deployment.

Each sync adds, for every replica that answered, what its counters grew by since the last
sync (for the deployments the quota matches), and keeps the new values as the next baseline.
The totals and the baselines are written in one update, so a sync counts a delta exactly once
or (when the write fails) not at all, and the next sync counts it then: applying the same
scrape twice adds nothing.

Counter resets: a replica the ledger has not seen, or one whose counters went down, whose
container restarted or whose process is a new one, counts its counters from zero when its
proxy started in the current period. One that started earlier (the first sync of a new quota,
say) only sets the baseline, since its counters mix in spend from before the period.

Replicas that are gone are dropped: their spend up to the last sync is counted; what they
served after it is lost (at most one sync interval). A replica that is still there but did not
answer keeps its baseline, so its next answer counts everything since.

Period rollover: when a sync finds the period over, the totals restart at zero and every
replica's baseline moves to its current counters without counting them, so usage from before
the boundary is not charged to the new period. The spend between the last sync of the old
period and the boundary is not charged anywhere, and spend between the boundary and the first
sync of the new period is not charged to it: the boundary is as precise as one sync interval.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from llmroute.api.periods import format_time, parse_time, period_bounds
from llmroute.api.quota import EXHAUSTED, OK, SOFT_LIMITED
from llmroute.quota.counters import Usage

# Decimal places kept for spentUSD in the status: far below a cent, and no float noise.
SPEND_DECIMALS: Final = 10
PERCENT_DECIMALS: Final = 2


@dataclass(frozen=True)
class ReplicaScrape:
    """One proxy replica at a sync: who it is, and its counters if it answered."""

    uid: str  # pod UID: a pod recreated under the same name is another replica
    pod: str
    deployments: Mapping[str, Usage] | None  # by deployment id (model_id); None: no answer
    started: dt.datetime | None = None  # when its proxy container started
    restarts: int = 0  # the container's restart count
    process_start: float | None = None  # process_start_time_seconds, when exposed


@dataclass(frozen=True)
class ReplicaSnapshot:
    """The counters a replica showed at the last sync that reached it."""

    pod: str
    seen: dt.datetime
    deployments: Mapping[str, Usage] = field(default_factory=dict)
    restarts: int = 0
    process_start: float | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "pod": self.pod,
            "seen": format_time(self.seen),
            "restarts": self.restarts,
            "deployments": {d: u.to_json() for d, u in sorted(self.deployments.items())},
        }
        if self.process_start is not None:
            data["processStart"] = self.process_start
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReplicaSnapshot:
        process_start = data.get("processStart")
        return cls(
            pod=str(data.get("pod") or ""),
            seen=parse_time(data["seen"]),
            deployments={
                str(d): Usage.from_json(u) for d, u in (data.get("deployments") or {}).items()
            },
            restarts=int(data.get("restarts") or 0),
            process_start=float(process_start) if process_start is not None else None,
        )


@dataclass(frozen=True)
class Ledger:
    period_start: dt.datetime | None = None
    period_end: dt.datetime | None = None
    total: Usage = field(default_factory=Usage)
    replicas: Mapping[str, ReplicaSnapshot] = field(default_factory=dict)  # by pod UID

    @classmethod
    def from_status(cls, status: Mapping[str, Any] | None) -> Ledger:
        """The ledger kept in a ModelQuota status; an empty one when there is none yet.

        Parts that cannot be read (a status edited by hand) are left out rather than trusted:
        a replica without a readable baseline is treated as new.
        """
        status = status or {}
        start = _time_or_none(status.get("periodStart"))
        end = _time_or_none(status.get("periodEnd"))
        replicas = {}
        for uid, data in (status.get("replicas") or {}).items():
            try:
                replicas[str(uid)] = ReplicaSnapshot.from_json(data)
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
        try:
            total = Usage(
                spend_usd=float(status.get("spentUSD") or 0.0),
                input_tokens=int(status.get("inputTokens") or 0),
                output_tokens=int(status.get("outputTokens") or 0),
                requests=int(status.get("requests") or 0),
            )
        except (TypeError, ValueError):
            total = Usage()
        return cls(period_start=start, period_end=end, total=total, replicas=replicas)

    def to_status(self) -> dict[str, Any]:
        """The ledger's part of a ModelQuota status (JSON-serialisable)."""
        status: dict[str, Any] = {
            "spentUSD": round(self.total.spend_usd, SPEND_DECIMALS),
            "requests": self.total.requests,
            "inputTokens": self.total.input_tokens,
            "outputTokens": self.total.output_tokens,
            "replicas": {uid: s.to_json() for uid, s in sorted(self.replicas.items())},
        }
        if self.period_start is not None:
            status["periodStart"] = format_time(self.period_start)
        if self.period_end is not None:
            status["periodEnd"] = format_time(self.period_end)
        return status


def _time_or_none(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


def _was_reset(scrape: ReplicaScrape, previous: ReplicaSnapshot) -> bool:
    assert scrape.deployments is not None
    if scrape.restarts != previous.restarts:
        return True
    if (
        scrape.process_start is not None
        and previous.process_start is not None
        and scrape.process_start != previous.process_start
    ):
        return True
    for deployment, before in previous.deployments.items():
        now = scrape.deployments.get(deployment)
        # A series never disappears from a live process: gone means a new process.
        if now is None or now.below(before):
            return True
    return False


def advance(
    ledger: Ledger,
    scrapes: Sequence[ReplicaScrape],
    matched: Collection[str],
    *,
    period: str,
    now: dt.datetime,
) -> Ledger:
    """The ledger after a sync at `now` that found the replicas `scrapes`.

    `scrapes` lists every replica that exists now (answered or not); `matched` the deployment
    ids whose usage the quota counts. Idempotent: advancing again with the same scrapes adds
    nothing.
    """
    start, end = period_bounds(period, now)
    rollover = (ledger.period_start, ledger.period_end) != (start, end)
    total = Usage() if rollover else ledger.total
    replicas: dict[str, ReplicaSnapshot] = {}
    for scrape in scrapes:
        previous = ledger.replicas.get(scrape.uid)
        if scrape.deployments is None:
            if previous is not None:
                replicas[scrape.uid] = previous
            continue
        current = scrape.deployments
        if previous is None or _was_reset(scrape, previous):
            started_in_period = scrape.started is None or scrape.started >= start
            baseline: Mapping[str, Usage] = {} if started_in_period else current
        elif rollover:
            baseline = current
        else:
            baseline = previous.deployments
        for deployment in sorted(matched):
            if deployment in current:
                total = total + current[deployment].minus(baseline.get(deployment, Usage()))
        replicas[scrape.uid] = ReplicaSnapshot(
            pod=scrape.pod,
            seen=now,
            deployments=dict(current),
            restarts=scrape.restarts,
            process_start=scrape.process_start,
        )
    return Ledger(period_start=start, period_end=end, total=total, replicas=replicas)


def budget_state(spent_usd: float, limit_usd: float, soft_limit_percent: int) -> str:
    """Ok under the soft limit, SoftLimited from it, Exhausted from the whole budget."""
    if spent_usd >= limit_usd:
        return EXHAUSTED
    if spent_usd * 100 >= limit_usd * soft_limit_percent:
        return SOFT_LIMITED
    return OK


def percent_used(spent_usd: float, limit_usd: float) -> float:
    return round(spent_usd / limit_usd * 100, PERCENT_DECIMALS)
