"""Which CDP snapshots are due: pure, ``now`` is a parameter (exports-spec §2).

Every CDP export is a snapshot: one partition per export per Beijing day, the day the job is
submitted, due at that day's 00:00 + ``schedule.report_lag_minutes``. The platform exports the
state of now, so only today's snapshot can be taken: a window that reaches today takes it, past
days in the window are skipped with one line that says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta

from downloader.core.constants import BEIJING
from downloader.core.model import DoneSet
from downloader.engine.source import Job, Plan
from downloader.sources.cdp.keys import SOURCE, cdp_key, day_start, item_name, partition_name

ONE_DAY = timedelta(days=1)


def today(now: datetime) -> date:
    return now.astimezone(BEIJING).date()


def due_at(day: date, lag: timedelta) -> datetime:
    return day_start(day) + lag


def plan_snapshots(items: Iterable[tuple[str, str]], first_hour: datetime, last_hour: datetime,
                   now: datetime, lag: timedelta, done: DoneSet) -> Plan:
    """Jobs for today's snapshot of every ``(kind, ident)`` when today lies in the Beijing hours
    ``first_hour..last_hour`` and the snapshot is due; past days become one note."""
    plan = Plan()
    items = list(items)
    first = today(first_hour)
    last = today(last_hour)
    current = today(now)
    if not items or last < first:
        return plan
    past_days = (min(last, current - ONE_DAY) - first).days + 1
    if past_days > 0:
        plan.notes.append(f"cdp: {past_days} past snapshot day{'s' if past_days != 1 else ''} "
                          "skipped: only today's can be taken")
    future = last
    while future > current and future >= first:
        plan.not_due.append(partition_name(future))
        future -= ONE_DAY
    plan.not_due.reverse()
    if not first <= current <= last:
        return plan
    due = due_at(current, lag)
    if now < due:
        plan.not_due.insert(0, partition_name(current))
        return plan
    name = partition_name(current)
    for kind, ident in items:
        if name in done.partitions(SOURCE, item_name(kind, ident)):
            plan.already_done += 1
            continue
        key = cdp_key(kind, ident, current)
        plan.jobs.append(Job(SOURCE, f"{key.item}/{key.partition}", (key,), day_start(current),
                             due))
    return plan


def next_snapshot_due(now: datetime, lag: timedelta) -> datetime:
    """The next moment after ``now`` at which a snapshot becomes due: today's, or tomorrow's."""
    current = today(now)
    due = due_at(current, lag)
    while due <= now:
        current += ONE_DAY
        due = due_at(current, lag)
    return due
