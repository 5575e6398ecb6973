"""Health listener (downloader/health.py): /healthz, /readyz, /metrics over real HTTP on loopback.

The status report is the real one: build_status over a real Checkpoint and a parsed Config.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from downloader import __version__
from downloader.config.load import parse_config
from downloader.core.constants import BEIJING
from downloader.core.model import PartitionKey
from downloader.core.partitions import Period
from downloader.core.stats import Stats
from downloader.engine.checkpoint import Checkpoint
from downloader.service.health import HealthServer, metric_families, parse_listen
from downloader.service.status import build_status
from downloader.sources.raw.keys import raw_key

# Hour lag 30 min: at 12:00 the newest due hour is 10:00-11:00 (11:00-12:00 is due at 12:30).
NOW = datetime(2026, 1, 15, 12, 0, tzinfo=BEIJING)
P = "gio_downloader_"

CONFIG = """\
api: {base_url: "http://127.0.0.1:1", token: not-a-real-token}
projects:
  - {ai: proj0001, data_types: [visit, page], export_types: [hour]}
  - {ai: proj0002, data_types: [visit], export_types: [hour, day]}
storage: {url: "STORAGE"}
checkpoint: CHECKPOINT
"""


def hour(ai: str, data_type: str, label: str) -> PartitionKey:
    return raw_key(ai, data_type, Period.from_label("hour", label))


@pytest.fixture
def report(tmp_path: Path) -> dict[str, Any]:
    text = CONFIG.replace("STORAGE", (tmp_path / "data").as_uri()) \
        .replace("CHECKPOINT", str(tmp_path / "state" / "checkpoint.db"))
    cfg = parse_config(text, tmp_path / "gio.yaml")
    with Checkpoint(cfg.checkpoint) as cp:
        # proj0001: 09 complete for both types, 10 only for page -> freshness 12:00 - 10:00.
        cp.done(hour("proj0001", "visit", "2026011509"))
        cp.done(hour("proj0001", "page", "2026011509"))
        cp.done(hour("proj0001", "page", "2026011510"))
        cp.failed(hour("proj0001", "visit", "2026011508"), "ERROR: export failed", 8)
        # proj0002: 10 complete -> freshness 12:00 - 11:00.
        cp.done(hour("proj0002", "visit", "2026011510"))
        return build_status(cfg, cp, NOW)


class FakeSource:
    def __init__(self, report: dict[str, Any]) -> None:
        self.live = Stats()
        self.report = report
        self.report_calls = 0
        self.report_error: Exception | None = None
        self.age = 0.5
        self.checks = [("config", True, "loaded"), ("storage", True, "writable"),
                       ("api", True, "reachable")]
        self.hang = False
        self.ready_error: Exception | None = None

    def stats(self) -> Stats:
        return self.live

    def status_report(self) -> dict[str, Any]:
        self.report_calls += 1
        if self.report_error is not None:
            raise self.report_error
        return self.report

    async def readiness(self) -> list[tuple[str, bool, str]]:
        if self.hang:
            await asyncio.Event().wait()
        if self.ready_error is not None:
            raise self.ready_error
        return list(self.checks)

    def heartbeat_age(self) -> float:
        return self.age


@pytest.fixture
def source(report: dict[str, Any]) -> FakeSource:
    return FakeSource(report)


@pytest.fixture
async def server(source: FakeSource) -> AsyncIterator[HealthServer]:
    srv = HealthServer("127.0.0.1:0", source, stale_after=30.0, ready_timeout=0.2)
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get(http: aiohttp.ClientSession, server: HealthServer,
              path: str) -> tuple[int, str, str]:
    async with http.get(server.url + path) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(http: aiohttp.ClientSession, server: HealthServer) -> tuple[Samples, str]:
    status, ctype, text = await get(http, server, "/metrics")
    assert status == 200
    assert ctype == CONTENT_TYPE_LATEST
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, text


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples[(P + name, frozenset(labels.items()))]


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


# --- /healthz ----------------------------------------------------------------------------------


async def test_healthz_ok_then_stale(server: HealthServer, source: FakeSource,
                                     http: aiohttp.ClientSession) -> None:
    assert await get(http, server, "/healthz") == (200, "text/plain; charset=utf-8", "ok\n")

    source.age = 45.0
    status, _, body = await get(http, server, "/healthz")
    assert status == 503
    assert body.count("\n") == 1 and "45.0 s" in body and "30 s" in body, body

    source.age = 1.0
    assert (await get(http, server, "/healthz"))[0] == 200


@pytest.mark.parametrize("age", [math.nan, math.inf, 30.0])
async def test_healthz_unusable_heartbeat_is_stale(server: HealthServer, source: FakeSource,
                                                   http: aiohttp.ClientSession,
                                                   age: float) -> None:
    source.age = age
    assert (await get(http, server, "/healthz"))[0] == 503


# --- /readyz -----------------------------------------------------------------------------------


async def test_readyz_ok(server: HealthServer, http: aiohttp.ClientSession) -> None:
    status, ctype, body = await get(http, server, "/readyz")
    assert status == 200
    assert ctype.startswith("application/json")
    assert json.loads(body) == {"ready": True, "checks": [
        {"name": "config", "ok": True, "detail": "loaded"},
        {"name": "storage", "ok": True, "detail": "writable"},
        {"name": "api", "ok": True, "detail": "reachable"}]}


async def test_readyz_names_the_failing_check(server: HealthServer, source: FakeSource,
                                              http: aiohttp.ClientSession) -> None:
    source.checks[2] = ("api", False, "connection refused")
    status, _, body = await get(http, server, "/readyz")
    assert status == 503
    answer = json.loads(body)
    assert answer["ready"] is False
    assert [c["name"] for c in answer["checks"] if not c["ok"]] == ["api"]
    assert {"name": "api", "ok": False, "detail": "connection refused"} in answer["checks"]


async def test_readyz_hanging_check_is_503(server: HealthServer, source: FakeSource,
                                           http: aiohttp.ClientSession) -> None:
    source.hang = True
    status, _, body = await get(http, server, "/readyz")
    assert status == 503
    answer = json.loads(body)
    assert answer["ready"] is False
    assert answer["checks"][0]["name"] == "readiness"
    assert "did not finish" in answer["checks"][0]["detail"]


async def test_readyz_raising_check_is_503(server: HealthServer, source: FakeSource,
                                           http: aiohttp.ClientSession) -> None:
    source.ready_error = OSError("disk gone")
    status, _, body = await get(http, server, "/readyz")
    assert status == 503
    assert json.loads(body) == {"ready": False, "checks": [
        {"name": "readiness", "ok": False, "detail": "checks raised OSError: disk gone"}]}


# --- /metrics ----------------------------------------------------------------------------------


async def test_metrics_values(server: HealthServer, source: FakeSource, report: dict[str, Any],
                              http: aiohttp.ClientSession) -> None:
    stats = source.live
    stats.bytes_done = 12345
    stats.parts_done, stats.parts_recovered = 7, 2
    stats.link_refreshes = 3
    stats.retries = 4
    stats.api_call(200, "FINISHED")
    stats.api_call(200, "FINISHED")
    stats.api_call(429, None)
    stats.api_call(200, "doing", source="reports")
    source.age = 2.5

    samples, text = await scrape(http, server)

    assert sample(samples, "bytes_downloaded_total") == 12345
    assert sample(samples, "parts_downloaded_total") == 5  # the 2 recovered were not fetched
    assert sample(samples, "link_refreshes_total") == 3
    assert sample(samples, "retries_total") == 4
    assert sample(samples, "api_calls_total", source="raw", status="FINISHED") == 2
    assert sample(samples, "api_calls_total", source="raw", status="429") == 1
    assert sample(samples, "api_calls_total", source="reports", status="doing") == 1
    assert sample(samples, "heartbeat_age_seconds") == 2.5
    assert sample(samples, "build_info", version=__version__) == 1
    assert sample(samples, "status_report_ok") == 1

    # Partition gauges: exactly the report's per-type counts, every state, nothing else.
    expected = {
        (P + "partitions", frozenset({"state": state, "ai": project["ai"],
                                      "data_type": t["data_type"],
                                      "export_type": t["export_type"]}.items())): t[state]
        for project in report["projects"] for t in project["types"]
        for state in ("done", "pending", "failed")}
    got = {k: v for k, v in samples.items() if k[0] == P + "partitions"}
    assert got == expected
    assert len(got) == 3 * 4  # proj0001 visit+page hour, proj0002 visit hour+day
    labels = dict(ai="proj0001", data_type="visit", export_type="hour")
    assert sample(samples, "partitions", state="done", **labels) == 1
    assert sample(samples, "partitions", state="failed", **labels) == 1
    assert sample(samples, "partitions", state="done", ai="proj0001", data_type="page",
                  export_type="hour") == 2

    # Freshness: the report's numbers, per project and the worst of them.
    assert sample(samples, "freshness_seconds", ai="proj0001") == 7200
    assert sample(samples, "freshness_seconds", ai="proj0002") == 3600
    assert sample(samples, "freshness_seconds_max") == 7200
    assert "# HELP gio_downloader_freshness_seconds Seconds between now and the end" in text

    # Counters move between scrapes (stats are live, never cached).
    stats.bytes_done += 100
    samples, _ = await scrape(http, server)
    assert sample(samples, "bytes_downloaded_total") == 12445


async def test_metrics_without_freshness(server: HealthServer, source: FakeSource,
                                         http: aiohttp.ClientSession) -> None:
    source.report["projects"][1]["freshness_seconds"] = None
    source.report["projects"][1]["newest_complete_hour"] = None
    samples, _ = await scrape(http, server)
    assert sample(samples, "freshness_seconds", ai="proj0001") == 7200
    assert (P + "freshness_seconds", frozenset({("ai", "proj0002")})) not in samples
    assert P + "freshness_seconds_max" not in names(samples)  # not all projects known


async def test_status_report_is_cached(report: dict[str, Any], source: FakeSource,
                                       http: aiohttp.ClientSession) -> None:
    cached = HealthServer("127.0.0.1:0", source, status_cache_seconds=3600)
    uncached = HealthServer("127.0.0.1:0", source, status_cache_seconds=0)
    for srv in (cached, uncached):
        await srv.start()
    try:
        for _ in range(3):
            await scrape(http, cached)
        assert source.report_calls == 1
        for _ in range(3):
            await scrape(http, uncached)
        assert source.report_calls == 4
    finally:
        for srv in (cached, uncached):
            await srv.stop()


async def test_status_report_failure_keeps_live_metrics(server: HealthServer,
                                                        source: FakeSource,
                                                        http: aiohttp.ClientSession) -> None:
    source.report_error = RuntimeError("database is locked")
    source.live.bytes_done = 99
    samples, _ = await scrape(http, server)
    assert sample(samples, "status_report_ok") == 0
    assert sample(samples, "bytes_downloaded_total") == 99
    assert not {P + "partitions", P + "freshness_seconds"} & names(samples)

    source.report_error = None  # a failure is not cached: the next scrape recovers
    samples, _ = await scrape(http, server)
    assert sample(samples, "status_report_ok") == 1
    assert P + "partitions" in names(samples)


def test_metric_families_pure(report: dict[str, Any]) -> None:
    families = {f.name: f for f in metric_families(Stats(), report, 0.0, version="9.9.9")}
    assert families[P + "build_info"].samples[0].labels == {"version": "9.9.9"}
    assert families[P + "parts_downloaded"].type == "counter"
    assert families[P + "freshness_seconds"].type == "gauge"
    assert families[P + "api_calls"].samples == []
    assert P + "partitions" not in {
        f.name for f in metric_families(Stats(), None, 0.0)}


# --- the listener ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/index.html", "/health", "/metrics/x", "/readyz/"])
async def test_unknown_path_is_404(server: HealthServer, http: aiohttp.ClientSession,
                                   path: str) -> None:
    assert (await get(http, server, path))[0] == 404


async def test_second_server_on_same_port_fails(server: HealthServer,
                                                source: FakeSource) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    assert port > 0
    other = HealthServer(f"127.0.0.1:{port}", source)
    with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
        await other.start()
    with pytest.raises(RuntimeError):
        other.url  # noqa: B018
    await other.stop()  # harmless


async def test_stop_then_restart(source: FakeSource, http: aiohttp.ClientSession) -> None:
    srv = HealthServer("127.0.0.1:0", source)
    await srv.start()
    assert srv.url.startswith("http://127.0.0.1:")
    await srv.stop()
    await srv.stop()  # idempotent
    await srv.start()
    try:
        assert (await get(http, srv, "/healthz"))[0] == 200
    finally:
        await srv.stop()


@pytest.mark.parametrize(
    ("listen", "expected"),
    [("127.0.0.1:9108", ("127.0.0.1", 9108)), ("localhost:0", ("localhost", 0)),
     ("[::1]:9100", ("::1", 9100)), ("0.0.0.0:65535", ("0.0.0.0", 65535))],
)
def test_parse_listen(listen: str, expected: tuple[str, int]) -> None:
    assert parse_listen(listen) == expected


@pytest.mark.parametrize("listen", ["9108", ":9108", "host:", "host:port", "host:65536",
                                    "host:-1"])
def test_parse_listen_rejects(listen: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        parse_listen(listen)
