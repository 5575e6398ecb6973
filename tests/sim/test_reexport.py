"""Re-exports: a partition's parts become a new version behind the same links (validators,
If-Range per RFC 9110 §13.1.5, and the splice an unchecked resume makes)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import aiohttp
import simclient
from simclient import AI, HOUR, RunningSimulator, fetch, links_for, part_bytes

# The shared fixtures, bound here so that pytest finds them in this module.
start, sim, http = simclient.start, simclient.sim, simclient.http


async def reexport(
    http: aiohttp.ClientSession, sim: RunningSimulator, **extra: Any
) -> tuple[int, Any]:
    body = {"ai": AI, "export_type": "hour", "data_type": "page", "label": HOUR} | extra
    async with http.post(f"{sim.url}/_sim/reexport", json=body) as resp:
        return resp.status, await resp.json()


async def test_downloads_carry_strong_validators(
    sim: RunningSimulator, http: aiohttp.ClientSession
):
    expected = sim.sim.expected_parts(AI, "hour", "page", HOUR)
    for part, link in zip(expected, await links_for(http, sim), strict=True):
        status, headers, data = await fetch(http, link)
        assert status == 200 and hashlib.sha256(data).hexdigest() == part.sha256
        assert headers["ETag"] == f'"{part.sha256}"'
        assert parsedate_to_datetime(headers["Last-Modified"]).year == 2024


async def test_reexport_serves_new_bytes_behind_old_links(
    sim: RunningSimulator, http: aiohttp.ClientSession
):
    old = sim.sim.expected_parts(AI, "hour", "page", HOUR)
    link = (await links_for(http, sim))[0]
    _, old_headers, _ = await fetch(http, link)
    status, listed = await reexport(http, sim)
    new = sim.sim.expected_parts(AI, "hour", "page", HOUR)
    assert status == 200
    assert listed == [{"index": p.index, "size": p.size, "sha256": p.sha256} for p in new]
    assert {p.sha256 for p in new}.isdisjoint(p.sha256 for p in old)
    status, headers, data = await fetch(http, link)  # the old link, the new version
    assert status == 200 and hashlib.sha256(data).hexdigest() == new[0].sha256
    assert headers["ETag"] == f'"{new[0].sha256}"' != old_headers["ETag"]
    modified = parsedate_to_datetime(headers["Last-Modified"])
    assert modified > parsedate_to_datetime(old_headers["Last-Modified"])


async def test_if_range_per_rfc9110(sim: RunningSimulator, http: aiohttp.ClientSession):
    old = part_bytes(sim)
    link = (await links_for(http, sim))[0]
    _, headers, _ = await fetch(http, link)
    old_etag, old_date = headers["ETag"], headers["Last-Modified"]
    for validator in (old_etag, old_date):  # unchanged: the range is honoured
        status, _, body = await fetch(http, link, {"Range": "bytes=100-", "If-Range": validator})
        assert (status, body) == (206, old[100:])
    weak = {"Range": "bytes=100-", "If-Range": "W/" + old_etag}  # weak tags never match
    assert (await fetch(http, link, weak))[0] == 200
    await reexport(http, sim)
    new = part_bytes(sim)
    for validator in (old_etag, old_date):  # changed: 200 with the whole new body
        status, headers, body = await fetch(
            http, link, {"Range": "bytes=100-", "If-Range": validator}
        )
        assert (status, body) == (200, new) and "Content-Range" not in headers
    assert sim.sim.stats.downloads[-1].range_start is None


async def test_unchecked_resume_splices_two_versions(
    sim: RunningSimulator, http: aiohttp.ClientSession
):
    old = part_bytes(sim)
    link = (await links_for(http, sim))[0]
    _, _, head = await fetch(http, link, {"Range": "bytes=0-4095"})
    await reexport(http, sim)
    new = part_bytes(sim)
    status, _, tail = await fetch(http, link, {"Range": "bytes=4096-"})  # no If-Range
    assert status == 206 and tail == new[4096:]
    spliced = head + tail
    assert spliced != old and spliced != new  # the bug a resume without If-Range makes


async def test_reexport_with_a_new_part_count(
    start: Callable[..., RunningSimulator], http: aiohttp.ClientSession
):
    sim = start(parts_per_type=3)
    old_links = await links_for(http, sim)
    status, listed = await reexport(http, sim, parts=1)
    assert status == 200 and len(listed) == 1
    assert len(sim.sim.expected_parts(AI, "hour", "page", HOUR)) == 1
    assert len(await links_for(http, sim)) == 1
    assert (await fetch(http, old_links[0]))[0] == 200
    status, _, body = await fetch(http, old_links[2])  # that object is gone
    assert status == 404 and b"NoSuchKey" in body
    status, listed = await reexport(http, sim, parts=4)
    assert len(listed) == 4 and len(await links_for(http, sim)) == 4


async def test_reexport_rejects_bad_requests(sim: RunningSimulator, http: aiohttp.ClientSession):
    for extra in ({"parts": 0}, {"data_type": "clicks"}, {"label": "2024-06-10"}, {"ai": 7}):
        status, body = await reexport(http, sim, **extra)
        assert status == 400 and "error" in body
    async with http.post(f"{sim.url}/_sim/reexport", data=b"not json") as resp:
        assert resp.status == 400


def test_versions_keep_distinct_last_modified_seconds(
    start: Callable[..., RunningSimulator],
):
    sim = start()
    stamps = []
    for _ in range(3):  # the export clock is frozen: each version still gets its own second
        sim.sim.reexport(AI, "hour", "page", HOUR)
        partition = sim.sim._partition("hour", "page", HOUR)
        stamps.append(sim.sim._version(AI, partition, "page")[1].modified)
    assert len({format_datetime(s, usegmt=True) for s in stamps}) == 3
