"""Planning of report partitions and the daemon's next wake-up: pure tables over ``now``."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from downloader.core.constants import BEIJING
from downloader.core.model import DoneSet, PartitionKey
from downloader.sources.stats.keys import Item, folder, parse_key, part_name
from downloader.sources.stats.plan import next_due, plan_reports

UID = "nxog09md"
CHART = Item(UID, "chart", "YoX28w7R")
TAG = Item(UID, "tag_users", "Tg01Ab23")
RULES = Item(UID, "rules")
LAG = timedelta(minutes=360)


def bj(*args: int) -> datetime:
    return datetime(*args, tzinfo=BEIJING)  # type: ignore[misc]


def test_keys_round_trip_and_layout() -> None:
    key = CHART.key(date(2024, 6, 9))
    assert str(key) == "nxog09md/chart/YoX28w7R/day:20240609"
    assert parse_key(key) == (CHART, date(2024, 6, 9))
    assert parse_key(RULES.key(date(2024, 6, 10))) == (RULES, date(2024, 6, 10))
    assert folder(CHART, date(2024, 6, 9)) == \
        "reports/project_uid=nxog09md/report=chart/id=YoX28w7R/date=2024-06-09"
    assert folder(RULES, date(2024, 6, 10)) == \
        "reports/project_uid=nxog09md/report=rules/date=2024-06-10"
    assert part_name(3) == "part-00003.csv"
    with pytest.raises(ValueError):
        Item(UID, "rules", "Xx01Ab23")
    with pytest.raises(ValueError):
        parse_key(PartitionKey("raw", "a/b", "hour:2024060900"))


@pytest.mark.parametrize(("now", "jobs", "not_due"), [
    # Day D is due at D+1 06:00 with the default lag.
    (bj(2024, 6, 10, 5, 59), ["day:20240608"], ["day:20240609"]),
    (bj(2024, 6, 10, 6, 0), ["day:20240608", "day:20240609"], []),
])
def test_windowed_days_are_due_after_the_next_midnight_plus_lag(
        now: datetime, jobs: list[str], not_due: list[str]) -> None:
    plan = plan_reports([CHART], bj(2024, 6, 8, 0), bj(2024, 6, 10, 0), now, LAG,
                        DoneSet.from_keys([]))
    assert [j.keys[0].partition for j in plan.jobs] == jobs
    assert plan.not_due == not_due
    assert all(j.due <= now for j in plan.jobs)


def test_a_day_counts_only_when_wholly_inside_the_window() -> None:
    plan = plan_reports([CHART], bj(2024, 6, 8, 1), bj(2024, 6, 9, 23), bj(2024, 6, 12),
                        LAG, DoneSet.from_keys([]))
    assert [j.keys[0].partition for j in plan.jobs] == ["day:20240609"]


def test_only_todays_snapshot_is_taken_and_past_days_are_skipped_in_one_note() -> None:
    now = bj(2024, 6, 10, 7)
    plan = plan_reports([TAG, RULES, CHART], bj(2024, 6, 7, 0), bj(2024, 6, 10, 7), now, LAG,
                        DoneSet.from_keys([]))
    snap = [j.keys[0] for j in plan.jobs if j.keys[0].item != CHART.name]
    assert snap == [TAG.key(date(2024, 6, 10)), RULES.key(date(2024, 6, 10))]
    assert len(plan.notes) == 1 and "3 past snapshot days skipped" in plan.notes[0]


def test_todays_snapshot_waits_for_the_lag_and_a_window_without_today_takes_none() -> None:
    early = plan_reports([TAG], bj(2024, 6, 10, 0), bj(2024, 6, 10, 5), bj(2024, 6, 10, 5, 30),
                         LAG, DoneSet.from_keys([]))
    assert early.jobs == [] and early.not_due == ["day:20240610"] and early.notes == []
    past = plan_reports([TAG], bj(2024, 6, 8, 0), bj(2024, 6, 8, 23), bj(2024, 6, 10, 7), LAG,
                        DoneSet.from_keys([]))
    assert past.jobs == [] and "1 past snapshot day skipped" in past.notes[0]


def test_done_partitions_are_not_planned() -> None:
    done = DoneSet.from_keys([CHART.key(date(2024, 6, 8)), TAG.key(date(2024, 6, 10))])
    plan = plan_reports([CHART, TAG], bj(2024, 6, 8, 0), bj(2024, 6, 10, 7), bj(2024, 6, 10, 7),
                        LAG, done)
    assert [str(j.keys[0]) for j in plan.jobs] == ["nxog09md/chart/YoX28w7R/day:20240609"]
    assert plan.already_done == 2


@pytest.mark.parametrize(("now", "lag", "expected"), [
    (bj(2024, 6, 10, 5, 0), 360, bj(2024, 6, 10, 6, 0)),
    (bj(2024, 6, 10, 6, 0), 360, bj(2024, 6, 11, 6, 0)),
    (bj(2024, 6, 10, 23, 59), 0, bj(2024, 6, 11, 0, 0)),
    (bj(2024, 6, 10, 12, 0), 1500, bj(2024, 6, 11, 1, 0)),  # lag over a day
])
def test_next_due_is_the_next_midnight_plus_lag(now: datetime, lag: int,
                                                 expected: datetime) -> None:
    assert next_due(now, timedelta(minutes=lag)) == expected
