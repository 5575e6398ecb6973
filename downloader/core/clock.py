"""The scheduler's notion of "now": the system clock, or a fake one for tests and rehearsals.

``GIO_DOWNLOADER_FAKE_NOW`` (ISO 8601 with offset) starts the clock at that moment and
``GIO_DOWNLOADER_CLOCK_RATE`` makes it run faster (3600 = an hour per second). Only the
scheduling decisions (what is due, what is past its grace) use this clock; timeouts and backoff
stay in real seconds.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Protocol

from downloader.core.constants import BEIJING

FAKE_NOW_ENV = "GIO_DOWNLOADER_FAKE_NOW"
CLOCK_RATE_ENV = "GIO_DOWNLOADER_CLOCK_RATE"


class Clock(Protocol):
    def now(self) -> datetime: ...

    def real_seconds_until(self, moment: datetime) -> float: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(BEIJING)

    def real_seconds_until(self, moment: datetime) -> float:
        return max(0.0, (moment - self.now()).total_seconds())


class ScaledClock:
    """Starts at ``start`` and advances ``rate`` times faster than real time."""

    def __init__(self, start: datetime, rate: float = 1.0) -> None:
        if start.tzinfo is None:
            raise ValueError("the fake start time needs a UTC offset")
        if rate <= 0:
            raise ValueError("the clock rate must be positive")
        self.start = start.astimezone(BEIJING)
        self.rate = rate
        self._t0 = time.monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.monotonic() - self._t0) * self.rate)

    def real_seconds_until(self, moment: datetime) -> float:
        return max(0.0, (moment - self.now()).total_seconds() / self.rate)


def clock_from_env(environ: Mapping[str, str] | None = None) -> Clock:
    env = os.environ if environ is None else environ
    fake = env.get(FAKE_NOW_ENV)
    rate_text = env.get(CLOCK_RATE_ENV)
    if not fake and not rate_text:
        return SystemClock()
    try:
        start = datetime.fromisoformat(fake) if fake else datetime.now(BEIJING)
        rate = float(rate_text) if rate_text else 1.0
        return ScaledClock(start, rate)
    except ValueError as exc:
        raise ValueError(f"{FAKE_NOW_ENV}/{CLOCK_RATE_ENV}: {exc}") from None


async def sleep_until(clock: Clock, moment: datetime, wake: asyncio.Event,
                      cap_seconds: float = 60.0) -> None:
    """Sleep until ``moment`` on ``clock``, or until ``wake`` is set, checking at least every
    ``cap_seconds`` of real time (so a suspended machine or a stepped clock is noticed)."""
    delay = min(cap_seconds, clock.real_seconds_until(moment))
    if delay <= 0:
        return
    try:
        await asyncio.wait_for(wake.wait(), delay)
    except TimeoutError:
        pass
