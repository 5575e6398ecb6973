"""The export-API simulator against a real aiohttp client on loopback: answers, links, faults."""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import pytest
import simclient
from simclient import (
    AI,
    HOUR,
    RunningSimulator,
    Ticker,
    fetch,
    insights,
    links_for,
    part_bytes,
)

from downloader.sim.raw.records import ApiCall, SimStats
from downloader.sim.raw.schema import ALL_DATA_TYPES, BEIJING

GZIP_ERRORS = (OSError, EOFError, zlib.error)  # gzip.BadGzipFile is an OSError

# The shared fixtures, bound here so that pytest finds them in this module.
start, sim, http = simclient.start, simclient.sim, simclient.http


# -- response shapes --------------------------------------------------------------------------


async def test_single_type_response_shape(sim: RunningSimulator, http: aiohttp.ClientSession):
    status, body, _ = await insights(http, sim, f"hour/page/{AI}/202406100800", expire=10)
    assert status == 200
    assert set(body) == {
        "status", "downloadLinks", "exportType", "dataType", "exportDate", "exportVersion",
        "requestTime", "errorMsg",
    }  # fmt: skip
    assert body["status"] == "FINISHED"
    assert (body["exportType"], body["dataType"], body["exportDate"]) == ("hour", "page", HOUR)
    assert (body["exportVersion"], body["errorMsg"]) == ("v2", "")
    assert body["requestTime"] == "2024-06-10 12:00"
    links = body["downloadLinks"]
    assert len(links) == 2 and len(set(links)) == 2
    assert all(link.startswith(f"{sim.url}/download/") for link in links)
    assert all("page" not in link and AI not in link and HOUR not in link for link in links)


async def test_all_types_response_shape(
    start: Callable[..., RunningSimulator], http: aiohttp.ClientSession
):
    sim = start(empty_types=("vstr", "ads_track_click"))
    status, body, _ = await insights(http, sim, f"day/{AI}/202406090000")
    assert status == 200 and body["status"] == "FINISHED"
    assert "dataType" not in body
    assert body["exportDate"] == "20240609"
    links = body["downloadLinks"]
    assert list(links) == list(ALL_DATA_TYPES)
    assert links["vstr"] == [] and links["ads_track_click"] == []
    assert all(len(links[t]) == 2 for t in ALL_DATA_TYPES if t not in ("vstr", "ads_track_click"))
    _, single, _ = await insights(http, sim, f"day/vstr/{AI}/20240609")
    assert (single["status"], single["downloadLinks"]) == ("FINISHED", [])


@pytest.mark.parametrize(
    ("path", "export_date"),
    [
        (f"hour/page/{AI}/202406100859", HOUR),  # minutes are ignored
        (f"hour/page/{AI}/{HOUR}", HOUR),  # 10 digits accepted
        (f"day/page/{AI}/20240609", "20240609"),  # 8 digits accepted for a day
        (f"day/page/{AI}/2024060923", "20240609"),
    ],
)
async def test_export_date_forms(
    sim: RunningSimulator, http: aiohttp.ClientSession, path: str, export_date: str
):
    status, body, _ = await insights(http, sim, path)
    assert (status, body["status"], body["exportDate"]) == (200, "FINISHED", export_date)


@pytest.mark.parametrize(
    ("path", "expire", "bad_value"),
    [
        (f"week/page/{AI}/{HOUR}00", 5, "week"),
        (f"hour/clicks/{AI}/{HOUR}00", 5, "clicks"),
        (f"hour/page/{AI}/2024130110", 5, "2024130110"),  # month 13
        (f"hour/page/{AI}/20240610", 5, "20240610"),  # an hour needs the hour
        (f"hour/page/{AI}/2024061025", 5, "2024061025"),
        (f"hour/page/{AI}/2024-06-10", 5, "2024-06-10"),
        (f"hour/page/{AI}/{HOUR}00", 0, "0"),
        (f"hour/page/{AI}/{HOUR}00", 10081, "10081"),
        (f"hour/page/{AI}/{HOUR}00", "1.5", "1.5"),
    ],
)
async def test_bad_parameters_answer_error(
    sim: RunningSimulator, http: aiohttp.ClientSession, path: str, expire: Any, bad_value: str
):
    status, body, _ = await insights(http, sim, path, expire)
    assert (status, body["status"]) == (200, "ERROR")
    assert body["errorMsg"] == f"请求参数不合法，{bad_value}"
    assert body["downloadLinks"] == []
    assert sim.sim.stats.api_calls[-1].reason == "bad_request"


async def test_unknown_path_shape_is_404(sim: RunningSimulator, http: aiohttp.ClientSession):
    status, _, _ = await insights(http, sim, f"hour/x/page/{AI}/{HOUR}")
    assert status == 404
    assert sim.sim.stats.api_calls[-1].reason == "not_found"


