"""Snapshot partitions of the CDP source: pure planning over ``now`` (exports-spec §2)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from downloader.core.constants import BEIJING
from downloader.core.model import DoneSet, PartitionKey
from downloader.sources.cdp.keys import cdp_key, parse_key, part_name, partition_dir
from downloader.sources.cdp.plan import next_snapshot_due, plan_snapshots

ITEMS = [("segment_users", "Sg01Ab23"), ("tag_users", "tag_vip")]
LAG = timedelta(minutes=360)


def bj(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=BEIJING)


def test_key_round_trip_and_layout() -> None:
    key = cdp_key("tag_users", "tag_vip", date(2026, 3, 5))
    assert key == PartitionKey("cdp", "tag_users/tag_vip", "day:20260305")
    assert str(key) == "tag_users/tag_vip/day:20260305"
    assert parse_key(key) == ("tag_users", "tag_vip", date(2026, 3, 5))
    assert partition_dir(*parse_key(key)) == "cdp/export=tag_users/id=tag_vip/date=2026-03-05"
    assert part_name(3, "xlsx") == "part-00003.xlsx"
    with pytest.raises(ValueError):
        parse_key(PartitionKey("raw", "ai/visit", "hour:2026030501"))


def test_window_reaching_today_takes_today_and_skips_past_days_in_one_note() -> None:
    plan = plan_snapshots(ITEMS, bj(2, 10), bj(5, 9), bj(5, 9, 30), LAG, DoneSet({}))
    assert [j.keys[0] for j in plan.jobs] == [cdp_key(k, i, date(2026, 3, 5)) for k, i in ITEMS]
    assert all(j.due == bj(5, 6) and j.start == bj(5) for j in plan.jobs)
    assert plan.notes == ["cdp: 3 past snapshot days skipped: only today's can be taken"]
    assert plan.not_due == [] and plan.expired == []


def test_not_due_before_the_lag() -> None:
    plan = plan_snapshots(ITEMS, bj(5), bj(5, 5), bj(5, 5, 59), LAG, DoneSet({}))
    assert plan.jobs == [] and plan.not_due == ["day:20260305"] and plan.notes == []


@pytest.mark.parametrize("lag_minutes", [0, 1, 360])
def test_due_exactly_at_midnight_plus_lag(lag_minutes: int) -> None:
    lag = timedelta(minutes=lag_minutes)
    now = bj(5) + lag
    plan = plan_snapshots(ITEMS, bj(5), bj(5, 23), now, lag, DoneSet({}))
    assert len(plan.jobs) == 2


def test_past_window_only_is_skipped_not_failed() -> None:
    plan = plan_snapshots(ITEMS, bj(1), bj(2, 23), bj(5, 12), LAG, DoneSet({}))
    assert plan.jobs == [] and plan.notes == [
        "cdp: 2 past snapshot days skipped: only today's can be taken"]


def test_done_today_is_already_done() -> None:
    done = DoneSet.from_keys([cdp_key("tag_users", "tag_vip", date(2026, 3, 5))])
    plan = plan_snapshots(ITEMS, bj(5), bj(5, 12), bj(5, 12), LAG, done)
    assert [j.slot for j in plan.jobs] == ["segment_users/Sg01Ab23/day:20260305"]
    assert plan.already_done == 1


def test_future_days_are_not_due() -> None:
    plan = plan_snapshots(ITEMS, bj(5), bj(7, 23), bj(5, 12), LAG, DoneSet({}))
    assert len(plan.jobs) == 2 and plan.not_due == ["day:20260306", "day:20260307"]


@pytest.mark.parametrize(("now", "lag_minutes", "due"), [
    (bj(5, 5, 59), 360, bj(5, 6)),  # today's, later today
    (bj(5, 6), 360, bj(6, 6)),  # today's is due now: the next is tomorrow's
    (bj(5, 12), 0, bj(6)),
    (bj(5, 12), 1500, bj(6, 1)),  # a lag above a day: due the next day at 01:00
])
def test_next_due(now: datetime, lag_minutes: int, due: datetime) -> None:
    assert next_snapshot_due(now, timedelta(minutes=lag_minutes)) == due
