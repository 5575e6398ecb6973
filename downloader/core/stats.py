"""One snapshot object that progress lines, ``status --json`` and metrics all read."""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    jobs_total: int = 0
    partitions_total: int = 0  # queued by this run (known as soon as the run is planned)
    jobs_finished: int = 0
    partitions_done: int = 0
    partitions_failed: int = 0
    parts_total: int = 0
    parts_done: int = 0
    parts_recovered: int = 0
    bytes_expected: int = 0
    bytes_done: int = 0  # downloaded by this run
    bytes_resumed: int = 0  # found on disk from an earlier run
    bytes_discarded: int = 0  # downloaded, then thrown away (corrupt, range refused)
    link_refreshes: int = 0
    retries: int = 0
    api_calls: Counter[tuple[str, str]] = field(default_factory=Counter)  # (source, answer)
    # Why the last API call got no answer (cleared by the next answer): /readyz says it.
    api_problem: str | None = None

    def api_call(self, http_status: int | None, status: str | None, source: str = "raw") -> None:
        """One API call of ``source``, by the export status it answered, else its HTTP
        status, else ``no_answer``."""
        answer = status or (str(http_status) if http_status else "no_answer")
        self.api_calls[(source, answer)] += 1

    def api_caller(self, source: str) -> Callable[[int | None, str | None], None]:
        """What a source's client reports its calls to."""
        return functools.partial(self.api_call, source=source)

    def api_calls_by_answer(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for (_, answer), count in self.api_calls.items():
            totals[answer] += count
        return dict(totals)

    def rate(self) -> float:
        elapsed = max(1e-6, time.monotonic() - self.started)
        return self.bytes_done / elapsed

    def eta_seconds(self) -> float | None:
        rate = self.rate()
        remaining = self.bytes_expected - self.bytes_done - self.bytes_resumed \
            + self.bytes_discarded
        if rate <= 0 or remaining <= 0 or self.parts_done >= self.parts_total:
            return None
        return remaining / rate

    def snapshot(self) -> dict[str, Any]:
        return {
            "jobs_total": self.jobs_total,
            "partitions_total": self.partitions_total,
            "jobs_finished": self.jobs_finished,
            "partitions_done": self.partitions_done,
            "partitions_failed": self.partitions_failed,
            "parts_total": self.parts_total,
            "parts_done": self.parts_done,
            "parts_recovered": self.parts_recovered,
            "bytes_expected": self.bytes_expected,
            "bytes_done": self.bytes_done,
            "bytes_resumed": self.bytes_resumed,
            "bytes_discarded": self.bytes_discarded,
            "bytes_per_second": round(self.rate()),
            "eta_seconds": None if (eta := self.eta_seconds()) is None else round(eta),
            "link_refreshes": self.link_refreshes,
            "retries": self.retries,
            "api_calls": self.api_calls_by_answer(),
            "api_calls_by_source": {f"{s}:{a}": n for (s, a), n in sorted(self.api_calls.items())},
            "elapsed_seconds": round(time.monotonic() - self.started, 1),
        }
