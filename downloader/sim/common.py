"""What every simulator has alike: a clock that tests may set, fault counters and their control
endpoints, Range handling, and the sliding-window count the rate-limit tests read."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, fields
from datetime import UTC, datetime
from typing import Any

from aiohttp import web


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


def take_fault(faults: Any, lock: threading.Lock, name: str) -> bool:
    """Consume one count of fault counter ``name``; True if it fired."""
    with lock:
        left = getattr(faults, name)
        if left > 0:
            setattr(faults, name, left - 1)
            return True
        return False


def change_faults(faults: Any, lock: threading.Lock, changes: Any) -> dict[str, Any] | None:
    """Apply ``POST /_sim/faults``: the knobs after the change, or None when ``changes`` is not
    an object of known knob names (nothing is changed then)."""
    known = {f.name for f in fields(faults)}
    if not isinstance(changes, dict) or not set(changes) <= known:
        return None
    with lock:
        for name, value in changes.items():
            setattr(faults, name, value)
        return asdict(faults)


def fault_error(faults: Any) -> dict[str, str]:
    known = sorted(f.name for f in fields(faults))
    return {"error": f"expected an object with keys from {known}"}


def clock_setting(body: Any) -> datetime | None:
    """The "now" of ``POST /_sim/clock`` (None: back to the configured clock); ValueError when
    the body is not ``{"now": iso8601-with-offset | null}``."""
    try:
        raw = body["now"]
        return None if raw is None else datetime.fromisoformat(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"expected {{'now': iso8601-with-offset | null}}: {exc}") from None


def resolve_range(request: web.Request, size: int) -> tuple[int, int] | None:
    """The [start, stop) a Range header asks for; None without one.

    Raises ValueError when the range is malformed or not satisfiable (416).
    """
    rng = request.http_range
    if rng.start is None:
        return None
    if rng.start < 0:
        start, stop = max(0, size + rng.start), size
    else:
        start, stop = rng.start, min(size, rng.stop if rng.stop is not None else size)
    if start >= size:
        raise ValueError("range not satisfiable")
    return start, stop
