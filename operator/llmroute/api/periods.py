"""Budget periods in UTC: a day, an ISO week (Monday 00:00) or a calendar month."""

from __future__ import annotations

import datetime as dt
from typing import Final

from llmroute.api.schema import schema_enum

PERIODS: Final = schema_enum("ModelQuota", "spec.budget.period")


def period_bounds(period: str, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The [start, end) of the period that contains `now`, both aware datetimes in UTC.

    `now` must be timezone-aware; it is converted to UTC first, so a period always starts at
    00:00 UTC whatever the caller's zone.
    """
    if period not in PERIODS:
        raise ValueError(f"period must be one of {PERIODS}, not {period!r}")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    now = now.astimezone(dt.UTC)
    day = dt.datetime(now.year, now.month, now.day, tzinfo=dt.UTC)
    if period == "daily":
        return day, day + dt.timedelta(days=1)
    if period == "weekly":
        start = day - dt.timedelta(days=day.weekday())  # Monday is 0, as in ISO 8601
        return start, start + dt.timedelta(days=7)
    start = day.replace(day=1)
    if start.month == 12:
        return start, start.replace(year=start.year + 1, month=1)
    return start, start.replace(month=start.month + 1)


def format_time(moment: dt.datetime) -> str:
    """RFC 3339 in UTC with a Z, to the second (the form Kubernetes writes)."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> dt.datetime:
    """An RFC 3339 timestamp as an aware datetime in UTC; ValueError if it is not one."""
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without a zone: {text!r}")
    return moment.astimezone(dt.UTC)
