"""What the simulator saw: one record per API call and per download, for tests and benchmarks."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from downloader.sim.common import max_in_window


@dataclass(frozen=True)
class ApiCall:
    t: float
    path: str
    status_code: int
    status: str | None
    reason: str


@dataclass(frozen=True)
class DownloadRecord:
    t: float
    part_key: str
    index: int
    range_start: int | None
    status_code: int
    bytes_sent: int
    outcome: str


@dataclass
class SimStats:
    api_calls: list[ApiCall] = field(default_factory=list)
    downloads: list[DownloadRecord] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add_call(self, call: ApiCall) -> None:
        with self._lock:
            self.api_calls.append(call)

    def add_download(self, record: DownloadRecord) -> None:
        with self._lock:
            self.downloads.append(record)

    def clear(self) -> None:
        with self._lock:
            self.api_calls.clear()
            self.downloads.clear()

    def max_calls_in_any_window(self, seconds: float = 1.0) -> int:
        """Most API calls whose timestamps fit in one half-open window of `seconds`."""
        with self._lock:
            times = [c.t for c in self.api_calls]
        return max_in_window(times, seconds)

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            calls = [asdict(c) for c in self.api_calls]
            downloads = [asdict(d) for d in self.downloads]
        return {
            "api_calls": calls,
            "downloads": downloads,
            "max_calls_in_any_window": self.max_calls_in_any_window(),
        }
