"""Knobs that bend downloads: a compressing proxy, a huge header, a redirect loop, a stall."""

from __future__ import annotations

import asyncio
import gzip
import time

import aiohttp
import pytest
import simclient
from simclient import RunningSimulator, fetch, links_for, part_bytes

# The shared fixtures, bound here so that pytest finds them in this module.
start, sim, http = simclient.start, simclient.sim, simclient.http


async def test_gzip_transfer_compresses_again(sim: RunningSimulator, http: aiohttp.ClientSession):
    data = part_bytes(sim)
    link = (await links_for(http, sim))[0]
    sim.sim.config.faults.gzip_transfer = True
    status, headers, body = await fetch(http, link)  # aiohttp sends Accept-Encoding: gzip
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert "Content-Length" not in headers and headers["ETag"].startswith('W/"')
    assert body != data and gzip.decompress(body) == data  # one more layer, same bytes inside
    status, headers, ranged = await fetch(http, link, {"Range": "bytes=100-"})
    assert status == 206 and headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(ranged) == data[100:]
    for refusing in ("identity", "gzip;q=0, deflate", "br"):
        status, headers, body = await fetch(http, link, {"Accept-Encoding": refusing})
        assert "Content-Encoding" not in headers and body == data, refusing
    outcomes = [d.outcome for d in sim.sim.stats.downloads]
    assert outcomes == ["gzip_transfer", "gzip_transfer", "ok", "ok", "ok"]


async def test_huge_header(sim: RunningSimulator, http: aiohttp.ClientSession):
    data = part_bytes(sim)
    link = (await links_for(http, sim))[0]
    sim.sim.config.faults.huge_header = 1
    with pytest.raises(aiohttp.ClientResponseError, match="8190"):
        await fetch(http, link)  # aiohttp's default limit is 8,190 bytes per header
    sim.sim.config.faults.huge_header = 1
    async with aiohttp.ClientSession(auto_decompress=False, max_field_size=65536) as roomy:
        status, headers, body = await fetch(roomy, link)
    assert status == 200 and body == data and len(headers["X-Amz-Meta-Padding"]) > 8190
    assert (await fetch(http, link))[2] == data  # the counter is spent
    assert [d.outcome for d in sim.sim.stats.downloads] == ["huge_header", "huge_header", "ok"]


async def test_redirect_loop(sim: RunningSimulator, http: aiohttp.ClientSession):
    data = part_bytes(sim)
    caught, fresh = await links_for(http, sim)
    sim.sim.config.faults.redirect_loop = 1
    with pytest.raises(aiohttp.TooManyRedirects):
        await fetch(http, caught)
    async with http.get(caught, allow_redirects=False) as resp:  # still looping, to itself
        assert resp.status == 302 and caught.endswith(resp.headers["Location"])
    assert (await fetch(http, fresh))[2] != b"" and sim.sim.config.faults.redirect_loop == 0
    assert (await fetch(http, (await links_for(http, sim))[0]))[2] == data
    assert {d.outcome for d in sim.sim.stats.downloads} == {"redirect_loop", "ok"}


async def test_stall_then_the_rest(sim: RunningSimulator, http: aiohttp.ClientSession):
    data = part_bytes(sim)
    link = (await links_for(http, sim))[0]
    faults = sim.sim.config.faults
    faults.stall, faults.stall_after_bytes, faults.stall_seconds = 2, 1000, 0.6
    received = bytearray()
    timeout = aiohttp.ClientTimeout(sock_read=0.2)
    with pytest.raises(asyncio.TimeoutError):
        async with http.get(link, timeout=timeout) as resp:
            assert resp.status == 200
            async for chunk in resp.content.iter_any():
                received += chunk
    assert bytes(received) == data[:1000]  # headers and K bytes came, then nothing
    began = time.monotonic()
    status, _, body = await fetch(http, link)  # a patient client gets all of it, late
    assert (status, body) == (200, data) and time.monotonic() - began >= 0.55
    outcomes = [d.outcome for d in sim.sim.stats.downloads]
    assert outcomes == ["stalled", "stalled"]
