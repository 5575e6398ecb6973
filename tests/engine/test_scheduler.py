"""The job queue (downloader/engine/scheduler.py): due items by priority, waiting ones not
before their time; and the order jobs of several sources run in."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from downloader.core.constants import BEIJING
from downloader.core.model import PartitionKey
from downloader.engine.scheduler import DelayQueue, jobs_in_order
from downloader.engine.source import Job, Plan

T0 = datetime(2026, 11, 20, tzinfo=BEIJING)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def job(source: str, hours_after_t0: int) -> Job:
    start = T0 + timedelta(hours=hours_after_t0)
    key = PartitionKey(source, "item", f"h:{hours_after_t0}")
    return Job(source, f"{source}/{hours_after_t0}", (key,), start, start + timedelta(hours=1))


def test_ready_items_come_out_by_priority_then_insertion() -> None:
    clock = Clock()
    q: DelayQueue[Job] = DelayQueue(clock, priority=lambda j: j.start)
    newer, older, oldest_again = job("raw", 5), job("raw", 3), job("raw", 1)
    q.put(newer)
    q.put(older)
    q.put(oldest_again, delay=15)  # a re-poll of the oldest, not available yet
    assert q.next_ready_in() == 0.0
    assert asyncio.run(q.get()) is older
    clock.t += 15  # the re-poll's delay is over: it goes before the newer first ask
    assert asyncio.run(q.get()) is oldest_again
    assert asyncio.run(q.get()) is newer
    assert len(q) == 0 and q.next_ready_in() is None


def test_many_first_asks_do_not_starve_a_due_repoll() -> None:
    clock = Clock()
    q: DelayQueue[Job] = DelayQueue(clock, priority=lambda j: j.start)
    for hour in range(10, 370):  # 360 partitions asked for the first time
        q.put(job("raw", hour))
    q.put(job("raw", 0), delay=20)  # the oldest answered RUNNING: poll again in 20 s
    taken = [asyncio.run(q.get()) for _ in range(40)]  # ~20 s of calls at 2 a second
    assert [j.start for j in taken] == [T0 + timedelta(hours=h) for h in range(10, 50)]
    clock.t += 20
    assert asyncio.run(q.get()).start == T0


def test_waiting_item_is_not_returned_early() -> None:
    clock = Clock()
    q: DelayQueue[Job] = DelayQueue(clock)
    q.put(job("raw", 1), delay=5)
    assert q.next_ready_in() == 5.0
    clock.t += 4.5
    assert q.next_ready_in() == 0.5


def test_jobs_of_several_sources_run_oldest_data_first() -> None:
    raw = Plan(jobs=[job("raw", 0), job("raw", 24), job("raw", 48)])
    reports = Plan(jobs=[job("reports", 0), job("reports", 24)])
    order = jobs_in_order([raw, reports])
    assert [(j.source, j.start) for j in order] == [
        ("raw", T0), ("reports", T0), ("raw", T0 + timedelta(hours=24)),
        ("reports", T0 + timedelta(hours=24)), ("raw", T0 + timedelta(hours=48))]


async def test_get_when_an_item_becomes_ready_between_two_clock_readings() -> None:
    class Stepping:
        """Each reading is a little later than the one before, as a real clock is."""

        def __init__(self) -> None:
            self.t = 100.0

        def __call__(self) -> float:
            self.t += 0.001
            return self.t

    clock = Stepping()
    q: DelayQueue[Job] = DelayQueue(clock)
    q.put(job("raw", 1), delay=0.0015)  # ready between _promote()'s reading and the next one
    async with asyncio.timeout(1):
        assert (await q.get()).start == T0 + timedelta(hours=1)
