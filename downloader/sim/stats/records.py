"""What the statistics simulator saw: every API call and every link download, for assertions.

API calls count towards the rate limit whatever their answer (exports-spec.md §0); link
downloads do not, so they are kept apart.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from downloader.sim.common import max_in_window


@dataclass(frozen=True)
class StatsCall:
    t: float  # time.time() when the request arrived
    path: str
    query: str
    item: str | None  # the item or dashboard id in the path, if any
    status_code: int
    status: str | None  # the V3 `status` word answered, if any
    reason: str  # ok, doing, result, done, failed, bad_request, unauthorized, not_found, ...
    early: bool = False  # a windowed day asked before it was due


@dataclass(frozen=True)
class LinkDownload:
    t: float
    path: str
    index: int
    range_start: int | None
    status_code: int
    bytes_sent: int
    outcome: str  # ok, dropped, expired, bad_signature, fault_500, range_not_satisfiable




@dataclass
class StatsSimStats:
    calls: list[StatsCall] = field(default_factory=list)
    downloads: list[LinkDownload] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add_call(self, call: StatsCall) -> None:
        with self._lock:
            self.calls.append(call)

    def add_download(self, record: LinkDownload) -> None:
        with self._lock:
            self.downloads.append(record)

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()
            self.downloads.clear()

    def calls_with(self, reason: str) -> list[StatsCall]:
        with self._lock:
            return [c for c in self.calls if c.reason == reason]

    def max_calls_in_any_window(self, seconds: float = 1.0, item: str | None = None) -> int:
        """Most API calls (of one item when given) in one half-open window of `seconds`."""
        with self._lock:
            times = [c.t for c in self.calls if item is None or c.item == item]
        return max_in_window(times, seconds)

    def max_calls_per_item_in_any_window(self, seconds: float = 1.0) -> dict[str, int]:
        """The same measure for every item id that was called."""
        with self._lock:
            per_item: dict[str, list[float]] = {}
            for c in self.calls:
                if c.item is not None:
                    per_item.setdefault(c.item, []).append(c.t)
        return {item: max_in_window(times, seconds) for item, times in per_item.items()}

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            calls = [asdict(c) for c in self.calls]
            downloads = [asdict(d) for d in self.downloads]
        return {
            "calls": calls,
            "downloads": downloads,
            "max_calls_in_any_window": self.max_calls_in_any_window(),
            "max_calls_per_item_in_any_window": self.max_calls_per_item_in_any_window(),
        }
