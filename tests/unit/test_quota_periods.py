"""Budget periods: days, ISO weeks and calendar months in UTC."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmroute.api.periods import PERIODS, format_time, parse_time, period_bounds

UTC = dt.UTC


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("period", "now", "start", "end"),
    [
        ("daily", at(2026, 3, 14, 15, 9, 26), at(2026, 3, 14), at(2026, 3, 15)),
        ("daily", at(2026, 3, 14), at(2026, 3, 14), at(2026, 3, 15)),
        ("daily", at(2026, 3, 14, 23, 59, 59, 999999), at(2026, 3, 14), at(2026, 3, 15)),
        ("daily", at(2028, 2, 28, 12), at(2028, 2, 28), at(2028, 2, 29)),
        ("daily", at(2028, 2, 29, 12), at(2028, 2, 29), at(2028, 3, 1)),
        ("daily", at(2026, 12, 31, 23, 59, 59), at(2026, 12, 31), at(2027, 1, 1)),
        # ISO weeks start on Monday at 00:00 UTC; 2026-03-16 is a Monday.
        ("weekly", at(2026, 3, 16), at(2026, 3, 16), at(2026, 3, 23)),
        ("weekly", at(2026, 3, 22, 23, 59, 59), at(2026, 3, 16), at(2026, 3, 23)),
        ("weekly", at(2026, 3, 15, 23, 59, 59), at(2026, 3, 9), at(2026, 3, 16)),
        # A week across the year end: 2026-12-28 is a Monday.
        ("weekly", at(2027, 1, 1, 8), at(2026, 12, 28), at(2027, 1, 4)),
        # ... and across a leap day: 2028-02-28 is a Monday.
        ("weekly", at(2028, 3, 2), at(2028, 2, 28), at(2028, 3, 6)),
        ("monthly", at(2026, 1, 31, 23, 59, 59), at(2026, 1, 1), at(2026, 2, 1)),
        ("monthly", at(2026, 2, 1), at(2026, 2, 1), at(2026, 3, 1)),
        ("monthly", at(2026, 2, 28, 23), at(2026, 2, 1), at(2026, 3, 1)),
        ("monthly", at(2028, 2, 29, 23), at(2028, 2, 1), at(2028, 3, 1)),
        ("monthly", at(2026, 4, 30, 12), at(2026, 4, 1), at(2026, 5, 1)),
        ("monthly", at(2026, 12, 31, 23, 59, 59), at(2026, 12, 1), at(2027, 1, 1)),
        ("monthly", at(2027, 1, 1), at(2027, 1, 1), at(2027, 2, 1)),
    ],
)
def test_bounds(period: str, now: dt.datetime, start: dt.datetime, end: dt.datetime) -> None:
    assert period_bounds(period, now) == (start, end)


def test_other_zones_are_converted_to_utc_first() -> None:
    # 00:30 on Jan 1 in Berlin is still Dec 31 in UTC.
    berlin_winter = dt.timezone(dt.timedelta(hours=1))
    now = dt.datetime(2027, 1, 1, 0, 30, tzinfo=berlin_winter)
    assert period_bounds("monthly", now) == (at(2026, 12, 1), at(2027, 1, 1))
    assert period_bounds("daily", now) == (at(2026, 12, 31), at(2027, 1, 1))
    start, _ = period_bounds("daily", now)
    assert start.utcoffset() == dt.timedelta(0)


def test_naive_times_and_unknown_periods_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        period_bounds("daily", dt.datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="period must be one of"):
        period_bounds("yearly", at(2026, 1, 1))


moments = st.datetimes(
    min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2999, 12, 1), timezones=st.just(UTC)
)


@given(period=st.sampled_from(PERIODS), now=moments)
def test_the_period_contains_now_and_the_next_starts_where_it_ends(
    period: str, now: dt.datetime
) -> None:
    start, end = period_bounds(period, now)
    assert start <= now < end
    assert (start.hour, start.minute, start.second, start.microsecond) == (0, 0, 0, 0)
    assert period_bounds(period, end)[0] == end
    assert period_bounds(period, end - dt.timedelta(microseconds=1)) == (start, end)
    if period == "daily":
        assert end - start == dt.timedelta(days=1)
    elif period == "weekly":
        assert end - start == dt.timedelta(days=7)
        assert start.weekday() == 0
        assert start.isocalendar().week == now.isocalendar().week
    else:
        assert start.day == 1 and end.day == 1
        assert (start.year, start.month) == (now.year, now.month)
        assert dt.timedelta(days=28) <= end - start <= dt.timedelta(days=31)


def test_timestamps_round_trip_in_rfc3339() -> None:
    assert format_time(at(2028, 2, 29, 7, 5, 3)) == "2028-02-29T07:05:03Z"
    assert parse_time("2028-02-29T07:05:03Z") == at(2028, 2, 29, 7, 5, 3)
    assert parse_time("2028-02-29T08:05:03+01:00") == at(2028, 2, 29, 7, 5, 3)
    with pytest.raises(ValueError):
        parse_time("2028-02-29T07:05:03")
    with pytest.raises(ValueError):
        parse_time("yesterday")
