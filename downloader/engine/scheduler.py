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
from typing import Generic, TypeVar

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
    """A queue whose items become available at a given monotonic time; ties keep insertion
    order, so jobs put in oldest-first come out oldest-first."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._seq = 0
        self._clock = clock
        self._changed = asyncio.Event()

    def put(self, item: T, delay: float = 0.0) -> None:
        heapq.heappush(self._heap, (self._clock() + max(0.0, delay), self._seq, item))
        self._seq += 1
        self._changed.set()

    def __len__(self) -> int:
        return len(self._heap)

    def next_ready_in(self) -> float | None:
        if not self._heap:
            return None
        return max(0.0, self._heap[0][0] - self._clock())

    async def get(self) -> T:
        while True:
            wait = self.next_ready_in()
            if wait == 0.0:
                return heapq.heappop(self._heap)[2]
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), wait)
            except TimeoutError:
                pass
