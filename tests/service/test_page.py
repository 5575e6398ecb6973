"""The status page (downloader/service/page.py) from a fixture snapshot, and from a real checkpoint
over HTTP: its structure, its cell counts, and that nothing from config or API can run as HTML."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from downloader import __version__
from downloader.config.load import parse_config
from downloader.core.constants import BEIJING
from downloader.core.partitions import Period
from downloader.core.stats import Stats
from downloader.engine.checkpoint import Checkpoint
from downloader.engine.runner import Waiting
from downloader.service.grid import STATES, Axis
from downloader.service.health import HealthServer
from downloader.service.page import render_page
from downloader.service.status import build_status
from downloader.sources.raw.keys import raw_key

EVIL_ITEM = "<script>alert('item')</script>"
EVIL_ERROR = "HTTP 500: <script>alert(\"error\")</script> & more"


def snapshot() -> dict[str, Any]:
    """A status report as build_status writes it, three days wide, every state present, and an
    item id and an error message that try to inject a script."""
    hour = ("s" * 13 + "d" * 11) + ("d" * 8 + "F" + "d" * 15) + ("d" * 9 + "W" + "p" * 2 + "n" * 12)
    return {
        "checkpoint": "/var/lib/gio/checkpoint.db",
        "now": "2026-01-15T12:10:00+08:00",
        "window_first_hour": "2026011313",
        "grid": Axis(datetime(2026, 1, 13).date(), 3).to_json(),
        "projects": [{
            "ai": "proj0001",
            "types": [
                {"data_type": "page", "export_type": "hour", "done": 43, "pending": 2,
                 "failed": 1, "newest_done": "2026011509", "cells": hour},
                {"data_type": "page", "export_type": "day", "done": 1, "pending": 0,
                 "failed": 0, "newest_done": "20260114", "cells": "sdn"},
            ],
            "newest_complete_hour": "2026011509", "freshness_seconds": 7800,
        }],
        "sources": {
            "reports": [{"item": "uid1/chart/AbC", "done": 1, "pending": 0, "failed": 1,
                         "newest_done": "day:20260113", "cells": "sdF"}],
            "cdp": [{"item": EVIL_ITEM, "done": 0, "pending": 1, "failed": 0,
                     "newest_done": None, "cells": "ssp"}],
        },
        "failed": [
            {"partition": "proj0001/page/hour:2026011408", "error": EVIL_ERROR, "attempts": 8,
             "updated_at": "2026-01-14T02:00:00+00:00", "source": "raw", "item": "proj0001/page",
             "partition_name": "hour:2026011408"},
            {"partition": "reports:uid1/chart/AbC/day:20260115", "error": "report gone",
             "attempts": 3, "updated_at": "2026-01-15T03:00:00+00:00", "source": "reports",
             "item": "uid1/chart/AbC", "partition_name": "day:20260115"},
        ],
        "waiting": [{"partition": "proj0001/page/hour:2026011509", "source": "raw",
                     "item": "proj0001/page", "partition_name": "hour:2026011509",
                     "since": "2026-01-15T11:58:00+08:00", "seconds": 720, "polls": 4,
                     "reason": "export still running"}],
    }


class Dom(HTMLParser):
    """What a person's browser would build, reduced to what the tests look at."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: Counter[str] = Counter()
        self.rows: list[dict[str, Any]] = []
        self.legend: dict[str, int] = {}
        self.text: list[str] = []
        self.sections: list[str] = []
        self.day_heads = 0
        self._legend_state: str | None = None
        self._in_count = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags[tag] += 1
        if tag == "section" and "data-source" in a:
            self.sections.append(a["data-source"])
        if tag == "tr" and "data-item" in a:
            self.rows.append({"source": a["data-source"], "item": a["data-item"],
                              "export": a["data-export"], "cells": Counter(), "titles": []})
        if tag == "td" and "c" in a.get("class", "").split() and self.rows:
            state = a["class"].split()[1]
            self.rows[-1]["cells"][state] += int(a.get("colspan", "1"))
            self.rows[-1]["titles"].append((state, a.get("title", "")))
        if tag == "th" and a.get("class") == "day":
            self.day_heads += 1
        if tag == "li" and "data-state" in a:
            self._legend_state = a["data-state"]
        if tag == "b" and a.get("class") == "count":
            self._in_count = True

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_count and self._legend_state is not None:
            self.legend[self._legend_state] = int(data)
            self._in_count = False

    def totals(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for row in self.rows:
            out.update(row["cells"])
        return out


def parse(html: str) -> Dom:
    dom = Dom()
    dom.feed(html)
    dom.close()
    return dom


def test_page_structure_from_fixture_snapshot() -> None:
    report = snapshot()
    html = render_page(report, __version__)
    dom = parse(html)
    assert html.startswith("<!doctype html>")
    assert dom.sections == ["raw", "reports", "cdp"]
    assert [(r["source"], r["item"], r["export"]) for r in dom.rows] == [
        ("raw", "proj0001/page", "hour"), ("raw", "proj0001/page", "day"),
        ("reports", "uid1/chart/AbC", "day"), ("cdp", EVIL_ITEM, "day")]
    assert dom.day_heads == 3 * 3  # days as column groups in every section
    assert dom.tags["colgroup"] == 3 * (3 + 2)
    # Every row spans the whole axis: 3 days of 24 hour columns.
    for row in dom.rows:
        assert sum(row["cells"].values()) == 72, row
    # Hour rows count hours; day rows count their days (a day cell spans 24 columns).
    hourly = dom.rows[0]["cells"]
    assert hourly == {"s": 13, "d": 11 + 23 + 9, "F": 1, "W": 1, "p": 2, "n": 12}
    assert dom.rows[2]["cells"] == {"s": 24, "d": 24, "F": 24}
    # The legend counts cells per state (a day row's day counts once) and shows every state.
    assert dom.legend == {"d": 43 + 1 + 1, "p": 2 + 1, "W": 1, "F": 1 + 1, "n": 12 + 1,
                          "s": 13 + 1 + 1 + 2}
    assert set(dom.legend) == set(STATES)
    # Hover text: the failure's last error, the wait with its age, a run's time span.
    titles = dict((s, t) for s, t in dom.rows[0]["titles"] if s in "FW")
    assert titles["F"].startswith("2026-01-14 08:00 failed (8 attempts")
    assert EVIL_ERROR in titles["F"]
    assert titles["W"] == ("2026-01-15 09:00 waiting 12m00s since the first \"being built\" "
                           "answer (4 polls): export still running")
    assert ("s", "2026-01-13 00:00–12:59 skipped") in dom.rows[0]["titles"]
    text = "".join(dom.text)
    assert __version__ in text and "2026-01-15 12:10:00" in text and "Beijing" in text
    assert "Newest failures" in text and "Being built" in text
    assert "2h10m" in text  # the hour row's freshness: 12:10 - 10:00


def test_page_escapes_every_value() -> None:
    html = render_page(snapshot(), __version__)
    dom = parse(html)
    # Nothing became an element: the only tags are the page's own.
    assert dom.tags["script"] == 0
    assert "<script" not in html.lower()
    # ... and the values still read as text, in the row header, the cell titles and the list.
    text = "".join(dom.text)
    assert EVIL_ITEM in text and EVIL_ERROR in text
    assert "&lt;script&gt;alert(&#x27;item&#x27;)&lt;/script&gt;" in html
    assert "&lt;script&gt;alert(&quot;error&quot;)&lt;/script&gt; &amp; more" in html


def test_page_loads_nothing_from_anywhere() -> None:
    html = render_page(snapshot(), __version__).lower()
    for needle in ("<script", "<link", "<img", "src=", "@import", "url(", "http://",
                   "https://", "//fonts"):
        assert needle not in html, needle


def test_render_time_for_1000_rows_of_15_days() -> None:
    """100 projects × 10 types × 15 days (16 day columns): the issue asks for < 100 ms; this
    shared CI machine gets a 5× margin, the measured time is printed (-s to see it)."""
    axis = Axis(datetime(2026, 1, 1).date(), 16)
    day = "d" * 24
    mixed = "d" * 9 + "F" + "d" * 3 + "W" + "p" * 4 + "n" * 6
    cells = "s" * 13 + "d" * 11 + day * 13 + "d" * 20 + "pppp" + mixed
    report = snapshot()
    report["grid"] = axis.to_json()
    report["projects"] = [
        {"ai": f"proj{p:04d}", "newest_complete_hour": None, "freshness_seconds": None,
         "types": [{"data_type": f"type_{t}", "export_type": "hour", "done": 1, "pending": 1,
                    "failed": 1, "newest_done": "2026011608", "cells": cells}
                   for t in range(10)]} for p in range(100)]
    best = min(_timed(render_page, report, __version__) for _ in range(3))
    print(f"render_page, 1000 rows x 16 days: {best * 1000:.0f} ms")
    assert best < 0.5


def _timed(fn: Any, *args: Any) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


# --- from a real checkpoint, over HTTP ---------------------------------------------------------

NOW = datetime(2026, 1, 15, 12, 10, tzinfo=BEIJING)
CONFIG = """\
api: {base_url: "http://127.0.0.1:1", token: not-a-real-token}
projects:
  - {ai: proj0001, data_types: [visit, page], export_types: [hour, day]}
storage: {url: "STORAGE"}
checkpoint: CHECKPOINT
schedule: {retention_days: 2}
"""


def hour(data_type: str, label: str) -> Any:
    return raw_key("proj0001", data_type, Period.from_label("hour", label))


@pytest.fixture
def real_report(tmp_path: Path) -> dict[str, Any]:
    text = CONFIG.replace("STORAGE", (tmp_path / "data").as_uri()) \
        .replace("CHECKPOINT", str(tmp_path / "checkpoint.db"))
    cfg = parse_config(text, tmp_path / "gio.yaml")
    with Checkpoint(cfg.checkpoint) as cp:
        for label in ("2026011400", "2026011401", "2026011509", "2026011310"):
            cp.done(hour("page", label))
        cp.failed(hour("page", "2026011402"), EVIL_ERROR, 8)
        cp.done(raw_key("proj0001", "page", Period.from_label("day", "20260114")))
        waiting = {hour("page", "2026011403"): Waiting(NOW - timedelta(minutes=5), 2, "running"),
                   hour("visit", "2026011403"): Waiting(NOW - timedelta(minutes=5), 2, "running"),
                   # finished since: done wins, and it is not listed as waiting
                   hour("page", "2026011509"): Waiting(NOW - timedelta(minutes=9), 3, "running")}
        return build_status(cfg, cp, NOW, waiting=waiting)


def test_build_status_cells_from_a_real_checkpoint(real_report: dict[str, Any]) -> None:
    # Retention 2 days at 01-15 12:10: the window starts at 01-13 13:00; the axis is 3 days.
    assert real_report["grid"]["first_day"] == "2026-01-13" and real_report["grid"]["days"] == 3
    rows = {(t["data_type"], t["export_type"]): t["cells"]
            for t in real_report["projects"][0]["types"]}
    page = rows[("page", "hour")]
    assert len(page) == 72
    # 01-13 10:00 is done but before the window: done wins (the data is in the lake).
    assert page[:24] == "s" * 10 + "d" + "s" * 2 + "p" * 11
    assert page[24:28] == "ddFW"  # 00, 01 done; 02 failed; 03 being built
    # 01-15: up to 10:00 due (hour lag 30 min, 11:00 is due at 12:30), 09 done, then not due.
    assert page[48:72] == "p" * 9 + "d" + "p" + "n" * 13
    assert rows[("visit", "hour")][24:28] == "pppW"
    # Days: 01-13 is not whole in the window, 01-14 done, 01-15 not due.
    assert rows[("page", "day")] == "sdn" and rows[("visit", "day")] == "spn"
    assert [w["partition"] for w in real_report["waiting"]] == [
        "proj0001/page/hour:2026011403", "proj0001/visit/hour:2026011403"]
    assert real_report["waiting"][0]["seconds"] == 300
    failed = real_report["failed"][0]
    assert (failed["source"], failed["item"], failed["partition_name"]) == (
        "raw", "proj0001/page", "hour:2026011402")


class Source:
    def __init__(self, report: dict[str, Any] | None) -> None:
        self.report = report

    def stats(self) -> Stats:
        return Stats()

    def status_report(self) -> dict[str, Any]:
        if self.report is None:
            raise OSError("disk I/O error")
        return self.report

    async def readiness(self) -> list[tuple[str, bool, str]]:
        return []

    def heartbeat_age(self) -> float:
        return 0.1


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_page_and_status_json_over_http(real_report: dict[str, Any],
                                              http: aiohttp.ClientSession) -> None:
    source = Source(real_report)
    server = HealthServer("127.0.0.1:0", source)
    await server.start()
    try:
        pages = []
        for path in ("/", "/status"):
            async with http.get(server.url + path) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
                assert "script-src" not in resp.headers["Content-Security-Policy"]
                assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")
                pages.append(await resp.text())
        assert pages[0] == pages[1]
        dom = parse(pages[0])
        assert len(dom.rows) == 4 and dom.tags["script"] == 0
        page = next(r for r in dom.rows if (r["item"], r["export"]) == ("proj0001/page", "hour"))
        assert page["cells"]["W"] == 1 and page["cells"]["F"] == 1
        async with http.get(server.url + "/status.json") as resp:
            assert resp.status == 200 and resp.content_type == "application/json"
            # The same content as `status --json`: the report, as JSON.
            assert await resp.json() == json.loads(json.dumps(real_report))
        source.report = None
        server._status = None  # the cache would hide the failure for 5 s
        for path in ("/", "/status.json"):
            async with http.get(server.url + path) as resp:
                assert resp.status == 503
                assert "checkpoint could not be read" in await resp.text()
    finally:
        await server.stop()


def test_demo_serve_prints_the_page_url_and_serves_it(tmp_path: Path) -> None:
    import re
    import signal
    import subprocess
    import sys
    import urllib.request

    from conftest import REPO, cli_env

    proc = subprocess.Popen([sys.executable, "-m", "downloader", "demo", "--dir",
                             str(tmp_path / "demo"), "--hours", "1", "--serve", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, env=cli_env())
    try:
        assert proc.stdout is not None  # the URL is a result of the demo: on stdout
        url = None
        for line in proc.stdout:
            found = re.search(r"the status page is at (http://127\.0\.0\.1:\d+/)", line)
            if found:
                url = found.group(1)
                break
        assert url is not None, "the demo printed no URL"
        with urllib.request.urlopen(url, timeout=10) as r:
            page = r.read().decode()
        assert r.status == 200 and "demo0001/page" in page and "<script" not in page
        with urllib.request.urlopen(url + "status.json", timeout=10) as r:
            assert json.load(r)["projects"][0]["ai"] == "demo0001"
        proc.send_signal(signal.SIGINT)  # a person's Ctrl-C
        _, rest = proc.communicate(timeout=30)
        assert proc.returncode == 0
        assert "status page stopped" in rest and "Traceback" not in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
