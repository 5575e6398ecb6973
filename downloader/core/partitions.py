"""Partition math, pure: Beijing-time hour/day periods, their export_date, due times, retention.

Nothing here reads the clock: every function takes ``now`` explicitly, so the scheduler, the tests
and a fake clock all agree on what "now" is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property

from downloader.core.constants import (
    BEIJING,
    DEFAULT_DAY_LAG_MINUTES,
    DEFAULT_HOUR_LAG_MINUTES,
    DEFAULT_NIGHT_HOUR_LAG_MINUTES,
    DEFAULT_RETENTION_DAYS,
    NIGHT_HOURS,
)

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
_HOUR_ARG = re.compile(r"^\d{10}$")


@dataclass(frozen=True, order=True)
class Period:
    """One export unit, Beijing time: an hour ``[start, start+1h)`` or a day
    ``[start, start+1d)``."""

    start: datetime
    export_type: str  # "hour" | "day"

    def __post_init__(self) -> None:
        if self.export_type not in ("hour", "day"):
            raise ValueError(f"export_type must be hour or day, not {self.export_type!r}")
        if self.start.tzinfo is None:
            raise ValueError("Period.start must be timezone-aware")
        local = self.start.astimezone(BEIJING)
        aligned = local.replace(minute=0, second=0, microsecond=0)
        if self.export_type == "day":
            aligned = aligned.replace(hour=0)
        if local != aligned:
            raise ValueError(f"{self.export_type} period must start on its boundary: {local}")
        object.__setattr__(self, "start", local)

    @property
    def length(self) -> timedelta:
        return HOUR if self.export_type == "hour" else DAY

    @property
    def end(self) -> datetime:
        return self.start + self.length

    @property
    def api_date(self) -> str:
        """``export_date`` as documented: ``yyyyMMddHHmm`` Beijing time (API §2.2)."""
        return self.start.strftime("%Y%m%d%H%M")

    @cached_property
    def label(self) -> str:
        """The date cut down to the export type, as the API echoes it in ``exportDate``."""
        return self.start.strftime("%Y%m%d%H" if self.export_type == "hour" else "%Y%m%d")

    @property
    def date_str(self) -> str:
        return self.start.strftime("%Y-%m-%d")

    @property
    def hour_str(self) -> str | None:
        return self.start.strftime("%H") if self.export_type == "hour" else None

    def __str__(self) -> str:
        return f"{self.export_type}:{self.label}"

    @classmethod
    def from_label(cls, export_type: str, label: str) -> Period:
        fmt = "%Y%m%d%H" if export_type == "hour" else "%Y%m%d"
        return cls(datetime.strptime(label, fmt).replace(tzinfo=BEIJING), export_type)


@dataclass(frozen=True)
class Lags:
    """When the vendor has a period ready (API §2.6), as configured."""

    hour: timedelta = timedelta(minutes=DEFAULT_HOUR_LAG_MINUTES)
    night_hour: timedelta = timedelta(minutes=DEFAULT_NIGHT_HOUR_LAG_MINUTES)
    night_hours: frozenset[int] = field(default=NIGHT_HOURS)
    day: timedelta = timedelta(minutes=DEFAULT_DAY_LAG_MINUTES)
    retention: timedelta = timedelta(days=DEFAULT_RETENTION_DAYS)


def due_at(period: Period, lags: Lags) -> datetime:
    """The moment a period may first be requested. Hours around midnight take the longer of the
    two hour lags; a day is due its lag after the following midnight."""
    if period.export_type == "day":
        return period.end + lags.day
    lag = lags.hour
    if period.start.hour in lags.night_hours:
        lag = max(lag, lags.night_hour)
    return period.end + lag


def is_due(period: Period, now: datetime, lags: Lags) -> bool:
    return now >= due_at(period, lags)


def retention_start(now: datetime, lags: Lags) -> datetime:
    """Earliest period start the API still keeps: a period starting before it is gone or about
    to go, so it is neither requested nor waited for."""
    return now.astimezone(BEIJING) - lags.retention


def in_retention(period: Period, now: datetime, lags: Lags) -> bool:
    return period.start >= retention_start(now, lags)


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(BEIJING).replace(minute=0, second=0, microsecond=0)


def floor_day(moment: datetime) -> datetime:
    return floor_hour(moment).replace(hour=0)


def parse_hour(text: str) -> datetime:
    """Parse a ``yyyyMMddHH`` Beijing hour (the ``--from``/``--to`` form)."""
    if not _HOUR_ARG.match(text):
        raise ValueError(f"{text!r} is not a Beijing hour in the form yyyyMMddHH")
    try:
        return datetime.strptime(text, "%Y%m%d%H").replace(tzinfo=BEIJING)
    except ValueError:
        raise ValueError(f"{text!r} is not a valid date and hour (yyyyMMddHH)") from None


def hours(first: datetime, last: datetime) -> Iterator[datetime]:
    """Hour starts from ``first`` to ``last``, both inclusive."""
    cur = floor_hour(first)
    while cur <= last:
        yield cur
        cur += HOUR


def periods_in_range(first_hour: datetime, last_hour: datetime,
                     export_types: Iterable[str]) -> list[Period]:
    """Periods of the given export types inside the Beijing hours ``first_hour..last_hour``
    (both inclusive). A day counts only when all 24 of its hours are in the range."""
    types = set(export_types)
    out: list[Period] = []
    if "hour" in types:
        out.extend(Period(h, "hour") for h in hours(first_hour, last_hour))
    if "day" in types:
        day = floor_day(first_hour)
        if day < floor_hour(first_hour):
            day += DAY
        while day + DAY - HOUR <= last_hour:
            out.append(Period(day, "day"))
            day += DAY
    out.sort(key=lambda p: (p.start, p.export_type))
    return out


def window(now: datetime, lags: Lags, days: float | None = None) -> tuple[datetime, datetime]:
    """The hours a backfill of the last ``days`` days (at most the retention) covers: from the
    first whole hour inside the window to the hour that has just started."""
    span = lags.retention if days is None else min(timedelta(days=days), lags.retention)
    start = now.astimezone(BEIJING) - span
    first = floor_hour(start)
    if first < start:
        first += HOUR
    return first, floor_hour(now)


def split_due(periods: Iterable[Period], now: datetime,
              lags: Lags) -> tuple[list[Period], list[Period], list[Period]]:
    """Split periods into (due and kept, not due yet, already out of retention)."""
    due: list[Period] = []
    pending: list[Period] = []
    expired: list[Period] = []
    for p in periods:
        if not in_retention(p, now, lags):
            expired.append(p)
        elif not is_due(p, now, lags):
            pending.append(p)
        else:
            due.append(p)
    return due, pending, expired


def next_due(periods: Iterable[Period], now: datetime, lags: Lags) -> datetime | None:
    """The earliest due time after ``now`` among ``periods``, or None."""
    times = [due_at(p, lags) for p in periods]
    later = [t for t in times if t > now]
    return min(later) if later else None
