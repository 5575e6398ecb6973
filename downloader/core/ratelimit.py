"""One limiter shared by every API call of the process: never more than N calls in any window.

A call holds its slot from the moment it is sent until its answer is in, and the window is
counted from that answer. The server sees each call at some instant between sending and
answering, so this bound holds on the server's clock too, whatever the latency.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager


class RateLimiter:
    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        # 2/s means 2 calls per 1 s window; 0.5/s means 1 call per 2 s window.
        self.max_calls = max(1, math.floor(per_second))
        self.window = self.max_calls / per_second
        self._clock = clock
        self._finished: deque[float] = deque()
        self._in_flight = 0
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self.calls = 0
        self._paused_until = 0.0

    def pause(self, seconds: float) -> None:
        """The server said Retry-After: no call of this process starts before then."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    def _wait_time(self) -> float:
        now = self._clock()
        if now < self._paused_until:
            return self._paused_until - now
        while self._finished and now - self._finished[0] >= self.window:
            self._finished.popleft()
        if self._in_flight + len(self._finished) < self.max_calls:
            return 0.0
        if self._finished and self._in_flight < self.max_calls:
            return self.window - (now - self._finished[0])
        return math.inf  # all slots are in flight: wait for one to finish

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._lock:  # callers queue up in order
            while (wait := self._wait_time()) > 0:
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(),
                                           None if wait == math.inf else wait)
                except TimeoutError:
                    pass
            self._in_flight += 1
            self.calls += 1
        try:
            yield
        finally:
            # Synchronous on purpose: it must run even inside a cancelled scope.
            self._in_flight -= 1
            self._finished.append(self._clock())
            self._changed.set()


class RateBudgets:
    """One limiter per API host, shared by every source that calls that host: two sources on
    one host (raw exports and statistics share ``api.base_url``) share its budget."""

    def __init__(self, per_second: float) -> None:
        self.per_second = per_second
        self._limiters: dict[str, RateLimiter] = {}

    def for_host(self, base_url: str) -> RateLimiter:
        host = base_url.split("://", 1)[-1].split("/", 1)[0].lower()
        limiter = self._limiters.get(host)
        if limiter is None:
            limiter = self._limiters[host] = RateLimiter(self.per_second)
        return limiter


class Slots:
    """At most ``size`` holders at once, like a semaphore, but a waiter that asks with
    ``resuming=True`` goes before every waiter that does not: a part that already holds its
    storage (an open file, an upload buffer) gets the next slot before a part that would open
    new storage, so the parts that are started but not finished stay about ``size``."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = 0

    @asynccontextmanager
    async def slot(self, resuming: bool = False) -> AsyncIterator[None]:
        await self._acquire(0 if resuming else 1)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, rank: int) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._seq += 1
        heapq.heappush(self._waiters, (rank, self._seq, future))
        try:
            await future
        except BaseException:
            if future.done() and not future.cancelled():
                self._release()  # granted while being cancelled: pass it on
            else:
                self._waiters = [w for w in self._waiters if w[2] is not future]
                heapq.heapify(self._waiters)
            raise

    def _release(self) -> None:
        while self._waiters:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)
                return
        self._free += 1
