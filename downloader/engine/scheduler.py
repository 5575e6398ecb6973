"""The order jobs run in, and the queue that feeds them to the workers.

The queue is a small delay-heap so that a job that is not ready yet waits in the queue, not in
a worker.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Generic, TypeVar

from downloader.core.model import DoneSet
from downloader.core.sharding import Shard
from downloader.engine.sharding import owned_plan
from downloader.engine.source import Job, Plan, Source

T = TypeVar("T")


def plan_all(sources: Iterable[Source], first_hour: datetime, last_hour: datetime,
             now: datetime, done: DoneSet, shard: Shard | None = None) -> dict[str, Plan]:
    """Every source's plan for the window, by source name; with ``shard``, only the jobs this
    instance owns."""
    shard = shard or Shard()
    return {s.name: owned_plan(s, shard, s.plan(first_hour, last_hour, now, done))
            for s in sources}


def jobs_in_order(plans: Iterable[Plan]) -> list[Job]:
    """The jobs of several sources in one queue order: oldest data first (the oldest are the
    first to leave the retention window); each source's own order breaks ties."""
    jobs = [(job.start, n, i, job) for n, plan in enumerate(plans)
            for i, job in enumerate(plan.jobs)]
    jobs.sort(key=lambda j: j[:3])
    return [j for *_, j in jobs]


class DelayQueue(Generic[T]):
    """A queue whose items become available at a given monotonic time. Of the items that are
    available, the one with the lowest ``priority`` comes out first (ties: insertion order).

    With ``priority`` = the data's time, a re-poll of an old partition whose delay is over
    goes before the first asks of newer ones: hundreds of partitions asked for the first
    time cannot starve the ones already being built, and the oldest data lands first."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 priority: Callable[[T], Any] | None = None) -> None:
        self._waiting: list[tuple[float, int, T]] = []  # by the time they become available
        self._ready: list[tuple[Any, int, T]] = []  # available, by priority
        self._seq = 0
        self._clock = clock
        self._priority = priority or (lambda _item: 0)
        self._changed = asyncio.Event()

    def put(self, item: T, delay: float = 0.0) -> None:
        heapq.heappush(self._waiting, (self._clock() + max(0.0, delay), self._seq, item))
        self._seq += 1
        self._changed.set()

    def __len__(self) -> int:
        return len(self._waiting) + len(self._ready)

    def _promote(self) -> None:
        now = self._clock()
        while self._waiting and self._waiting[0][0] <= now:
            _, seq, item = heapq.heappop(self._waiting)
            heapq.heappush(self._ready, (self._priority(item), seq, item))

    def next_ready_in(self) -> float | None:
        self._promote()
        if self._ready:
            return 0.0
        if not self._waiting:
            return None
        return max(0.0, self._waiting[0][0] - self._clock())

    async def get(self) -> T:
        while True:
            wait = self.next_ready_in()
            if self._ready:  # not ``wait == 0``: the clock moves between two readings
                return heapq.heappop(self._ready)[2]
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), wait)
            except TimeoutError:
                pass
