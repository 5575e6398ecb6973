"""RateLimiter (downloader/ratelimit.py): never more than max_calls API calls per window, the
window counted from each call's answer (API §2.9: at most 2 calls a second)."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from downloader.core.ratelimit import RateLimiter

EPSILON = 1e-6


@pytest.mark.parametrize(
    ("per_second", "max_calls", "window"),
    [
        (2, 2, 1.0),  # the vendor's limit
        (1, 1, 1.0),
        (4, 4, 1.0),
        (0.5, 1, 2.0),
        (0.25, 1, 4.0),
        (1.5, 1, 1 / 1.5),
        (2.5, 2, 0.8),
        (100, 100, 1.0),
    ],
)
def test_max_calls_and_window(per_second: float, max_calls: int, window: float) -> None:
    limiter = RateLimiter(per_second)
    assert limiter.max_calls == max_calls
    assert limiter.window == pytest.approx(window)
    # The long-run rate is the configured one.
    assert limiter.max_calls / limiter.window == pytest.approx(per_second)


@pytest.mark.parametrize("per_second", [0, -1, -0.5])
def test_rejects_non_positive_rates(per_second: float) -> None:
    with pytest.raises(ValueError):
        RateLimiter(per_second)


async def _run_callers(limiter: RateLimiter, holds: list[float]) -> tuple[list[float],
                                                                         list[float], int]:
    starts: list[float] = []
    ends: list[float] = []
    in_flight = 0
    most_in_flight = 0

    async def call(hold: float) -> None:
        nonlocal in_flight, most_in_flight
        async with limiter.slot():
            starts.append(time.monotonic())
            in_flight += 1
            most_in_flight = max(most_in_flight, in_flight)
            await asyncio.sleep(hold)
            in_flight -= 1
            ends.append(time.monotonic())

    await asyncio.gather(*(call(h) for h in holds))
    return sorted(starts), sorted(ends), most_in_flight


def _assert_window_respected(limiter: RateLimiter, starts: list[float], ends: list[float]) -> None:
    """The (i + max_calls)-th start comes at least one window after the i-th end: of any
    max_calls + 1 calls, one had finished a whole window before the last one began."""
    n = limiter.max_calls
    assert len(starts) == len(ends)
    for i in range(len(starts) - n):
        assert starts[i + n] >= ends[i] + limiter.window - EPSILON, (i, starts, ends)


async def test_no_window_holds_more_than_max_calls() -> None:
    limiter = RateLimiter(4)  # 4 calls per 1 s window
    # Different latencies, so calls finish out of order; 10 callers need 3 windows (~2 s).
    holds = [0.0, 0.05, 0.01, 0.1, 0.02, 0.0, 0.08, 0.03, 0.0, 0.04]
    starts, ends, most_in_flight = await _run_callers(limiter, holds)
    assert len(starts) == 10
    assert limiter.calls == 10
    assert most_in_flight <= limiter.max_calls
    _assert_window_respected(limiter, starts, ends)


async def test_fractional_rate_one_call_per_two_seconds() -> None:
    limiter = RateLimiter(0.5)
    assert (limiter.max_calls, limiter.window) == (1, 2.0)
    starts, ends, most_in_flight = await _run_callers(limiter, [0.01, 0.0])
    assert most_in_flight == 1
    assert starts[1] >= ends[0] + 2.0 - EPSILON


class SteppingClock:
    """A clock that jumps a long way on every read, so the window never holds anyone back:
    only slots still held can block a caller."""

    def __init__(self) -> None:
        self._ticks = itertools.count(step=1000)

    def __call__(self) -> float:
        return float(next(self._ticks))


async def _hold(limiter: RateLimiter, entered: asyncio.Event) -> None:
    async with limiter.slot():
        entered.set()
        await asyncio.Event().wait()  # until cancelled


async def _enter(limiter: RateLimiter, entered: asyncio.Event) -> None:
    async with limiter.slot():
        entered.set()


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_cancelled_holder_releases_its_slot() -> None:
    limiter = RateLimiter(1, clock=SteppingClock())  # one slot
    holder_in, waiter_in = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(_hold(limiter, holder_in))
    await holder_in.wait()
    waiter = asyncio.create_task(_enter(limiter, waiter_in))
    await _settle()
    assert not waiter_in.is_set()  # the only slot is taken

    holder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holder
    async with asyncio.timeout(5):  # a leaked slot would block the waiter forever
        await waiter_in.wait()
        await waiter
    async with asyncio.timeout(5):  # and the limiter keeps working afterwards
        await _enter(limiter, asyncio.Event())
    assert limiter.calls == 3


async def test_cancelled_waiter_does_not_take_a_slot() -> None:
    limiter = RateLimiter(1, clock=SteppingClock())
    holder_in, first_in, second_in = asyncio.Event(), asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(_hold(limiter, holder_in))
    await holder_in.wait()
    first = asyncio.create_task(_enter(limiter, first_in))  # waits inside the limiter
    second = asyncio.create_task(_enter(limiter, second_in))  # queued behind it
    await _settle()

    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    holder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holder
    async with asyncio.timeout(5):
        await second
    assert second_in.is_set() and not first_in.is_set()
    assert limiter.calls == 2  # the holder and the second caller


async def test_exception_in_the_body_releases_the_slot() -> None:
    limiter = RateLimiter(1, clock=SteppingClock())
    with pytest.raises(RuntimeError):
        async with limiter.slot():
            raise RuntimeError("API call failed")
    async with asyncio.timeout(5):
        await _enter(limiter, asyncio.Event())
    assert limiter.calls == 2
