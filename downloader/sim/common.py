"""What every simulator has alike: a clock that tests may set, and the sliding-window count
the rate-limit tests read."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime


class SimClock:
    """Real time, or the configured clock (a fake one shared with the downloader), unless a
    test set "now" by hand."""

    def __init__(self, clock: Callable[[], datetime] | None) -> None:
        self._clock = clock
        self._override: datetime | None = None

    def now(self) -> datetime:
        if self._override is not None:
            return self._override
        if self._clock is not None:
            return self._clock()
        return datetime.now(UTC)

    def set_now(self, now: datetime | None) -> None:
        if now is not None and now.tzinfo is None:
            raise ValueError("set_now needs an aware datetime")
        self._override = now


def max_in_window(times: Iterable[float], seconds: float = 1.0) -> int:
    """Most timestamps that fit in one half-open window of ``seconds``."""
    ordered = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(ordered):
        while t - ordered[lo] >= seconds:
            lo += 1
        best = max(best, hi - lo + 1)
    return best
