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

from downloader.engine.checkpoint import DoneSet
from downloader.config import Config, ProjectConfig
from downloader.core.partitions import (
    Job,
    Lags,
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
              now: datetime, lags: Lags, done: DoneSet) -> Plan:
    """Jobs for every due period of every project in ``first_hour..last_hour`` whose partitions
    are not all done, oldest first (the oldest are the first to leave the retention window)."""
    plan = Plan()
    not_due: set[Period] = set()
    expired: set[Period] = set()
    # Projects mostly share their export types: split the range once per combination, and
    # index the due periods by label so that "what is missing" is a set difference.
    splits: dict[tuple[str, ...], tuple[dict[str, dict[str, Period]], list[Period],
                                        list[Period]]] = {}
    for project in projects:
        split = splits.get(project.export_types)
        if split is None:
            periods = periods_in_range(first_hour, last_hour, project.export_types)
            due, pending, gone = split_due(periods, now, lags)
            by_label: dict[str, dict[str, Period]] = {}
            for period in due:
                by_label.setdefault(period.export_type, {})[period.label] = period
            split = splits[project.export_types] = (by_label, pending, gone)
        by_label, pending, gone = split
        not_due.update(pending)
        expired.update(gone)
        missing: dict[Period, set[str]] = {}
        for export_type, labelled in by_label.items():
            for data_type in project.data_types:
                todo = labelled.keys() - done.labels(project.ai, data_type, export_type)
                plan.already_done += len(labelled) - len(todo)
                for label in todo:
                    missing.setdefault(labelled[label], set()).add(data_type)
        for period, types in missing.items():
            plan.jobs.append(Job(project.ai, period,
                                 tuple(t for t in project.data_types if t in types)))
    plan.jobs.sort(key=lambda j: (j.period.start, j.period.export_type, j.ai))
    plan.not_due = sorted(not_due)
    plan.expired = sorted(expired)
    return plan


def plan_for_config(cfg: Config, first_hour: datetime, last_hour: datetime, now: datetime,
                    done: DoneSet) -> Plan:
    return plan_jobs(cfg.projects, first_hour, last_hour, now, cfg.lags, done)


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