# -- auth, polling, timing --------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Token wrong"}, {"Authorization": "sim-token"}],
    ids=["missing", "wrong", "bare-token"],
)
async def test_bad_token_is_401(
    sim: RunningSimulator, http: aiohttp.ClientSession, headers: dict[str, str]
):
    sim.sim.config.faults.api_500 = 1
    status, body, _ = await insights(http, sim, f"hour/page/{AI}/{HOUR}", headers=headers)
    assert (status, body) == (401, {"message": "Unauthorized", "errors": []})
    assert sim.sim.stats.api_calls[-1].reason == "unauthorized"
    assert sim.sim.config.faults.api_500 == 1  # auth is checked before faults


async def test_token_none_accepts_anything(
    start: Callable[..., RunningSimulator], http: aiohttp.ClientSession
):
    sim = start(token=None)
    status, body, _ = await insights(http, sim, f"hour/page/{AI}/{HOUR}", headers={})
    assert (status, body["status"]) == (200, "FINISHED")


async def test_running_then_finished_per_partition(
    start: Callable[..., RunningSimulator], http: aiohttp.ClientSession
):
    sim = start(running_polls=2)
    path = f"hour/page/{AI}/{HOUR}00"
    seen = [(await insights(http, sim, path, expire))[1]["status"] for expire in (5, 60, 5)]
    assert seen == ["RUNNING", "RUNNING", "FINISHED"]
    other = await insights(http, sim, f"hour/visit/{AI}/{HOUR}00")
    assert other[1]["status"] == "RUNNING"
    assert [c.reason for c in sim.sim.stats.api_calls] == ["running", "running", "ok", "running"]


@pytest.mark.parametrize(
    ("path", "ready"),
    [
        (f"hour/page/{AI}/2024061011", datetime(2024, 6, 10, 12, 30, tzinfo=BEIJING)),
        (f"hour/page/{AI}/2024061022", datetime(2024, 6, 10, 23, 30, tzinfo=BEIJING)),
        (f"hour/page/{AI}/2024061023", datetime(2024, 6, 11, 1, 0, tzinfo=BEIJING)),  # night
        (f"hour/page/{AI}/2024061100", datetime(2024, 6, 11, 2, 0, tzinfo=BEIJING)),  # night
        (f"hour/page/{AI}/2024061101", datetime(2024, 6, 11, 3, 0, tzinfo=BEIJING)),  # night
        (f"hour/page/{AI}/2024061102", datetime(2024, 6, 11, 3, 30, tzinfo=BEIJING)),
        (f"day/{AI}/20240610", datetime(2024, 6, 11, 4, 0, tzinfo=BEIJING)),
    ],
)
async def test_not_due_until_ready(
    sim: RunningSimulator, http: aiohttp.ClientSession, path: str, ready: datetime
):
    sim.sim.set_now(ready - timedelta(minutes=1))
    status, body, _ = await insights(http, sim, path)
    assert (status, body["status"]) == (200, "NOT_EXISTS")
    assert sim.sim.stats.api_calls[-1].reason == "not_due"
    sim.sim.set_now(ready)
    assert (await insights(http, sim, path))[1]["status"] == "FINISHED"


async def test_retention_window(sim: RunningSimulator, http: aiohttp.ClientSession):
    # NOW - 15 days = 2024-05-26 12:00 Beijing: the 11:00 hour starts before it, 12:00 does not.
    _, body, _ = await insights(http, sim, f"hour/page/{AI}/2024052611")
    assert body["status"] == "NOT_EXISTS"
    assert sim.sim.stats.api_calls[-1].reason == "retention"
    _, body, _ = await insights(http, sim, f"hour/page/{AI}/2024052612")
    assert body["status"] == "FINISHED"


# -- links --------------------------------------------------------------------------------------


async def test_download_matches_expected_parts(sim: RunningSimulator, http: aiohttp.ClientSession):
    expected = sim.sim.expected_parts(AI, "hour", "page", HOUR)
    first, second = await links_for(http, sim), await links_for(http, sim)
    assert not set(first) & set(second)  # fresh link text on every issuance
    for links in (first, second):
        for part, link in zip(expected, links, strict=True):
            status, headers, data = await fetch(http, link)
            assert status == 200
            assert "Content-Encoding" not in headers
            assert headers["Content-Type"] == "application/octet-stream"
            assert int(headers["Content-Length"]) == part.size == len(data)
            assert hashlib.sha256(data).hexdigest() == part.sha256
    assert [d.outcome for d in sim.sim.stats.downloads] == ["ok"] * 4


