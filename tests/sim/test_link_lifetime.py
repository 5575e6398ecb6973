"""Link lifetimes run in real seconds, whatever the simulator's export clock does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import aiohttp
import simclient
from simclient import NOW, RunningSimulator, Ticker, fetch, links_for

# The shared fixtures, bound here so that pytest finds them in this module.
start, sim, http = simclient.start, simclient.sim, simclient.http


async def test_fast_export_clock_does_not_expire_links(
    sim: RunningSimulator, http: aiohttp.ClientSession
):
    link = (await links_for(http, sim, expire=5))[0]
    sim.sim.set_now(NOW + timedelta(days=1))  # a rehearsal clock far ahead of real time
    assert (await fetch(http, link))[0] == 200


async def test_link_ttl_seconds_are_real_seconds(
    start: Callable[..., RunningSimulator], http: aiohttp.ClientSession
):
    sim = start(link_ttl_seconds=0.3)
    link = (await links_for(http, sim, expire=60))[0]
    assert (await fetch(http, link))[0] == 200
    await asyncio.sleep(0.4)
    assert (await fetch(http, link))[0] == 403
    assert sim.sim.stats.downloads[-1].outcome == "expired"


async def test_expire_minutes_count_on_the_monotonic_clock(
    start: Callable[..., RunningSimulator], http: aiohttp.ClientSession
):
    tick = Ticker()
    sim = start(monotonic=tick)
    short, long = (await links_for(http, sim, expire=2))[0], (await links_for(http, sim))[0]
    tick.advance(121)
    assert [(await fetch(http, x))[0] for x in (short, long)] == [403, 200]
    tick.advance(180)  # 301 s > 5 min
    assert (await fetch(http, long))[0] == 403
