"""The status page as a person sees it: headless Chromium opens the page that a real daemon
serves while it backfills from the bundled simulator, the DOM is checked, a screenshot kept.

The PNG goes to .ci/artifacts/status-page.png (ignored by git); with GIO_STATUS_PAGE_PNG set it
is also copied there (that is how docs/status-page.png is regenerated, see the README). Without
Chromium (Debian package ``chromium``, installed by .ci/run when the registry answers) the test
is skipped, saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, cli_env, write_config
from test_page import Dom, parse

from downloader.core.clock import ScaledClock
from downloader.core.constants import BEIJING
from downloader.service.grid import STATES

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian package 'chromium'; .ci/run "
                             "installs it when the package registry answers): the status page "
                             "was not opened in a browser")

ARTIFACT = REPO / ".ci" / "artifacts" / "status-page.png"
# 10:20 Beijing: 08:00 is the newest due hour, 09:00 onwards is not due yet today.
START = datetime(2026, 11, 20, 10, 20, tzinfo=BEIJING)
PROJECTS = [{"ai": "shop0001", "data_types": ["page", "visit", "custom_event"],
             "export_types": ["hour", "day"]},
            {"ai": "app00002", "data_types": ["page", "visit"], "export_types": ["hour"]}]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def daemon(tmp_path: Path, start_sim: Any) -> Iterator[str]:
    """A real `gio-downloader run` mid-backfill: each export is "being built" for a poll,
    downloads are throttled so that the two workers stay busy (most of the window is still
    pending for a while), and the first two asks fail with HTTP 500 and, with one attempt
    allowed, stay failed."""
    sim = start_sim(clock=ScaledClock(START, 1.0).now, running_polls=1, parts_per_type=1,
                    retention_days=2)
    sim.faults.api_500 = 2
    sim.faults.throttle_bytes_per_second = 32 * 1024
    port = free_port()
    cfg = write_config(tmp_path, sim.url, projects=PROJECTS,
                       api={"rate_limit_per_second": 2},
                       concurrency={"partitions": 2},
                       retry={"max_attempts": 1, "initial_backoff_seconds": 1,
                              "max_backoff_seconds": 600},
                       schedule={"retention_days": 2, "running_poll_max_seconds": 2},
                       health={"listen": f"127.0.0.1:{port}"})
    log = (tmp_path / "daemon.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "downloader", "run", "-c", str(cfg)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                            env=cli_env(GIO_DOWNLOADER_FAKE_NOW=START.isoformat(),
                                        GIO_DOWNLOADER_CLOCK_RATE="1"))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def letters(report: dict[str, Any]) -> Counter[str]:
    out: Counter[str] = Counter()
    for project in report["projects"]:
        for t in project["types"]:
            out.update(t["cells"])
    return out


def wait_mid_backfill(url: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen: Counter[str] = Counter()
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/status.json", timeout=10) as r:
                report = json.load(r)
        except OSError:
            time.sleep(0.5)
            continue
        seen = letters(report)
        if seen["d"] >= 18 and all(seen[s] for s in STATES):
            return report
        time.sleep(1)
    raise AssertionError(f"the daemon never showed every state at once: {dict(seen)}")


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                           "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}",
                           *args], capture_output=True, text=True, timeout=90)


def test_status_page_in_chromium_mid_backfill(daemon: str, tmp_path: Path) -> None:
    report = wait_mid_backfill(daemon)
    days = report["grid"]["days"]
    assert days == 3
    dom: Dom | None = None
    for _ in range(5):  # exports finish and start all the time: catch one with every state
        result = chromium("--dump-dom", daemon + "/", profile=tmp_path / "profile")
        assert result.returncode == 0, result.stderr[-2000:]
        dom = parse(result.stdout)
        if all(dom.totals()[s] for s in STATES):
            break
        time.sleep(2)
    assert dom is not None
    totals = dom.totals()
    # Every state is on the page, with as many cells as the legend says.
    assert all(totals[s] > 0 for s in STATES), dict(totals)
    # (a day row's cell spans 24 columns and counts as one in the legend)
    day_rows = [r for r in dom.rows if r["export"] == "day"]
    per_day = Counter({s: sum(r["cells"][s] for r in day_rows) for s in STATES})
    legend = totals - per_day + Counter({s: n // 24 for s, n in per_day.items()})
    assert dom.legend == {s: legend[s] for s in STATES}
    assert sorted((r["item"], r["export"]) for r in dom.rows) == sorted([
        ("shop0001/page", "hour"), ("shop0001/visit", "hour"), ("shop0001/custom_event", "hour"),
        ("shop0001/page", "day"), ("shop0001/visit", "day"), ("shop0001/custom_event", "day"),
        ("app00002/page", "hour"), ("app00002/visit", "hour")])
    for row in dom.rows:
        assert sum(row["cells"].values()) == days * 24, row
        # 11:00 two days ago starts the window: the hours before are skipped; today from
        # 09:00 on is not due yet.
        if row["export"] == "hour":
            assert row["cells"]["s"] == 11 and row["cells"]["n"] == 15, row
    failed = [t for r in dom.rows for s, t in r["titles"] if s == "F"]
    assert failed and all("HTTP 500" in t for t in failed)
    waiting = [t for r in dom.rows for s, t in r["titles"] if s == "W"]
    assert waiting and all("since the first \"being built\" answer" in t for t in waiting)

    shot = tmp_path / "status-page.png"
    result = chromium("--window-size=1400,760", f"--screenshot={shot}", daemon + "/",
                      profile=tmp_path / "profile")
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, ARTIFACT)
    if os.environ.get("GIO_STATUS_PAGE_PNG"):
        shutil.copyfile(shot, Path(os.environ["GIO_STATUS_PAGE_PNG"]))
