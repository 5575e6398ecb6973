"""Which jobs are due, in what order, and the queue that feeds them to the workers.

Planning is pure (``now`` is a parameter); the queue is a small delay-heap so that a job that
is not ready yet waits in the queue, not in a worker.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from downloader.config import Config, ProjectConfig
from downloader.partitions import (
    Job,
    Lags,
    PartitionKey,
    Period,
    periods_in_range,
    split_due,
)

T = TypeVar("T")


@dataclass
class Plan:
    jobs: list[Job] = field(default_factory=list)
    not_due: list[Period] = field(default_factory=list)
    expired: list[Period] = field(default_factory=list)
    already_done: int = 0


def plan_jobs(projects: Iterable[ProjectConfig], first_hour: datetime, last_hour: datetime,
              now: datetime, lags: Lags, is_done: Callable[[PartitionKey], bool]) -> Plan:
    """Jobs for every due period of every project in ``first_hour..last_hour`` whose partitions
    are not all done, oldest first (the oldest are the first to leave the retention window)."""
    plan = Plan()
    not_due: set[Period] = set()
    expired: set[Period] = set()
    for project in projects:
        periods = periods_in_range(first_hour, last_hour, project.export_types)
        due, pending, gone = split_due(periods, now, lags)
        not_due.update(pending)
        expired.update(gone)
        for period in due:
            todo = tuple(t for t in project.data_types
                         if not is_done(PartitionKey(project.ai, t, period)))
            plan.already_done += len(project.data_types) - len(todo)
            if todo:
                plan.jobs.append(Job(project.ai, period, todo))
    plan.jobs.sort(key=lambda j: (j.period.start, j.period.export_type, j.ai))
    plan.not_due = sorted(not_due)
    plan.expired = sorted(expired)
    return plan


def plan_for_config(cfg: Config, first_hour: datetime, last_hour: datetime, now: datetime,
                    is_done: Callable[[PartitionKey], bool]) -> Plan:
    return plan_jobs(cfg.projects, first_hour, last_hour, now, cfg.lags, is_done)


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
