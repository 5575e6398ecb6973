"""Partition math (downloader/partitions.py): pure functions over an explicit ``now``.

Vendor facts behind the expectations (growingio-api.md §2): export_date is Beijing time written
yyyyMMddHHmm, an hour HH covers [HH:00, HH+1:00); hourly data is late 30 min (60 min for the
hours 23:00-02:00), daily data 2-4 h after the next midnight; the API keeps 15 days.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from downloader.core.constants import BEIJING
from downloader.core.partitions import (
    Lags,
    Period,
    due_at,
    in_retention,
    is_due,
    next_due,
    parse_hour,
    periods_in_range,
    retention_start,
    split_due,
    window,
)

INDIA = timezone(timedelta(hours=5, minutes=30))
EIGHT_HOURS = timedelta(hours=8)
LAGS = Lags()  # the defaults: hour 30 min, night hours 23/0/1 60 min, day 240 min, 15 days


def bj(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, us, tzinfo=BEIJING)


def H(y: int, mo: int, d: int, h: int) -> Period:  # noqa: N802 - reads like a table
    return Period(bj(y, mo, d, h), "hour")


def D(y: int, mo: int, d: int) -> Period:  # noqa: N802
    return Period(bj(y, mo, d), "day")


# --- Period ----------------------------------------------------------------------------------


def test_default_lags_follow_the_vendor_docs() -> None:
    assert LAGS.hour == timedelta(minutes=30)
    assert LAGS.night_hour == timedelta(minutes=60)
    assert LAGS.night_hours == frozenset({23, 0, 1})
    assert LAGS.day == timedelta(minutes=240)
    assert LAGS.retention == timedelta(days=15)


@pytest.mark.parametrize(
    ("start", "export_type"),
    [
        pytest.param(bj(2026, 1, 1, 10), "week", id="unknown-export-type"),
        pytest.param(bj(2026, 1, 1, 10), "HOUR", id="export-type-is-case-sensitive"),
        pytest.param(datetime(2026, 1, 1, 10), "hour", id="naive-datetime"),
        pytest.param(bj(2026, 1, 1, 10, 30), "hour", id="hour-not-on-the-hour"),
        pytest.param(bj(2026, 1, 1, 10, 0, 1), "hour", id="hour-one-second-late"),
        pytest.param(bj(2026, 1, 1, 10, 0, 0, 1), "hour", id="hour-one-microsecond-late"),
        pytest.param(bj(2026, 1, 1, 10), "day", id="day-not-at-midnight"),
        # Midnight UTC is 08:00 in Beijing: not a day boundary there.
        pytest.param(datetime(2026, 1, 1, tzinfo=UTC), "day", id="utc-midnight-is-not-a-day"),
        # 10:00 India (+05:30) is 12:30 Beijing: not on an hour boundary there.
        pytest.param(datetime(2026, 1, 1, 10, tzinfo=INDIA), "hour", id="half-hour-zone"),
    ],
)
def test_period_rejects_bad_starts(start: datetime, export_type: str) -> None:
    with pytest.raises(ValueError):
        Period(start, export_type)


@pytest.mark.parametrize(
    ("period", "api_date", "label", "date_str", "hour_str", "text"),
    [
        (H(2026, 1, 1, 10), "202601011000", "2026010110", "2026-01-01", "10", "hour:2026010110"),
        (H(2026, 1, 1, 0), "202601010000", "2026010100", "2026-01-01", "00", "hour:2026010100"),
        (H(2026, 12, 31, 23), "202612312300", "2026123123", "2026-12-31", "23",
         "hour:2026123123"),
        (D(2026, 1, 1), "202601010000", "20260101", "2026-01-01", None, "day:20260101"),
        (D(2028, 2, 29), "202802290000", "20280229", "2028-02-29", None, "day:20280229"),
    ],
    ids=str,
)
def test_period_formats(period: Period, api_date: str, label: str, date_str: str,
                        hour_str: str | None, text: str) -> None:
    assert period.api_date == api_date
    assert period.label == label
    assert period.date_str == date_str
    assert period.hour_str == hour_str
    assert str(period) == text


@pytest.mark.parametrize(
    ("start", "export_type", "beijing_start"),
    [
        # 02:00 UTC is 10:00 Beijing.
        (datetime(2026, 1, 1, 2, tzinfo=UTC), "hour", bj(2026, 1, 1, 10)),
        # 16:00 UTC on Dec 31 is already Jan 1 in Beijing: the date must follow Beijing.
        (datetime(2025, 12, 31, 16, tzinfo=UTC), "hour", bj(2026, 1, 1, 0)),
        (datetime(2025, 12, 31, 16, tzinfo=UTC), "day", bj(2026, 1, 1)),
        # 07:30 in India (+05:30) is 10:00 Beijing.
        (datetime(2026, 1, 1, 7, 30, tzinfo=INDIA), "hour", bj(2026, 1, 1, 10)),
    ],
    ids=["utc-hour", "utc-hour-across-date", "utc-day", "india-hour"],
)
def test_period_converts_aware_input_to_beijing(start: datetime, export_type: str,
                                                beijing_start: datetime) -> None:
    period = Period(start, export_type)
    assert period.start.utcoffset() == EIGHT_HOURS
    assert (period.start.date(), period.start.hour) == (beijing_start.date(), beijing_start.hour)
    assert period.api_date == beijing_start.strftime("%Y%m%d%H%M")
    assert period == Period(beijing_start, export_type)
    assert hash(period) == hash(Period(beijing_start, export_type))


@pytest.mark.parametrize(
    ("period", "end"),
    [
        (H(2026, 1, 1, 23), bj(2026, 1, 2, 0)),
        (D(2026, 1, 31), bj(2026, 2, 1)),
        (D(2026, 12, 31), bj(2027, 1, 1)),
        (D(2028, 2, 28), bj(2028, 2, 29)),
    ],
    ids=str,
)
def test_period_end(period: Period, end: datetime) -> None:
    assert period.end == end
    assert period.end - period.start == period.length


@pytest.mark.parametrize(
    "period",
    [H(2026, 1, 1, 0), H(2026, 1, 1, 23), H(2026, 12, 31, 23), H(2028, 2, 29, 12),
     D(2026, 1, 1), D(2026, 12, 31), D(2028, 2, 29)],
    ids=str,
)
def test_from_label_round_trip(period: Period) -> None:
    again = Period.from_label(period.export_type, period.label)
    assert again == period
    assert again.start.utcoffset() == EIGHT_HOURS
    assert again.label == period.label


@pytest.mark.parametrize(
    ("export_type", "label"),
    [("hour", "20260101"), ("day", "2026010110"), ("hour", "2026023010"), ("day", "20270229")],
)
def test_from_label_rejects_bad_labels(export_type: str, label: str) -> None:
    with pytest.raises(ValueError):
        Period.from_label(export_type, label)


def test_periods_order_by_start() -> None:
    assert sorted([H(2026, 1, 2, 0), D(2026, 1, 1), H(2026, 1, 1, 5)]) == [
        D(2026, 1, 1), H(2026, 1, 1, 5), H(2026, 1, 2, 0)]


# --- due_at / is_due ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "due"),
    [
        # Ordinary hours: 30 min after the hour ends.
        (H(2026, 1, 1, 10), bj(2026, 1, 1, 11, 30)),
        (H(2026, 1, 1, 2), bj(2026, 1, 1, 3, 30)),
        (H(2026, 1, 1, 22), bj(2026, 1, 1, 23, 30)),
        # Night hours 23:00-02:00 (23, 0, 1): 60 min after the hour ends.
        (H(2026, 1, 1, 23), bj(2026, 1, 2, 1, 0)),
        (H(2026, 1, 2, 0), bj(2026, 1, 2, 2, 0)),
        (H(2026, 1, 2, 1), bj(2026, 1, 2, 3, 0)),
        # A day: its lag (240 min) after the following midnight.
        (D(2026, 1, 1), bj(2026, 1, 2, 4, 0)),
        # Month end.
        (H(2026, 1, 31, 22), bj(2026, 1, 31, 23, 30)),
        (H(2026, 1, 31, 23), bj(2026, 2, 1, 1, 0)),
        (D(2026, 1, 31), bj(2026, 2, 1, 4, 0)),
        (D(2026, 4, 30), bj(2026, 5, 1, 4, 0)),
        # Year end.
        (H(2026, 12, 31, 23), bj(2027, 1, 1, 1, 0)),
        (D(2026, 12, 31), bj(2027, 1, 1, 4, 0)),
        # Leap day 2028-02-29, and a non-leap February end.
        (H(2028, 2, 28, 23), bj(2028, 2, 29, 1, 0)),
        (H(2028, 2, 29, 23), bj(2028, 3, 1, 1, 0)),
        (D(2028, 2, 28), bj(2028, 2, 29, 4, 0)),
        (D(2028, 2, 29), bj(2028, 3, 1, 4, 0)),
        (D(2027, 2, 28), bj(2027, 3, 1, 4, 0)),
    ],
    ids=str,
)
def test_due_at_default_lags(period: Period, due: datetime) -> None:
    assert due_at(period, LAGS) == due


@pytest.mark.parametrize(
    ("lags", "period", "due"),
    [
        # A configured hour lag longer than the night lag wins for night hours too.
        (Lags(hour=timedelta(minutes=90)), H(2026, 1, 1, 23), bj(2026, 1, 2, 1, 30)),
        (Lags(hour=timedelta(minutes=90)), H(2026, 1, 1, 10), bj(2026, 1, 1, 12, 30)),
        (Lags(night_hour=timedelta(minutes=120)), H(2026, 1, 1, 0), bj(2026, 1, 1, 3, 0)),
        # Night hours are configurable: 23 is then an ordinary hour and 3 a night hour.
        (Lags(night_hours=frozenset({3})), H(2026, 1, 1, 23), bj(2026, 1, 2, 0, 30)),
        (Lags(night_hours=frozenset({3})), H(2026, 1, 1, 3), bj(2026, 1, 1, 5, 0)),
        (Lags(day=timedelta(minutes=360)), D(2026, 12, 31), bj(2027, 1, 1, 6, 0)),
        (Lags(hour=timedelta(0), night_hour=timedelta(0)), H(2026, 1, 1, 0),
         bj(2026, 1, 1, 1, 0)),
    ],
    ids=["long-hour-lag-at-night", "long-hour-lag-day", "long-night-lag", "custom-night-23",
         "custom-night-3", "day-lag-6h", "zero-lags"],
)
def test_due_at_configured_lags(lags: Lags, period: Period, due: datetime) -> None:
    assert due_at(period, lags) == due


@pytest.mark.parametrize(
    ("period", "due"),
    [(H(2026, 1, 1, 10), bj(2026, 1, 1, 11, 30)), (H(2026, 12, 31, 23), bj(2027, 1, 1, 1)),
     (D(2026, 12, 31), bj(2027, 1, 1, 4))],
    ids=str,
)
@pytest.mark.parametrize(
    ("offset", "expected"),
    [(timedelta(microseconds=-1), False), (timedelta(0), True), (timedelta(seconds=1), True),
     (timedelta(days=-1), False)],
    ids=["1us-before", "exactly", "1s-after", "a-day-before"],
)
def test_is_due_at_the_boundary(period: Period, due: datetime, offset: timedelta,
                                expected: bool) -> None:
    assert is_due(period, due + offset, LAGS) is expected
    # The same instant written in UTC gives the same answer.
    assert is_due(period, (due + offset).astimezone(UTC), LAGS) is expected


# --- retention ---------------------------------------------------------------------------------


def test_retention_start_is_now_minus_retention_in_beijing() -> None:
    now = datetime(2026, 1, 20, 2, 30, tzinfo=UTC)  # 10:30 Beijing
    start = retention_start(now, LAGS)
    assert start == bj(2026, 1, 5, 10, 30)
    assert start.utcoffset() == EIGHT_HOURS
    assert retention_start(now, Lags(retention=timedelta(days=3))) == bj(2026, 1, 17, 10, 30)


@pytest.mark.parametrize(
    ("offset", "kept"),
    [
        (timedelta(0), True),  # exactly 15 days after the period started
        (timedelta(seconds=-1), True),  # one second less
        (timedelta(seconds=1), False),  # one second more
        (timedelta(days=-14), True),
        (timedelta(days=1), False),
    ],
    ids=["exactly-15d", "1s-less", "1s-more", "1d-old", "16d-old"],
)
@pytest.mark.parametrize("period", [H(2026, 1, 5, 10), D(2026, 1, 5), H(2026, 12, 31, 23)],
                         ids=str)
def test_in_retention_at_the_edge(period: Period, offset: timedelta, kept: bool) -> None:
    now = period.start + timedelta(days=15) + offset
    assert in_retention(period, now, LAGS) is kept
    assert in_retention(period, now.astimezone(UTC), LAGS) is kept


# --- parse_hour --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026010110", bj(2026, 1, 1, 10)),
        ("2026010100", bj(2026, 1, 1, 0)),
        ("2026123123", bj(2026, 12, 31, 23)),
        ("2028022905", bj(2028, 2, 29, 5)),
    ],
)
def test_parse_hour_good(text: str, expected: datetime) -> None:
    parsed = parse_hour(text)
    assert parsed == expected
    assert parsed.utcoffset() == EIGHT_HOURS


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("202601011", id="9-digits"),
        pytest.param("20260101100", id="11-digits"),
        pytest.param("20260101", id="a-day"),
        pytest.param("202601011000", id="with-minutes"),
        pytest.param("2026-01-01", id="iso-date"),
        pytest.param("2026-01-01T10", id="iso-hour"),
        pytest.param("abcdefghij", id="letters"),
        pytest.param(" 2026010110", id="leading-space"),
        pytest.param("2026010110\n", id="trailing-newline"),
        pytest.param("2026023010", id="february-30"),
        pytest.param("2027022910", id="february-29-non-leap"),
        pytest.param("2026130110", id="month-13"),
        pytest.param("2026000110", id="month-0"),
        pytest.param("2026010010", id="day-0"),
        pytest.param("2026010124", id="hour-24"),
    ],
)
def test_parse_hour_bad(text: str) -> None:
    with pytest.raises(ValueError, match="yyyyMMddHH"):
        parse_hour(text)


# --- periods_in_range --------------------------------------------------------------------------


def hour_span(first: datetime, count: int) -> list[Period]:
    return [Period(first + timedelta(hours=i), "hour") for i in range(count)]


@pytest.mark.parametrize(
    ("first", "last", "types", "expected"),
    [
        pytest.param(bj(2026, 1, 1, 10), bj(2026, 1, 1, 12), ["hour"],
                     [H(2026, 1, 1, 10), H(2026, 1, 1, 11), H(2026, 1, 1, 12)],
                     id="hours-inclusive-both-ends"),
        pytest.param(bj(2026, 1, 1, 10), bj(2026, 1, 1, 10), ["hour"], [H(2026, 1, 1, 10)],
                     id="one-hour"),
        pytest.param(bj(2026, 1, 1, 11), bj(2026, 1, 1, 10), ["hour", "day"], [],
                     id="last-before-first"),
        pytest.param(bj(2026, 1, 1, 0), bj(2026, 1, 1, 23), ["day"], [D(2026, 1, 1)],
                     id="day-all-24-hours"),
        pytest.param(bj(2026, 1, 1, 0), bj(2026, 1, 1, 22), ["day"], [],
                     id="day-missing-its-last-hour"),
        pytest.param(bj(2026, 1, 1, 1), bj(2026, 1, 2, 22), ["day"], [],
                     id="day-missing-first-and-last-hours"),
        pytest.param(bj(2026, 1, 1, 1), bj(2026, 1, 2, 23), ["day"], [D(2026, 1, 2)],
                     id="mid-day-start-skips-first-day"),
        pytest.param(bj(2026, 1, 1, 0), bj(2026, 1, 3, 0), ["day"],
                     [D(2026, 1, 1), D(2026, 1, 2)], id="last-day-incomplete"),
        pytest.param(bj(2026, 1, 31, 0), bj(2026, 2, 1, 23), ["day"],
                     [D(2026, 1, 31), D(2026, 2, 1)], id="days-across-month-end"),
        pytest.param(bj(2026, 12, 31, 0), bj(2027, 1, 1, 23), ["day"],
                     [D(2026, 12, 31), D(2027, 1, 1)], id="days-across-year-end"),
        pytest.param(bj(2028, 2, 28, 0), bj(2028, 3, 1, 23), ["day"],
                     [D(2028, 2, 28), D(2028, 2, 29), D(2028, 3, 1)], id="days-leap-february"),
        pytest.param(bj(2026, 12, 31, 21), bj(2027, 1, 1, 2), ["hour", "day"],
                     hour_span(bj(2026, 12, 31, 21), 6), id="hours-across-year-end"),
        pytest.param(bj(2026, 1, 31, 22), bj(2026, 2, 1, 1), ["hour"],
                     hour_span(bj(2026, 1, 31, 22), 4), id="hours-across-month-end"),
        pytest.param(bj(2026, 1, 1, 10), bj(2026, 1, 1, 12), [], [], id="no-export-types"),
        # Input in UTC: 16:00 UTC Dec 31 .. 15:00 UTC Jan 1 is all of Jan 1 in Beijing.
        pytest.param(datetime(2025, 12, 31, 16, tzinfo=UTC), datetime(2026, 1, 1, 15, tzinfo=UTC),
                     ["day"], [D(2026, 1, 1)], id="utc-input-whole-beijing-day"),
        pytest.param(datetime(2026, 1, 1, 0, tzinfo=UTC), datetime(2026, 1, 2, 15, tzinfo=UTC),
                     ["day"], [D(2026, 1, 2)], id="utc-midnight-is-mid-day-in-beijing"),
    ],
)
def test_periods_in_range(first: datetime, last: datetime, types: list[str],
                          expected: list[Period]) -> None:
    assert periods_in_range(first, last, types) == expected


def test_periods_in_range_mixes_types_oldest_first() -> None:
    got = periods_in_range(bj(2026, 1, 1, 22), bj(2026, 1, 3, 1), ("hour", "day"))
    hours = hour_span(bj(2026, 1, 1, 22), 28)  # 22:00 Jan 1 .. 01:00 Jan 3
    assert [p for p in got if p.export_type == "hour"] == hours
    assert [p for p in got if p.export_type == "day"] == [D(2026, 1, 2)]
    assert [p.start for p in got] == sorted(p.start for p in got)
    # The day sits with the hours of the same start, not at the end of the list.
    day_at = got.index(D(2026, 1, 2))
    assert got[day_at - 1] == H(2026, 1, 1, 23)
    assert got[day_at + 1] == H(2026, 1, 2, 0)


def test_periods_in_range_two_weeks_counts() -> None:
    got = periods_in_range(bj(2026, 12, 25, 0), bj(2027, 1, 7, 23), ["hour", "day"])
    assert sum(p.export_type == "hour" for p in got) == 14 * 24
    assert [p for p in got if p.export_type == "day"] == [
        Period(bj(2026, 12, 25) + timedelta(days=i), "day") for i in range(14)]
    assert got == sorted(got, key=lambda p: (p.start, p.export_type))


# --- window ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "days", "first", "last"),
    [
        pytest.param(bj(2026, 1, 20, 10, 30), None, bj(2026, 1, 5, 11), bj(2026, 1, 20, 10),
                     id="retention-mid-hour"),
        pytest.param(bj(2026, 1, 20, 10), None, bj(2026, 1, 5, 10), bj(2026, 1, 20, 10),
                     id="retention-on-the-hour"),
        pytest.param(bj(2026, 1, 20, 10, 0, 0, 1), None, bj(2026, 1, 5, 11), bj(2026, 1, 20, 10),
                     id="retention-1us-past-the-hour"),
        pytest.param(bj(2026, 1, 20, 10, 30), 1, bj(2026, 1, 19, 11), bj(2026, 1, 20, 10),
                     id="one-day"),
        pytest.param(bj(2026, 1, 20, 10, 30), 0.5, bj(2026, 1, 19, 23), bj(2026, 1, 20, 10),
                     id="half-a-day"),
        pytest.param(bj(2026, 1, 20, 10, 30), 30, bj(2026, 1, 5, 11), bj(2026, 1, 20, 10),
                     id="capped-at-retention"),
        pytest.param(bj(2026, 1, 20, 10, 30), 15, bj(2026, 1, 5, 11), bj(2026, 1, 20, 10),
                     id="exactly-retention"),
        pytest.param(bj(2027, 1, 3, 0, 15), 3, bj(2026, 12, 31, 1), bj(2027, 1, 3, 0),
                     id="across-year-end"),
        pytest.param(datetime(2026, 1, 20, 2, 30, tzinfo=UTC), None, bj(2026, 1, 5, 11),
                     bj(2026, 1, 20, 10), id="utc-now"),
    ],
)
def test_window(now: datetime, days: float | None, first: datetime, last: datetime) -> None:
    got_first, got_last = window(now, LAGS, days)
    assert (got_first, got_last) == (first, last)
    assert got_first.utcoffset() == got_last.utcoffset() == EIGHT_HOURS


@pytest.mark.parametrize(
    "now", [bj(2026, 1, 20, 10, 30), bj(2026, 1, 20, 10), bj(2026, 3, 1, 0, 59, 59)], ids=str)
def test_window_first_hour_is_the_first_whole_hour_in_retention(now: datetime) -> None:
    first, _ = window(now, LAGS)
    assert in_retention(Period(first, "hour"), now, LAGS)
    assert not in_retention(Period(first - timedelta(hours=1), "hour"), now, LAGS)


# --- split_due / next_due ----------------------------------------------------------------------


def test_split_due() -> None:
    now = bj(2026, 1, 20, 12)
    periods = [
        H(2026, 1, 20, 10),  # due at 11:30
        H(2026, 1, 20, 11),  # due at 12:30: pending
        H(2026, 1, 5, 11),  # started before 01-05 12:00: gone
        H(2026, 1, 5, 12),  # starts exactly at the retention start: kept, due
        D(2026, 1, 19),  # due at 01-20 04:00
        D(2026, 1, 20),  # due at 01-21 04:00: pending
        D(2026, 1, 5),  # gone
        H(2026, 1, 19, 23),  # night hour, due at 01-20 01:00
    ]
    due, pending, expired = split_due(periods, now, LAGS)
    assert due == [H(2026, 1, 20, 10), H(2026, 1, 5, 12), D(2026, 1, 19), H(2026, 1, 19, 23)]
    assert pending == [H(2026, 1, 20, 11), D(2026, 1, 20)]
    assert expired == [H(2026, 1, 5, 11), D(2026, 1, 5)]


def test_split_due_expired_wins_over_due_and_pending() -> None:
    lags = Lags(retention=timedelta(hours=1))
    now = bj(2026, 1, 20, 12)
    due, pending, expired = split_due(
        [H(2026, 1, 20, 10), H(2026, 1, 20, 11), D(2026, 1, 20)], now, lags)
    # 10:00 is due but older than the 1 h retention; today's day is not due and also too old.
    assert expired == [H(2026, 1, 20, 10), D(2026, 1, 20)]
    assert pending == [H(2026, 1, 20, 11)]
    assert due == []


def test_split_due_empty() -> None:
    assert split_due([], bj(2026, 1, 20, 12), LAGS) == ([], [], [])


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        pytest.param(bj(2026, 1, 20, 11), bj(2026, 1, 20, 11, 30), id="earliest-of-all"),
        pytest.param(bj(2026, 1, 20, 12), bj(2026, 1, 20, 12, 30), id="skips-already-due"),
        pytest.param(bj(2026, 1, 20, 12, 30), bj(2026, 1, 21, 4), id="strictly-after-now"),
        pytest.param(bj(2026, 1, 21, 4), None, id="all-due"),
    ],
)
def test_next_due(now: datetime, expected: datetime | None) -> None:
    periods = [D(2026, 1, 20), H(2026, 1, 20, 11), H(2026, 1, 20, 10)]
    assert next_due(periods, now, LAGS) == expected


def test_next_due_of_nothing() -> None:
    assert next_due([], bj(2026, 1, 20, 12), LAGS) is None
