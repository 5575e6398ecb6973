"""Download slots (downloader/core/ratelimit.py Slots): a bound like a semaphore, and parts that
already hold storage get the next slot before parts that would open more."""

from __future__ import annotations

import asyncio

from downloader.core.ratelimit import Slots


async def test_bound_and_resuming_waiters_first() -> None:
    slots = Slots(2)
    order: list[str] = []
    release = asyncio.Event()
    holding = 0
    most = 0

    async def part(name: str, resuming: bool, delay: float) -> None:
        nonlocal holding, most
        await asyncio.sleep(delay)
        async with slots.slot(resuming=resuming):
            holding += 1
            most = max(most, holding)
            order.append(name)
            await release.wait()
            holding -= 1

    first = [asyncio.create_task(part(f"start{i}", False, 0)) for i in range(2)]
    await asyncio.sleep(0.01)
    # Eight new parts queue up, then one part that broke off and wants to go on.
    new = [asyncio.create_task(part(f"new{i}", False, 0.001 * i)) for i in range(8)]
    await asyncio.sleep(0.02)
    resumed = asyncio.create_task(part("resumed", True, 0))
    await asyncio.sleep(0.01)
    release.set()
    await asyncio.gather(*first, *new, resumed)
    assert most <= 2
    assert order[:2] == ["start0", "start1"]
    assert order[2] == "resumed", order
    assert order[3:] == [f"new{i}" for i in range(8)]  # first come, first served


async def test_a_cancelled_waiter_does_not_leak_its_slot() -> None:
    slots = Slots(1)
    async with slots.slot():
        waiter = asyncio.create_task(slots._acquire(1))
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
    async with asyncio.timeout(1):  # the slot is free again
        async with slots.slot():
            pass
