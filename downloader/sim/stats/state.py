"""Server-side state of the statistics simulator: V3 jobs per exact GET, and rate admission.

Thread-safe: tests read and set it from their own thread while the server runs in another.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from downloader.sim.stats.data import derived_id, seeded_int

Step = Literal["doing", "failed", "finished"]


@dataclass
class Job:
    id: str
    doing_left: int
    fails: bool


class JobBook:
    """One job per exact GET (path and query): the first GET starts it and answers `doing`,
    then `doing_polls` (+ seeded jitter) more `doing`, then `failed` or `finished`."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._lock = threading.Lock()
        self._jobs: dict[tuple[str, str], Job] = {}
        self._started = 0

    def step(
        self,
        key: tuple[str, str],
        doing_polls: int,
        jitter: int,
        fails: Callable[[], bool],
        keep_done: bool,
    ) -> tuple[Job, Step]:
        """Advance the job of `key`. `fails()` is asked only when this call starts a new job;
        `keep_done` keeps a finished job, so the next GET answers its result again."""
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                self._started += 1
                parts = (*key, self._started)
                extra = seeded_int(self._seed, jitter, "job", *parts)
                job = Job(derived_id(self._seed, "job", *parts), doing_polls + extra, fails())
                self._jobs[key] = job
                return job, "doing"
            if job.doing_left > 0:
                job.doing_left -= 1
                return job, "doing"
            if job.fails or not keep_done:
                del self._jobs[key]
            return job, "failed" if job.fails else "finished"


class SlidingWindowAdmission:
    """At most `limit` admitted calls in any sliding window, overall and per item."""

    def __init__(self, limit: int, seconds: float) -> None:
        self._limit, self._seconds = limit, seconds
        self._lock = threading.Lock()
        self._overall: deque[float] = deque()
        self._per_item: dict[str, deque[float]] = {}

    def admit(self, t: float, item: str | None) -> bool:
        with self._lock:
            windows = [self._overall]
            if item is not None:
                windows.append(self._per_item.setdefault(item, deque()))
            for window in windows:
                while window and t - window[0] >= self._seconds:
                    window.popleft()
            if any(len(window) >= self._limit for window in windows):
                return False
            for window in windows:
                window.append(t)
            return True
