"""Which report partitions are due, oldest first: pure, ``now`` is a parameter (exports-spec §2).

- Windowed items (charts, funnels, retentions, frequencies): one partition per Beijing day D that
  lies wholly inside the window, due at D+1 00:00 + ``report_lag_minutes``.
- Snapshots (segment users, tag users, rules): only today's partition can be taken, due at
  today's 00:00 + the lag, when today lies in the window; past days are skipped (one note).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta

from downloader.core.constants import BEIJING
from downloader.core.model import DoneSet
from downloader.core.partitions import DAY, floor_day, periods_in_range
from downloader.engine.source import Job, Plan
from downloader.sources.stats.keys import SOURCE, Item, day_start, partition_name


def windowed_due(day: date, lag: timedelta) -> datetime:
    """The data of ``day`` is complete the lag after the next midnight."""
    return day_start(day) + DAY + lag


def snapshot_due(day: date, lag: timedelta) -> datetime:
    """A snapshot of ``day`` may be taken from that day's midnight plus the lag."""
    return day_start(day) + lag


def _job(item: Item, day: date, due: datetime) -> Job:
    key = item.key(day)
    return Job(SOURCE, str(key), (key,), day_start(day), due)


def _days(first: date, last: date) -> Iterable[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def plan_reports(items: Sequence[Item], first_hour: datetime, last_hour: datetime,
                 now: datetime, lag: timedelta, done: DoneSet) -> Plan:
    """Jobs for every due, not yet done partition of ``items`` in ``first_hour..last_hour``
    (Beijing hours, both inclusive), oldest first."""
    plan = Plan()
    windowed = [i for i in items if i.windowed]
    snapshots = [i for i in items if not i.windowed]
    not_due: set[date] = set()
    jobs: list[tuple[date, int, Job]] = []
    whole_days = [p.start.date() for p in periods_in_range(first_hour, last_hour, ["day"])]
    for n, item in enumerate(windowed):
        finished = done.partitions(SOURCE, item.name)
        for day in whole_days:
            due = windowed_due(day, lag)
            if now < due:
                not_due.add(day)
            elif partition_name(day) in finished:
                plan.already_done += 1
            else:
                jobs.append((day, n, _job(item, day, due)))
    if snapshots:
        today = now.astimezone(BEIJING).date()
        touched = list(_days(floor_day(first_hour).date(), floor_day(last_hour).date()))
        past = [d for d in touched if d < today]
        not_due.update(d for d in touched if d > today)
        if today in touched:
            due = snapshot_due(today, lag)
            for n, item in enumerate(snapshots, start=len(windowed)):
                if now < due:
                    not_due.add(today)
                elif partition_name(today) in done.partitions(SOURCE, item.name):
                    plan.already_done += 1
                else:
                    jobs.append((today, n, _job(item, today, due)))
        if past:
            plan.notes.append(
                f"reports: {len(past)} past snapshot day{'s' if len(past) != 1 else ''} "
                f"skipped: only today's can be taken ({past[0]:%Y-%m-%d}..{past[-1]:%Y-%m-%d})")
    jobs.sort(key=lambda j: (j[0], j[1]))
    plan.jobs = [j for _, _, j in jobs]
    plan.not_due = [partition_name(d) for d in sorted(not_due)]
    return plan


def next_due(now: datetime, lag: timedelta) -> datetime:
    """The first moment after ``now`` when a report partition becomes due. Every due time is a
    Beijing midnight plus the lag (windowed D at D+1 00:00, a snapshot at its own 00:00), so it
    is the first such moment after ``now``."""
    moment = floor_day(now) + lag
    while moment > now + DAY:
        moment -= DAY
    while moment <= now:
        moment += DAY
    return moment