async def test_expired_link_is_403(
    start: Callable[..., RunningSimulator], http: aiohttp.ClientSession
):
    tick = Ticker()
    sim = start(monotonic=tick)
    link = (await links_for(http, sim, expire=1))[0]
    tick.advance(59)
    assert (await fetch(http, link))[0] == 200
    tick.advance(2)
    status, headers, body = await fetch(http, link)
    assert status == 403
    assert headers["Content-Type"].startswith("application/xml")
    assert b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>" in body
    assert sim.sim.stats.downloads[-1].outcome == "expired"


async def test_link_ttl_override(
    start: Callable[..., RunningSimulator], http: aiohttp.ClientSession
):
    tick = Ticker()
    sim = start(link_ttl_seconds=10, monotonic=tick)
    link = (await links_for(http, sim, expire=60))[0]
    tick.advance(11)
    assert (await fetch(http, link))[0] == 403


async def test_tampered_link_is_403(sim: RunningSimulator, http: aiohttp.ClientSession):
    link = (await links_for(http, sim))[0]
    base, _, query = link.partition("?")
    flipped = query[:-1] + ("0" if query[-1] != "0" else "1")
    for bad in (f"{base}?{flipped}", f"{base[:-2]}AA?{query}", base):
        status, _, body = await fetch(http, bad)
        assert status == 403 and b"SignatureDoesNotMatch" in body
    assert [d.outcome for d in sim.sim.stats.downloads] == ["bad_signature"] * 3


