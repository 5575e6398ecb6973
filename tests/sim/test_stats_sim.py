"""The statistics simulator against a plain aiohttp client on loopback."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import date, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from downloader.core.constants import BEIJING
from downloader.sim.raw.app import SimConfig, Simulator
from downloader.sim.stats.app import (
    Dashboard,
    DashboardChart,
    StatsFaults,
    StatsSimConfig,
    StatsSimulator,
)
from downloader.sim.stats.records import StatsCall, StatsSimStats
from downloader.sim.stats.run import RunningStatsSimulator, start_stats_simulator
from downloader.sim.thread import start_app_thread
from downloader.sources.stats import protocol
from downloader.sources.stats.table import to_csv

NOW = datetime(2024, 6, 10, 12, 0, tzinfo=BEIJING)
TODAY = date(2024, 6, 10)
DAY = date(2024, 6, 9)  # due 2024-06-10 06:00, before NOW
UID = "nxog09md"
HEADERS = {"Authorization": "Token sim-token", "X-Client-Id": "sim-client"}
DAY_START = int(datetime(2024, 6, 9, tzinfo=BEIJING).timestamp()) * 1000
DAY_MS = 86_400_000
CHART = f"/v3/exporter/projects/{UID}/charts/YoX28w7R"
FUNNEL = f"/v3/exporter/projects/{UID}/funnels/Fn01Ab23"
TAGS = f"/v3/exporter/projects/{UID}/tags/Tg01Ab23/users"
DAY_QUERY = {"startTime": str(DAY_START), "endTime": str(DAY_START + DAY_MS)}
CHART_QUERY = DAY_QUERY | {"interval": "86400000"}


@pytest.fixture
def start() -> Iterator[Callable[..., RunningStatsSimulator]]:
    """Start simulators frozen at NOW; stop them afterwards."""
    started: list[RunningStatsSimulator] = []

    def _start(**overrides: Any) -> RunningStatsSimulator:
        running = start_stats_simulator(StatsSimConfig(**overrides))
        running.sim.set_now(NOW)
        started.append(running)
        return running

    yield _start
    for running in started:
        running.stop()


@pytest.fixture
def sim(start: Callable[..., RunningStatsSimulator]) -> RunningStatsSimulator:
    return start()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


async def get(
    http: aiohttp.ClientSession,
    sim: RunningStatsSimulator,
    path: str,
    query: dict[str, str] | list[tuple[str, str]] | None = None,
    headers: dict[str, str] = HEADERS,
) -> tuple[int, bytes, dict[str, str]]:
    async with http.get(sim.url + path, params=query, headers=headers) as resp:
        return resp.status, await resp.read(), dict(resp.headers)


async def until_finished(
    http: aiohttp.ClientSession, sim: RunningStatsSimulator, path: str, query: dict[str, str]
) -> tuple[list[str], bytes]:
    """Poll the same GET until it stops answering doing; return the job ids seen and the body."""
    ids: list[str] = []
    for _ in range(20):
        status, body, _ = await get(http, sim, path, query)
        assert status == 200, body
        obj = json.loads(body)
        if obj.get("status") != "doing":
            return ids, body
        ids.append(obj["id"])
    raise AssertionError("still doing after 20 polls")


async def fetch(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    async with http.get(url, headers=headers or {}) as resp:
        return resp.status, dict(resp.headers), await resp.read()


# -- auth -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Client-Id": "sim-client"},
        {"Authorization": "Token sim-token"},
        {"Authorization": "sim-token", "X-Client-Id": "sim-client"},
        {"Authorization": "Token wrong", "X-Client-Id": "sim-client"},
        {"Authorization": "Token sim-token", "X-Client-Id": "other"},
    ],
    ids=["none", "no-token", "no-client-id", "bare-token", "wrong-token", "wrong-client-id"],
)
@pytest.mark.parametrize("path", [CHART, f"/projects/{UID}/rules.csv"])
async def test_every_call_needs_both_headers(
    sim: RunningStatsSimulator, http: aiohttp.ClientSession, headers: dict[str, str], path: str
) -> None:
    query = CHART_QUERY if path == CHART else None
    status, body, _ = await get(http, sim, path, query, headers=headers)
    assert status == 401
    assert json.loads(body) == {"message": "Unauthorized", "errors": []}
    assert [c.reason for c in sim.sim.stats.calls] == ["unauthorized"]
    # No job was started by the refused call: the first accepted one answers doing.
    status, body, _ = await get(http, sim, path, query)
    assert status == 200
    if path == CHART:
        assert json.loads(body)["status"] == "doing"


# -- 400 for anything outside the contract ---------------------------------------------------------

BAD_QUERIES: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("chart-without-interval", CHART, list(DAY_QUERY.items())),
    ("chart-weekly-interval", CHART, [*DAY_QUERY.items(), ("interval", "604800000")]),
    ("chart-interval-in-seconds", CHART, [*DAY_QUERY.items(), ("interval", "86400")]),
    ("start-utc-midnight", CHART, [("startTime", str(DAY_START + 8 * 3_600_000)),
                                   ("endTime", str(DAY_START + DAY_MS + 8 * 3_600_000)),
                                   ("interval", "86400000")]),
    ("start-in-seconds", FUNNEL, [("startTime", str(DAY_START // 1000)),
                                  ("endTime", str((DAY_START + DAY_MS) // 1000))]),
    ("two-days", FUNNEL, [("startTime", str(DAY_START)), ("endTime", str(DAY_START + 2 * DAY_MS))]),
    ("end-minus-two-ms", FUNNEL, [("startTime", str(DAY_START)),
                                  ("endTime", str(DAY_START + DAY_MS - 2))]),
    ("no-end", FUNNEL, [("startTime", str(DAY_START))]),
    ("no-window", FUNNEL, []),
    ("not-a-number", FUNNEL, [("startTime", "2024-06-09"), ("endTime", str(DAY_START + DAY_MS))]),
    ("funnel-interval", FUNNEL, [*DAY_QUERY.items(), ("interval", "86400000")]),
    ("funnel-conversion-window", FUNNEL, [*DAY_QUERY.items(), ("conversionWindow", "7")]),
    ("retention-range", f"/v3/exporter/projects/{UID}/retentions/Rt01Ab23",
     [*DAY_QUERY.items(), ("range", "day")]),
    ("frequency-split", f"/v3/exporter/projects/{UID}/frequencies/Fq01Ab23",
     [*DAY_QUERY.items(), ("split", "10")]),
    ("repeated-start", FUNNEL, [*DAY_QUERY.items(), ("startTime", str(DAY_START))]),
    ("users-no-expire", TAGS, []),
    ("users-expire-zero", TAGS, [("expire", "0")]),
    ("users-expire-over-7-days", TAGS, [("expire", "10081")]),
    ("users-empty-parameters", TAGS, [("expire", "60"), ("parameters", "")]),
    ("users-empty-name", TAGS, [("expire", "60"), ("parameters", "a,,b")]),
    ("users-bad-name", TAGS, [("expire", "60"), ("parameters", "user-name")]),
    ("users-spaced-names", TAGS, [("expire", "60"), ("parameters", "a, b")]),
    ("users-repeated-name", TAGS, [("expire", "60"), ("parameters", "a,a")]),
    ("users-extra", TAGS, [("expire", "60"), ("detail", "true")]),
    ("v1-with-query", f"/projects/{UID}/dashboards.json", [("page", "1")]),
    ("rules-with-query", f"/projects/{UID}/rules.csv", [("expire", "5")]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "query"), [(p, q) for _, p, q in BAD_QUERIES], ids=[n for n, _, _ in BAD_QUERIES]
)
async def test_queries_outside_the_contract_are_400(
    sim: RunningStatsSimulator, http: aiohttp.ClientSession, path: str, query: list[Any]
) -> None:
    status, body, _ = await get(http, sim, path, query)
    assert status == 400, body
    assert json.loads(body)["message"].startswith("请求参数不合法，")
    assert [c.reason for c in sim.sim.stats.calls] == ["bad_request"]
    assert len(sim.sim.stats.calls_with("bad_request")) == 1


@pytest.mark.parametrize(
    ("path", "query"),
    [
        (CHART, CHART_QUERY),
        (CHART, DAY_QUERY | {"interval": "3600000"}),
        (CHART, CHART_QUERY | {"endTime": str(DAY_START + DAY_MS - 1)}),
        (FUNNEL, DAY_QUERY),
        (TAGS, {"expire": "1"}),
        (TAGS, {"expire": "10080", "parameters": "user_name,Project_2"}),
    ],
    ids=["chart-day", "chart-hour", "end-minus-1ms", "funnel", "expire-1", "expire-max-params"],
)
async def test_queries_inside_the_contract_start_a_job(
    sim: RunningStatsSimulator, http: aiohttp.ClientSession, path: str, query: dict[str, str]
) -> None:
    status, body, _ = await get(http, sim, path, query)
    assert status == 200
    assert json.loads(body)["status"] == "doing"


async def test_the_protocol_builders_are_accepted(
    start: Callable[..., RunningStatsSimulator], http: aiohttp.ClientSession
) -> None:
    sim = start(doing_polls=0)
    requests = [
        protocol.windowed_request(UID, kind, "Ab12Cd34", DAY, interval)
        for kind in ("chart", "funnel", "retention", "frequency")
        for interval in ("hour", "day")
    ] + [
        protocol.user_list_request(UID, "segment_users", "Sg01Ab23", ("user_name", "vip_level")),
        protocol.user_list_request(UID, "tag_users", "Tg01Ab23"),
        protocol.dashboards_request(UID),
        protocol.dashboard_request(UID, "Db01Ab23"),
        protocol.segmentations_request(UID),
        protocol.rules_request(UID),
    ]
    for request in requests:
        status, _, headers = await fetch(http, sim.url + request.target, HEADERS)
        assert status == 200, request
    assert not sim.sim.stats.calls_with("bad_request")
    assert not [c for c in sim.sim.stats.calls if c.early]


# -- the job flow ---------------------------------------------------------------------------------


@pytest.mark.parametrize("doing_polls", [0, 1, 3])
async def test_doing_then_the_result(
    start: Callable[..., RunningStatsSimulator], http: aiohttp.ClientSession, doing_polls: int
) -> None:
    sim = start(doing_polls=doing_polls)
    ids, body = await until_finished(http, sim, CHART, CHART_QUERY)
    assert len(ids) == 1 + doing_polls and len(set(ids)) == 1
    assert body == sim.sim.expected_result(UID, "charts", "YoX28w7R", DAY)
    result = json.loads(body)
    assert "status" not in result and {"meta", "data"} <= set(result)
    assert [c.reason for c in sim.sim.stats.calls] == ["doing"] * len(ids) + ["result"]


async def test_same_query_in_another_order_is_the_same_job(
    sim: RunningStatsSimulator, http: aiohttp.ClientSession
) -> None:
    _, first, _ = await get(http, sim, CHART, list(CHART_QUERY.items()))
    _, again, _ = await get(http, sim, CHART, list(reversed(CHART_QUERY.items())))
    assert json.loads(first)["id"] == json.loads(again)["id"]
    _, other_day, _ = await get(http, sim, CHART, CHART_QUERY | {
        "startTime": str(DAY_START - DAY_MS), "endTime": str(DAY_START)})  # fmt: skip
    assert json.loads(other_day)["id"] != json.loads(first)["id"]


async def test_hourly_chart_has_a_row_per_hour_and_user(
    sim: RunningStatsSimulator, http: aiohttp.ClientSession
) -> None:
    _, body = await until_finished(http, sim, CHART, CHART_QUERY | {"interval": "3600000"})
    assert body == sim.sim.expected_result(UID, "charts", "YoX28w7R", DAY, 3_600_000)
    assert body != sim.sim.expected_result(UID, "charts", "YoX28w7R", DAY)
    assert len(json.loads(body)["data"]) == 24 * 2


async def test_after_the_result_the_same_get_starts_a_new_job(
    start: Callable[..., RunningStatsSimulator], http: aiohttp.ClientSession
) -> None:
    sim = start()
    first, _ = await until_finished(http, sim, FUNNEL, DAY_QUERY)
    second, body = await until_finished(http, sim, FUNNEL, DAY_QUERY)
    assert first[0] != second[0]
    assert body == sim.sim.expected_result(UID, "funnels", "Fn01Ab23", DAY)
    kept = start(reuse_done_jobs=True)
    _, body = await until_finished(http, kept, FUNNEL, DAY_QUERY)
    assert (await get(http, kept, FUNNEL, DAY_QUERY))[1] == body


async def test_failed_knob_then_a_new_job(
    sim: RunningStatsSimulator, http: aiohttp.ClientSession
) -> None:
    async with http.post(f"{sim.url}/_sim/faults", json={"failed": 1}) as resp:
        assert resp.status == 200 and (await resp.json())["failed"] == 1
    ids, body = await until_finished(http, sim, TAGS, {"expire": "60"})
    failed = json.loads(body)
    assert failed == {"id": ids[0], "status": "failed", "errorMsg": "下载出错，请您稍后重试"}
    new_ids, body = await until_finished(http, sim, TAGS, {"expire": "60"})
    assert new_ids[0] != ids[0] and len(new_ids) == 2
    assert json.loads(body)["status"] == "done"
    assert sim.sim.config.faults.failed == 0


async def test_doing_polls_jitter_is_seeded(
    start: Callable[..., RunningStatsSimulator], http: aiohttp.ClientSession
) -> None:
    counts = []
    for _ in range(2):
        sim = start(doing_polls=1, doing_polls_jitter=4, seed=7)
        counts.append([len((await until_finished(http, sim, p, DAY_QUERY))[0])
                       for p in (FUNNEL, FUNNEL.replace("Fn01Ab23", "Fn02Ab23"))])  # fmt: skip
    assert counts[0] == counts[1]
    assert all(2 <= n <= 6 for n in counts[0])


async def test_early_asks_are_flagged(
    sim: RunningStatsSimulator, http: aiohttp.ClientSession
) -> None:
    start = int(datetime(2024, 6, 10, tzinfo=BEIJING).timestamp()) * 1000
    await get(http, sim, FUNNEL, {"startTime": str(start), "endTime": str(start + DAY_MS)})
    await get(http, sim, FUNNEL, DAY_QUERY)
    assert [c.early for c in sim.sim.stats.calls] == [True, False]


# -- user lists and their links -------------------------------------------------------------------


async def test_user_list_links_serve_the_expected_parts(
    start: Callable[..., RunningStatsSimulator], http: aiohttp.ClientSession
) -> None:
    sim = start(link_count=3)
    query = {"expire": "60", "parameters": "user_name,vip_level"}
    _, body = await until_finished(http, sim, TAGS, query)
    done = json.loads(body)
    assert set(done) == {"id", "status", "downloadLinks", "errorMsg"}
    assert (done["status"], done["errorMsg"]) == ("done", "")
    variables = ("user_name", "vip_level")
    expected = sim.sim.expected_user_parts(UID, "tags", "Tg01Ab23", TODAY, variables)
    assert len(done["downloadLinks"]) == len(expected) == 3
    for link, part in zip(done["downloadLinks"], expected, strict=True):
        assert "expires=" in link and "sign=" in link
        status, headers, data = await fetch(http, link)  # no headers needed
        assert status == 200 and data == part
        assert int(headers["Content-Length"]) == len(part)
    header = next(csv.reader(io.StringIO(expected[0].decode())))
    assert header[-2:] == ["user_name", "vip_level"]
    # A re-ask gives other link text for the same bytes.
    _, again = await until_finished(http, sim, TAGS, query)
    links = json.loads(again)["downloadLinks"]
    assert not set(links) & set(done["downloadLinks"])
    assert [(await fetch(http, link))[2] for link in links] == expected


async def test_links_expire_with_403(
    start: Callable[..., RunningStatsSimulator], http: aiohttp.ClientSession
) -> None:
    sim = start(link_ttl_seconds=30)
    _, body = await until_finished(http, sim, TAGS, {"expire": "60"})
    link = json.loads(body)["downloadLinks"][0]
    expires = int(link.rsplit("expires=", 1)[1])
    assert expires == int((NOW + timedelta(seconds=30)).timestamp() * 1000)
    sim.sim.set_now(NOW + timedelta(seconds=30))
    assert (await fetch(http, link))[0] == 200
    sim.sim.set_now(NOW + timedelta(seconds=31))
    assert (await fetch(http, link))[0] == 403
    assert sim.sim.stats.downloads[-1].outcome == "expired"


async def test_link_expiry_follows_expire_without_a_ttl(
    sim: RunningStatsSimulator, http: aiohttp.ClientSession
) -> None:
    _, body = await until_finished(http, sim, TAGS, {"expire": "5"})
    link = json.loads(body)["downloadLinks"][0]
    assert int(link.rsplit("expires=", 1)[1]) == int(NOW.timestamp() * 1000) + 5 * 60_000


@pytest.mark.parametrize(
    "edit",
    [
        lambda link: link.replace("sign=", "sign=0"),
        lambda link: link.replace("expires=", "expires=9"),
        lambda link: link.replace("part-00000", "part-00001"),
        lambda link: link.replace("/tags/", "/segmentations/"),
    ],
    ids=["sign", "expires", "index", "kind"],
)
async def test_edited_links_are_refused(
    sim: RunningStatsSimulator, http: aiohttp.ClientSession, edit: Callable[[str], str]
) -> None:
    _, body = await until_finished(http, sim, TAGS, {"expire": "60"})
    link = json.loads(body)["downloadLinks"][0]
    assert (await fetch(http, edit(link)))[0] == 403
    assert sim.sim.stats.downloads[-1].outcome == "bad_signature"


async def test_range_and_cut_and_500(
    sim: RunningStatsSimulator, http: aiohttp.ClientSession
) -> None:
    _, body = await until_finished(http, sim, TAGS, {"expire": "60"})
    link = json.loads(body)["downloadLinks"][1]
    part = sim.sim.expected_user_parts(UID, "tags", "Tg01Ab23", TODAY)[1]
    status, headers, data = await fetch(http, link, {"Range": "bytes=100-"})
    assert (status, data) == (206, part[100:])
    assert headers["Content-Range"] == f"bytes 100-{len(part) - 1}/{len(part)}"
    assert int(headers["Content-Length"]) == len(part) - 100
    status, _, data = await fetch(http, link, {"Range": "bytes=0-9"})
    assert (status, data) == (206, part[:10])
    assert (await fetch(http, link, {"Range": f"bytes={len(part)}-"}))[0] == 416

    sim.sim.config.faults.drop, sim.sim.config.faults.drop_after_bytes = 1, 300
    got = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.get(link) as resp:
            assert int(resp.headers["Content-Length"]) == len(part)
            async for chunk in resp.content.iter_any():
                got += chunk
    assert got == part[:300]
    status, _, rest = await fetch(http, link, {"Range": f"bytes={len(got)}-"})
    assert status == 206 and got + rest == part

    sim.sim.config.faults.download_500 = 1
    assert (await fetch(http, link))[0] == 500
    assert (await fetch(http, link))[2] == part
    outcomes = [d.outcome for d in sim.sim.stats.downloads]
    assert outcomes == ["ok", "ok", "range_not_satisfiable", "dropped", "ok", "fault_500", "ok"]
    assert not [c for c in sim.sim.stats.calls if "buckets" in c.path]  # links are not API calls


# -- 404, 429, 5xx --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"missing_ids": frozenset({"YoX28w7R"})}, CHART),
        ({"missing_ids": frozenset({UID})}, CHART),
        ({"known_ids": frozenset({UID, "Other123"})}, CHART),
        ({}, CHART.replace("YoX28w7R", "short")),
        ({}, CHART.replace("YoX28w7R", "has-dash")),
        ({"missing_ids": frozenset({"Tg01Ab23"})}, TAGS),
        ({"missing_ids": frozenset({"Db01Ab23"})}, f"/projects/{UID}/dashboards/Db01Ab23.json"),
    ],
    ids=["missing-item", "missing-project", "not-known", "short-id", "dash", "tag", "dashboard"],
)
async def test_unknown_ids_are_404(
    start: Callable[..., RunningStatsSimulator],
    http: aiohttp.ClientSession,
    overrides: dict[str, Any],
    path: str,
) -> None:
    sim = start(**overrides)
    query = {"expire": "60"} if path == TAGS else CHART_QUERY if path.startswith("/v3") else None
    status, body, _ = await get(http, sim, path, query)
    assert status == 404
    assert json.loads(body) == {"message": "Not Found", "errors": []}
    assert [c.reason for c in sim.sim.stats.calls] == ["not_found"]


async def test_known_ids_are_served(
    start: Callable[..., RunningStatsSimulator], http: aiohttp.ClientSession
) -> None:
    sim = start(known_ids=frozenset({UID, "YoX28w7R"}))
    assert (await get(http, sim, CHART, CHART_QUERY))[0] == 200


@pytest.mark.parametrize(
    "path", ["/v2/projects/nxog09md/charts/YoX28w7R.json", "/v3/exporter/other", "/projects/x/y"]
)
async def test_paths_outside_the_contract_are_404_and_recorded(
    sim: RunningStatsSimulator, http: aiohttp.ClientSession, path: str
) -> None:
    assert (await get(http, sim, path))[0] == 404
    assert [c.reason for c in sim.sim.stats.calls] == ["unknown_path"]


async def test_429_and_500_knobs(sim: RunningStatsSimulator, http: aiohttp.ClientSession) -> None:
    sim.sim.config.faults.api_429, sim.sim.config.faults.retry_after_seconds = 1, 2.5
    sim.sim.config.faults.api_500 = 1
    statuses = []
    for _ in range(3):
        status, _, headers = await get(http, sim, FUNNEL, DAY_QUERY)
        statuses.append((status, headers.get("Retry-After")))
    assert statuses == [(500, None), (429, "2.5"), (200, None)]
    assert [c.reason for c in sim.sim.stats.calls] == ["fault_500", "fault_429", "doing"]


# -- v1 lists -------------------------------------------------------------------------------------


async def test_default_dashboard_has_a_chart_a_funnel_and_a_retention(
    sim: RunningStatsSimulator, http: aiohttp.ClientSession
) -> None:
    status, body, headers = await get(http, sim, f"/projects/{UID}/dashboards.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    dashboards = json.loads(body)
    assert len(dashboards) == 1 and {"id", "name", "type", "updatedAt"} <= set(dashboards[0])
    status, body, _ = await get(http, sim, f"/projects/{UID}/dashboards/{dashboards[0]['id']}.json")
    charts = json.loads(body)["charts"]
    assert [c["resource_type"] for c in charts] == ["chart", "funnel", "retention"]
    assert all(len(c["id"]) == 8 and c["id"].isalnum() for c in charts)
    assert [c.item for c in sim.sim.stats.calls] == [None, dashboards[0]["id"]]


async def test_configured_dashboards_and_segments(
    start: Callable[..., RunningStatsSimulator], http: aiohttp.ClientSession
) -> None:
    board = Dashboard("Db01Ab23", "看板", (DashboardChart("Rt01Ab23", "留存", "retention"),))
    sim = start(
        dashboards={UID: (board,), "emptyprj": ()},
        segmentations={UID: ("Sg01Ab23",), "emptyprj": ()},
    )
    assert json.loads((await get(http, sim, "/projects/emptyprj/dashboards.json"))[1]) == []
    assert json.loads((await get(http, sim, "/projects/emptyprj/segmentations.json"))[1]) == []
    listed = json.loads((await get(http, sim, f"/projects/{UID}/dashboards.json"))[1])
    assert [d["id"] for d in listed] == ["Db01Ab23"]
    one = json.loads((await get(http, sim, f"/projects/{UID}/dashboards/Db01Ab23.json"))[1])
    assert one["charts"] == [{"id": "Rt01Ab23", "name": "留存", "createor": "模拟器",
                              "createdAt": "2019-01-01", "resource_type": "retention"}]  # fmt: skip
    segments = json.loads((await get(http, sim, f"/projects/{UID}/segmentations.json"))[1])
    assert [s["id"] for s in segments] == ["Sg01Ab23"]


async def test_rules_csv(sim: RunningStatsSimulator, http: aiohttp.ClientSession) -> None:
    status, body, headers = await get(http, sim, f"/projects/{UID}/rules.csv")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert body == sim.sim.expected_rules(UID) != sim.sim.expected_rules("other123")
    rows = list(csv.reader(io.StringIO(body.decode(), newline="")))
    assert rows[0] == ["ruleId", "eventName", "eventType"] and len(rows) == 13


# -- content --------------------------------------------------------------------------------------


def test_results_are_deterministic_and_exercise_the_csv() -> None:
    a, b = StatsSimulator(StatsSimConfig()), StatsSimulator(StatsSimConfig())
    assert a.expected_result(UID, "retentions", "Rt01Ab23", DAY) == b.expected_result(
        UID, "retentions", "Rt01Ab23", DAY
    )
    assert a.expected_result(UID, "charts", "Rt01Ab23", DAY) != a.expected_result(
        UID, "charts", "Rt01Ab23", DAY + timedelta(days=1)
    )
    seeded = StatsSimulator(StatsSimConfig(seed=1))
    assert seeded.expected_result(UID, "charts", "YoX28w7R", DAY) != a.expected_result(
        UID, "charts", "YoX28w7R", DAY
    )
    cells = [
        cell
        for kind in ("charts", "funnels", "retentions", "frequencies")
        for row in json.loads(a.expected_result(UID, kind, "Ab12Cd34", DAY, 3_600_000))["data"]
        for cell in row
    ]
    texts = [c for c in cells if isinstance(c, str)]
    for needle in (",", '"', "\n", "\r", "\\", "😀"):
        assert any(needle in t for t in texts), needle
    assert None in cells and True in cells and False in cells
    assert any(isinstance(c, dict) for c in cells) and any(isinstance(c, float) for c in cells)
    for kind in ("charts", "funnels", "retentions", "frequencies"):
        result = json.loads(a.expected_result(UID, kind, "Ab12Cd34", DAY))
        rows = list(csv.reader(io.StringIO(to_csv(a.expected_result(UID, kind, "Ab12Cd34", DAY))
                                           .decode(), newline="")))  # fmt: skip
        assert rows[0] == [m["name"] for m in result["meta"]]
        assert len(rows) == 1 + len(result["data"])


def test_empty_items_have_no_data() -> None:
    sim = StatsSimulator(StatsSimConfig(empty_items=frozenset({"Fn01Ab23"})))
    assert json.loads(sim.expected_result(UID, "funnels", "Fn01Ab23", DAY))["data"] == []
    assert json.loads(sim.expected_result(UID, "funnels", "Fn02Ab23", DAY))["data"] != []


# -- rate measurement -----------------------------------------------------------------------------


def _stats(times: list[tuple[float, str | None]]) -> StatsSimStats:
    stats = StatsSimStats()
    for t, item in times:
        stats.add_call(StatsCall(t, "/p", "", item, 200, None, "ok"))
    return stats


@pytest.mark.parametrize(
    ("times", "overall", "per_a"),
    [
        ([], 0, 0),
        ([(0.0, "a")], 1, 1),
        ([(0.0, "a"), (0.5, "a"), (1.0, "a"), (1.5, "a")], 2, 2),
        ([(0.0, "a"), (0.4, "b"), (0.99, "a"), (2.0, None)], 3, 2),
        ([(0.0, "a"), (0.25, "a"), (0.5, "a")], 3, 3),  # a 2/s token bucket's burst: not allowed
        ([(0.0, "b"), (0.999, "b"), (1.0, "b")], 2, 0),
    ],
)
def test_max_calls_in_any_window(
    times: list[tuple[float, str | None]], overall: int, per_a: int
) -> None:
    stats = _stats(times)
    assert stats.max_calls_in_any_window(1.0) == overall
    assert stats.max_calls_in_any_window(1.0, item="a") == per_a


async def test_calls_are_timed_and_rate_enforcement(
    start: Callable[..., RunningStatsSimulator], http: aiohttp.ClientSession
) -> None:
    sim = start()
    for _ in range(3):
        await get(http, sim, FUNNEL, DAY_QUERY)
    assert sim.sim.stats.max_calls_in_any_window(1.0) == 3
    assert sim.sim.stats.max_calls_in_any_window(1.0, item="Fn01Ab23") == 3
    assert sim.sim.stats.max_calls_per_item_in_any_window() == {"Fn01Ab23": 3}
    async with http.get(f"{sim.url}/_sim/stats") as resp:
        assert (await resp.json())["max_calls_in_any_window"] == 3

    limited = start(faults=StatsFaults(enforce_rate_limit=True))
    statuses = [(await get(http, limited, FUNNEL, DAY_QUERY))[0] for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert limited.sim.stats.calls[-1].reason == "rate_limited"


# -- control and mounting -------------------------------------------------------------------------


async def test_control_endpoints(sim: RunningStatsSimulator, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{sim.url}/_sim/faults", json={"no_such_knob": 1}) as resp:
        assert resp.status == 400
    later = NOW + timedelta(hours=1)
    async with http.post(f"{sim.url}/_sim/clock", json={"now": later.isoformat()}) as resp:
        assert resp.status == 200
    assert sim.sim.now() == later
    await get(http, sim, FUNNEL, DAY_QUERY)
    async with http.get(f"{sim.url}/_sim/stats") as resp:
        stats = await resp.json()
    assert [c["reason"] for c in stats["calls"]] == ["doing"]
    assert stats["calls"][0]["query"] == f"startTime={DAY_START}&endTime={DAY_START + DAY_MS}"


async def test_mounts_onto_the_raw_simulators_app(http: aiohttp.ClientSession) -> None:
    raw = Simulator(SimConfig())
    stats = StatsSimulator(StatsSimConfig())
    app: web.Application = raw.make_app()
    stats.add_routes(app, control_prefix="/_sim/reports")
    server = start_app_thread(app, "127.0.0.1", 0, "test-mounted")
    try:
        async with http.get(f"{server.url}/_sim/reports/stats") as resp:
            assert resp.status == 200 and (await resp.json())["calls"] == []
        async with http.get(f"{server.url}/_sim/stats") as resp:
            assert "api_calls" in await resp.json()  # the raw simulator's own
        async with http.get(server.url + FUNNEL, params=DAY_QUERY, headers=HEADERS) as resp:
            assert (await resp.json())["status"] == "doing"
        url = f"{server.url}/v2/insights/day/0a1b2c3d/20240609.json?expire=5"
        async with http.get(url, headers={"Authorization": "Token sim-token"}) as resp:
            assert resp.status == 200
        assert [c.reason for c in stats.stats.calls] == ["doing"]
    finally:
        server.stop()
        raw.close()
