"""The statistics source in a whole process: killed with SIGKILL in the middle of a user-list
download and restarted, and running beside the raw exports in one process, one host."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import TOKEN, assert_partition_exact, run_cli, write_config
from test_reports import UID, assert_users, assert_windowed, folder

from downloader.core.constants import BEIJING
from downloader.sim.raw.app import Simulator
from downloader.sim.raw.faults import SimConfig
from downloader.sim.stats.app import StatsSimConfig, StatsSimulator
from downloader.sim.stats.run import start_stats_simulator
from downloader.sim.thread import AppThread, start_app_thread


def _config(tmp_path: Path, url: str, reports: list[dict[str, Any]],
            projects: list[dict[str, Any]] | None = None, **sections: Any) -> Path:
    path = write_config(tmp_path, url, reports=reports, **sections)
    cfg = yaml.safe_load(path.read_text())
    if projects is None:
        cfg.pop("projects")
    else:
        cfg["projects"] = projects
    cfg["schedule"] = {**cfg.get("schedule", {}), "report_lag_minutes": 0, "day_lag_minutes": 0}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_kill_mid_user_list_then_restart_completes(tmp_path: Path) -> None:
    running = start_stats_simulator(StatsSimConfig(
        token=TOKEN, client_id="test-client", report_lag_minutes=0, link_count=3,
        user_rows_per_part=3000))
    try:
        sim = running.sim
        today = sim.today()
        parts = sim.expected_user_parts(UID, "segmentations", "Sg01Ab23", today)
        cfg = _config(tmp_path, running.url,
                      [{"project_uid": UID, "segments": ["Sg01Ab23"], "funnels": ["Fn01Ab23"]}],
                      concurrency={"downloads": 1, "partitions": 2})
        kill_after = len(parts[0]) + len(parts[1]) // 2
        killed = run_cli("backfill", "-c", str(cfg), "--days", "2",
                         GIO_DOWNLOADER_KILL_AFTER_BYTES=str(kill_after))
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        seg = folder(tmp_path / "data", "segment_users", "Sg01Ab23", today)
        assert not (seg / "_SUCCESS").exists()
        stored = {p.name for p in seg.iterdir() if p.name.startswith("part-")}
        assert "part-00000.csv" in stored and len(stored) < 3
        funnel_done = (folder(tmp_path / "data", "funnel", "Fn01Ab23",
                              today - timedelta(days=1)) / "_SUCCESS").exists()
        calls_before = len(sim.stats.calls)
        downloads_before = len(sim.stats.downloads)

        again = run_cli("backfill", "-c", str(cfg), "--days", "2")
        assert again.returncode == 0, again.stderr
        assert_users(sim, tmp_path / "data", "segment_users", "Sg01Ab23")
        assert_windowed(sim, tmp_path / "data", "funnel", "Fn01Ab23",
                        today - timedelta(days=1))
        assert not list((tmp_path / "data").rglob(".*")), "temporary files left behind"
        # The restart fetched no committed part again and asked nothing about done partitions.
        fetched = {d.index for d in sim.stats.downloads[downloads_before:] if d.outcome == "ok"}
        assert fetched == {i for i in range(3) if f"part-{i:05d}.csv" not in stored}
        new_calls = sim.stats.calls[calls_before:]
        if funnel_done:
            assert not [c for c in new_calls if "/funnels/" in c.path]
        # A third run has nothing to do and asks nothing.
        settled = len(sim.stats.calls)
        third = run_cli("backfill", "-c", str(cfg), "--days", "2")
        assert third.returncode == 0, third.stderr
        assert len(sim.stats.calls) == settled
    finally:
        running.stop()


@pytest.fixture
def mounted(part_cache: Path) -> Iterator[tuple[str, Simulator, StatsSimulator]]:
    """The raw simulator's app with the statistics routes mounted on it: one host, one port."""
    raw = Simulator(SimConfig(token=TOKEN, cache_dir=part_cache, part_size=16 * 1024,
                              running_polls=0, parts_per_type=2))
    stats = StatsSimulator(StatsSimConfig(token=TOKEN, client_id="test-client",
                                          report_lag_minutes=0))
    app = raw.make_app()
    stats.add_routes(app, control_prefix="/_sim/reports")
    server: AppThread = start_app_thread(app, "127.0.0.1", 0, "test-mounted")
    try:
        yield server.url, raw, stats
    finally:
        server.stop()
        raw.close()


def test_projects_and_reports_in_one_process(tmp_path: Path,
                                             mounted: tuple[str, Simulator, StatsSimulator]
                                             ) -> None:
    url, raw, stats = mounted
    yesterday = datetime.now(BEIJING).date() - timedelta(days=1)
    cfg = _config(tmp_path, url, [{"project_uid": UID, "charts": ["YoX28w7R"],
                                   "tags": ["Tg01Ab23"], "rules": True}],
                  projects=[{"ai": "testai01", "data_types": ["page"],
                             "export_types": ["day"]}],
                  api={"rate_limit_per_second": 2})
    first = yesterday.strftime("%Y%m%d00")
    last = yesterday.strftime("%Y%m%d23")
    result = run_cli("backfill", "-c", str(cfg), "--from", first, "--to", last)
    assert result.returncode == 0, result.stderr
    root = tmp_path / "data"
    assert_partition_exact(raw, root, "testai01", "page", "day", yesterday.strftime("%Y%m%d"))
    assert_windowed(stats, root, "chart", "YoX28w7R", yesterday)
    # Today is outside the window: snapshots are skipped and said so, not failures.
    assert not (root / "reports" / f"project_uid={UID}" / "report=tag_users").exists()
    assert any("skipped" in line for line in result.stdout.splitlines())
    # Both sources shared one budget of 2 calls a second on the host.
    times = sorted([c.t for c in stats.stats.calls] +
                   [c.t for c in raw.stats.api_calls])
    assert max(sum(1 for u in times if t <= u < t + 1.0) for t in times) <= 2
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    done = {e["partition"] for e in lines if e.get("event") == "partition done"}
    assert f"{UID}/chart/YoX28w7R/day:{yesterday:%Y%m%d}" in done