async def test_range_requests(sim: RunningSimulator, http: aiohttp.ClientSession):
    data = part_bytes(sim)
    link = (await links_for(http, sim))[0]
    status, headers, body = await fetch(http, link, {"Range": "bytes=100-199"})
    assert (status, body) == (206, data[100:200])
    assert headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    status, _, body = await fetch(http, link, {"Range": "bytes=-50"})
    assert (status, body) == (206, data[-50:])
    status, headers, _ = await fetch(http, link, {"Range": f"bytes={len(data)}-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(data)}"
    # A 416 still records where the client asked to start.
    assert [d.range_start for d in sim.sim.stats.downloads] == [100, len(data) - 50, len(data)]
    assert sim.sim.stats.downloads[-1].outcome == "range_not_satisfiable"


# -- faults -------------------------------------------------------------------------------------


async def test_fault_api_500(sim: RunningSimulator, http: aiohttp.ClientSession):
    sim.sim.config.faults.api_500 = 1
    assert (await insights(http, sim, f"hour/page/{AI}/{HOUR}"))[0] == 500
    assert (await insights(http, sim, f"hour/page/{AI}/{HOUR}"))[0] == 200
    assert [c.reason for c in sim.sim.stats.api_calls] == ["fault_500", "ok"]


async def test_fault_api_429_has_retry_after(sim: RunningSimulator, http: aiohttp.ClientSession):
    sim.sim.config.faults.api_429 = 2
    sim.sim.config.faults.retry_after_seconds = 2.5
    for _ in range(2):
        status, _, headers = await insights(http, sim, f"hour/page/{AI}/{HOUR}")
        assert (status, headers["Retry-After"]) == (429, "2.5")
    assert (await insights(http, sim, f"hour/page/{AI}/{HOUR}"))[0] == 200
    assert sim.sim.stats.api_calls[0].reason == "fault_429"


async def test_fault_api_error(sim: RunningSimulator, http: aiohttp.ClientSession):
    sim.sim.config.faults.api_error = 1
    _, body, _ = await insights(http, sim, f"hour/page/{AI}/{HOUR}")
    assert (body["status"], body["errorMsg"]) == ("ERROR", "下载出错，请您稍后重试")
    assert (await insights(http, sim, f"hour/page/{AI}/{HOUR}"))[1]["status"] == "FINISHED"


async def test_fault_download_500(sim: RunningSimulator, http: aiohttp.ClientSession):
    link = (await links_for(http, sim))[0]
    sim.sim.config.faults.download_500 = 1
    assert (await fetch(http, link))[0] == 500
    assert (await fetch(http, link))[0] == 200
    assert [d.outcome for d in sim.sim.stats.downloads] == ["fault_500", "ok"]


async def test_fault_drop_then_resume_with_range(
    sim: RunningSimulator, http: aiohttp.ClientSession
):
    data = part_bytes(sim)
    link = (await links_for(http, sim))[0]
    sim.sim.config.faults.drop = 1
    sim.sim.config.faults.drop_after_bytes = 4096
    received = bytearray()
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.get(link) as resp:
            assert int(resp.headers["Content-Length"]) == len(data)
            async for chunk in resp.content.iter_any():
                received += chunk
    assert bytes(received) == data[:4096]
    status, _, rest = await fetch(http, link, {"Range": f"bytes={len(received)}-"})
    assert status == 206
    assert hashlib.sha256(bytes(received) + rest).hexdigest() == hashlib.sha256(data).hexdigest()
    first, second = sim.sim.stats.downloads
    assert (first.outcome, first.bytes_sent, second.outcome) == ("dropped", 4096, "ok")


async def test_fault_drop_on_short_range_still_breaks(
    sim: RunningSimulator, http: aiohttp.ClientSession
):
    link = (await links_for(http, sim))[0]
    sim.sim.config.faults.drop = 1  # drop_after_bytes (64 KiB) is longer than the range
    with pytest.raises(aiohttp.ClientPayloadError):
        await fetch(http, link, {"Range": "bytes=0-99"})
    assert sim.sim.stats.downloads[-1].bytes_sent == 99


async def test_fault_corrupt(sim: RunningSimulator, http: aiohttp.ClientSession):
    expected = sim.sim.expected_parts(AI, "hour", "page", HOUR)[0]
    link = (await links_for(http, sim))[0]
    sim.sim.config.faults.corrupt = 1
    status, headers, data = await fetch(http, link)
    assert status == 200 and int(headers["Content-Length"]) == expected.size == len(data)
    assert hashlib.sha256(data).hexdigest() != expected.sha256
    with pytest.raises(GZIP_ERRORS):
        gzip.decompress(data)
    assert sim.sim.stats.downloads[-1].outcome == "corrupt"
    assert hashlib.sha256((await fetch(http, link))[2]).hexdigest() == expected.sha256


async def test_throttled_download_is_still_correct(
    sim: RunningSimulator, http: aiohttp.ClientSession
):
    data = part_bytes(sim)
    link = (await links_for(http, sim))[0]
    sim.sim.config.faults.throttle_bytes_per_second = 400_000
    status, headers, body = await fetch(http, link, {"Range": "bytes=1000-"})
    assert (status, body) == (206, data[1000:])
    assert headers["Content-Range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
    record = sim.sim.stats.downloads[-1]
    assert (record.outcome, record.bytes_sent) == ("ok", len(data) - 1000)


async def test_enforced_rate_limit(
    start: Callable[..., RunningSimulator], http: aiohttp.ClientSession
):
    sim = start()
    sim.sim.config.faults.enforce_rate_limit = True
    results = [await insights(http, sim, f"hour/page/{AI}/{HOUR}") for _ in range(6)]
    limited = [r for r in results if r[0] == 429]
    assert limited and all(r[2]["Retry-After"] == "1" for r in limited)
    admitted = SimStats(api_calls=[c for c in sim.sim.stats.api_calls if c.status_code == 200])
    assert admitted.max_calls_in_any_window(1.0) <= 2
    assert {c.reason for c in sim.sim.stats.api_calls} == {"ok", "rate_limited"}


def test_max_calls_in_any_window():
    stats = SimStats(api_calls=[ApiCall(t, "/p", 200, "FINISHED", "ok") for t in
                                (0.0, 0.2, 0.9, 1.0, 1.1, 5.0)])  # fmt: skip
    assert stats.max_calls_in_any_window(1.0) == 4  # 0.2, 0.9, 1.0, 1.1
    assert stats.max_calls_in_any_window(0.15) == 2
    assert stats.to_json()["max_calls_in_any_window"] == 4


# -- control endpoints ----------------------------------------------------------------------


async def test_control_endpoints(sim: RunningSimulator, http: aiohttp.ClientSession):
    async with http.post(f"{sim.url}/_sim/faults", json={"api_500": 1}) as resp:
        assert resp.status == 200 and (await resp.json())["api_500"] == 1
    assert (await insights(http, sim, f"hour/page/{AI}/{HOUR}"))[0] == 500
    async with http.post(f"{sim.url}/_sim/faults", json={"nope": 1}) as resp:
        assert resp.status == 400
    async with http.post(f"{sim.url}/_sim/clock", json={"now": "2024-06-10T09:15:00+08:00"}):
        pass
    _, body, _ = await insights(http, sim, f"hour/page/{AI}/{HOUR}")
    assert (body["status"], body["requestTime"]) == ("NOT_EXISTS", "2024-06-10 09:15")
    async with http.post(f"{sim.url}/_sim/clock", json={"now": None}) as resp:
        assert resp.status == 200
    assert sim.sim.now().year >= 2025  # back on the real clock
    async with http.get(f"{sim.url}/_sim/parts/{AI}/hour/page/{HOUR}00") as resp:
        listed = await resp.json()
    expected = sim.sim.expected_parts(AI, "hour", "page", HOUR)
    assert listed == [{"index": p.index, "size": p.size, "sha256": p.sha256} for p in expected]
    async with http.get(f"{sim.url}/_sim/stats") as resp:
        stats = await resp.json()
    assert [c["reason"] for c in stats["api_calls"]] == ["fault_500", "not_due"]
