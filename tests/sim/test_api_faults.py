"""Knobs that bend `/v2/insights` answers, set over HTTP as another process would."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
import simclient
from simclient import AI, HEADERS, HOUR, RunningSimulator, insights

from downloader.sim.raw.schema import ALL_DATA_TYPES

# The shared fixtures, bound here so that pytest finds them in this module.
start, sim, http = simclient.start, simclient.sim, simclient.http

SINGLE = f"hour/page/{AI}/{HOUR}00"
ALL = f"hour/{AI}/{HOUR}00"


async def set_faults(http: aiohttp.ClientSession, sim: RunningSimulator, **knobs: Any) -> None:
    async with http.post(f"{sim.url}/_sim/faults", json=knobs) as resp:
        assert resp.status == 200, await resp.text()


async def test_finished_without_links(sim: RunningSimulator, http: aiohttp.ClientSession):
    await set_faults(http, sim, finished_without_links=2)
    for path in (SINGLE, ALL):
        status, body, _ = await insights(http, sim, path)
        assert (status, body["status"]) == (200, "FINISHED")
        assert "downloadLinks" not in body and body["exportDate"] == HOUR
    _, body, _ = await insights(http, sim, SINGLE)
    assert len(body["downloadLinks"]) == 2  # the counter is spent
    reasons = [c.reason for c in sim.sim.stats.api_calls]
    assert reasons == ["fault_without_links", "fault_without_links", "ok"]


@pytest.mark.parametrize(
    ("kind", "single", "all_types"),
    [
        (
            "string",
            lambda v: isinstance(v, str) and "/download/" in v,
            lambda v: isinstance(v, str),
        ),
        (
            "object",
            lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
            lambda v: set(v) == set(ALL_DATA_TYPES) and all(isinstance(x, str) for x in v.values()),
        ),
    ],
)
async def test_links_wrong_shape(
    sim: RunningSimulator, http: aiohttp.ClientSession, kind: str, single: Any, all_types: Any
):
    await set_faults(http, sim, links_wrong_shape=2, links_wrong_shape_kind=kind)
    _, body, _ = await insights(http, sim, SINGLE)
    assert body["status"] == "FINISHED" and single(body["downloadLinks"]), body["downloadLinks"]
    _, body, _ = await insights(http, sim, ALL)
    assert all_types(body["downloadLinks"]), body["downloadLinks"]
    _, body, _ = await insights(http, sim, SINGLE)
    assert isinstance(body["downloadLinks"], list)
    assert sim.sim.stats.api_calls[0].reason == f"fault_links_{kind}"


async def test_type_missing_hits_all_types_answers_only(
    sim: RunningSimulator, http: aiohttp.ClientSession
):
    await set_faults(http, sim, type_missing=1)
    _, body, _ = await insights(http, sim, SINGLE)  # a one-type answer is not counted
    assert len(body["downloadLinks"]) == 2
    _, body, _ = await insights(http, sim, ALL)
    assert body["status"] == "FINISHED"
    assert list(body["downloadLinks"]) == list(ALL_DATA_TYPES[1:])  # "visit" left out
    _, body, _ = await insights(http, sim, ALL)
    assert list(body["downloadLinks"]) == list(ALL_DATA_TYPES)
    assert [c.reason for c in sim.sim.stats.api_calls] == ["ok", "fault_type_missing", "ok"]


async def raw_answer(http: aiohttp.ClientSession, sim: RunningSimulator) -> tuple[int, str, str]:
    async with http.get(f"{sim.url}/v2/insights/{SINGLE}.json", headers=HEADERS) as resp:
        return resp.status, resp.content_type, await resp.text()


async def test_api_garbage_kinds(sim: RunningSimulator, http: aiohttp.ClientSession):
    await set_faults(http, sim, api_garbage=1, api_garbage_kind="html")
    status, ctype, text = await raw_answer(http, sim)
    assert (status, ctype) == (200, "text/html") and text.startswith("<html>")

    await set_faults(http, sim, api_garbage=1, api_garbage_kind="truncated")
    status, ctype, text = await raw_answer(http, sim)
    assert (status, ctype) == (200, "application/json") and text.startswith('{"status":')
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)

    await set_faults(http, sim, api_garbage=1, api_garbage_kind="no_status")
    status, _, text = await raw_answer(http, sim)
    body = json.loads(text)
    assert status == 200 and "status" not in body and len(body["downloadLinks"]) == 2

    status, _, text = await raw_answer(http, sim)  # all counters spent
    assert json.loads(text)["status"] == "FINISHED"
    reasons = [c.reason for c in sim.sim.stats.api_calls]
    assert reasons == [
        "fault_garbage_html", "fault_garbage_truncated", "fault_garbage_no_status", "ok"
    ]  # fmt: skip


async def test_api_garbage_leaves_error_answers_alone(
    sim: RunningSimulator, http: aiohttp.ClientSession
):
    await set_faults(http, sim, api_garbage=1, api_500=1)
    assert (await raw_answer(http, sim))[0] == 500  # not a 200 answer: not mangled, not counted
    assert sim.sim.config.faults.api_garbage == 1
    assert (await raw_answer(http, sim))[1] == "text/html"


@pytest.mark.parametrize(
    "knobs",
    [
        {"api_garbage_kind": "xml"},
        {"links_wrong_shape_kind": "list"},
        {"stall": -1},
        {"huge_header": "2"},
        {"nope": 1},
    ],
)
async def test_bad_knob_values_are_refused(
    sim: RunningSimulator, http: aiohttp.ClientSession, knobs: dict[str, Any]
):
    async with http.post(f"{sim.url}/_sim/faults", json=knobs) as resp:
        assert resp.status == 400
    assert sim.sim.config.faults == type(sim.sim.config.faults)()
