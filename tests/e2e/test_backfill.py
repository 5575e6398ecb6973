"""End to end: the real CLI against the simulator over real HTTP, bytes compared exactly."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from conftest import (
    TOKEN,
    assert_partition_exact,
    hour_label,
    past_days,
    run_cli,
    write_config,
)

TYPES = ["visit", "page", "custom_event"]


def hours_of(first_label: str, count: int) -> list[str]:
    from downloader.core.partitions import parse_hour

    first = parse_hour(first_label)
    return [hour_label(first + timedelta(hours=i)) for i in range(count)]


def test_multi_day_backfill_is_byte_exact(tmp_path: Path, start_sim) -> None:
    sim = start_sim(parts_per_type=2, running_polls=1)
    cfg = write_config(tmp_path, sim.url, projects=[
        {"ai": "testai01", "data_types": TYPES, "export_types": ["hour", "day"]}])
    day1, day2 = past_days(3), past_days(2)
    first, last = hour_label(day1), hour_label(day2 + timedelta(hours=23))
    result = run_cli("backfill", "-c", str(cfg), "--from", first, "--to", last)
    assert result.returncode == 0, result.stderr
    root = tmp_path / "data"
    parts = 0
    for label in hours_of(first, 48):
        for t in TYPES:
            parts += assert_partition_exact(sim.sim, root, "testai01", t, "hour", label)
    for day in (day1, day2):
        for t in TYPES:
            parts += assert_partition_exact(sim.sim, root, "testai01", t, "day",
                                            day.strftime("%Y%m%d"))
    assert parts == 50 * 3 * 2
    assert not list(root.rglob(".*")), "temporary files left behind"
    # One all-types call per period, plus one more for each first RUNNING answer.
    finished = [c for c in sim.stats.api_calls if c.status == "FINISHED"]
    assert len(finished) == 50
    assert all("/v2/insights/" in c.path and c.path.count("/") == 5 for c in finished)
    # The log is JSON lines and never shows the token.
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert any(e["event"] == "partition done" for e in lines)
    assert TOKEN not in result.stdout + result.stderr
    # Nor does the checkpoint, the output, or the signed links' query strings anywhere.
    for path in [*root.rglob("_SUCCESS"), *(tmp_path / "state").iterdir()]:
        data = path.read_bytes()
        assert TOKEN.encode() not in data and b"Signature=" not in data, path
    assert "Signature=" not in result.stdout + result.stderr
    # A second run finds everything done and asks the API nothing.
    calls_before = len(sim.stats.api_calls)
    again = run_cli("backfill", "-c", str(cfg), "--from", first, "--to", last)
    assert again.returncode == 0, again.stderr
    assert len(sim.stats.api_calls) == calls_before
    assert "150 already done" in again.stderr


def test_single_type_project_uses_single_type_endpoint(tmp_path: Path, start_sim) -> None:
    sim = start_sim(parts_per_type=3)
    cfg = write_config(tmp_path, sim.url, projects=[
        {"ai": "single01", "data_types": ["page"], "export_types": ["hour"]}])
    first = hour_label(past_days(2) + timedelta(hours=5))
    result = run_cli("backfill", "-c", str(cfg), "--from", first, "--to", first)
    assert result.returncode == 0, result.stderr
    assert_partition_exact(sim.sim, tmp_path / "data", "single01", "page", "hour", first)
    (call,) = sim.stats.api_calls
    assert call.path.startswith("/v2/insights/hour/page/single01/")


def test_empty_type_still_gets_success(tmp_path: Path, start_sim) -> None:
    sim = start_sim(empty_types=("custom_event",))
    cfg = write_config(tmp_path, sim.url)
    first = hour_label(past_days(2) + timedelta(hours=3))
    result = run_cli("backfill", "-c", str(cfg), "--from", first, "--to", first)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "data/ai=testai01/data_type=custom_event/export_type=hour"
    (success,) = folder.rglob("_SUCCESS")
    manifest = json.loads(success.read_text())
    assert manifest["parts"] == [] and manifest["total_bytes"] == 0
    assert [p.name for p in success.parent.iterdir()] == ["_SUCCESS"]


def test_not_due_periods_are_skipped_and_never_requested(tmp_path: Path, start_sim) -> None:
    sim = start_sim()
    cfg = write_config(tmp_path, sim.url)
    from conftest import beijing_now

    now = beijing_now()
    first = hour_label(now - timedelta(hours=3))
    last = hour_label(now + timedelta(hours=2))
    result = run_cli("backfill", "-c", str(cfg), "--from", first, "--to", last)
    assert result.returncode == 0, result.stderr
    assert "not due yet" in result.stdout
    assert all(c.reason != "not_due" for c in sim.stats.api_calls)
    assert sim.stats.api_calls, "the due hours were requested"


def test_failed_partition_exit_1_with_summary(tmp_path: Path, start_sim) -> None:
    sim = start_sim(retention_days=1)  # the simulator has already dropped older data
    cfg = write_config(tmp_path, sim.url, retry={"max_attempts": 2,
                                                 "initial_backoff_seconds": 0.01,
                                                 "not_ready_grace_minutes": 0})
    first = hour_label(past_days(3) + timedelta(hours=5))
    result = run_cli("backfill", "-c", str(cfg), "--from", first, "--to", first)
    assert result.returncode == 1, result.stderr
    assert "3 failed" in result.stderr
    assert "NOT_EXISTS" in result.stderr or "does not exist" in result.stderr
    status = run_cli("status", "-c", str(cfg), "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert {f["partition"] for f in report["failed"]} == {
        f"testai01/{t}/hour:{first}" for t in TYPES}


def test_bad_token_stops_with_clear_error(tmp_path: Path, start_sim) -> None:
    sim = start_sim(token="another-token")
    cfg = write_config(tmp_path, sim.url)
    first = hour_label(past_days(2))
    result = run_cli("backfill", "-c", str(cfg), "--from", first, "--to", first)
    assert result.returncode == 2
    assert "HTTP 401" in result.stderr and "api.token" in result.stderr
    assert TOKEN not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_status_reports_done_and_pending(tmp_path: Path, start_sim) -> None:
    sim = start_sim()
    cfg = write_config(tmp_path, sim.url)
    first = hour_label(past_days(1) + timedelta(hours=2))
    last = hour_label(past_days(1) + timedelta(hours=3))
    assert run_cli("backfill", "-c", str(cfg), "--from", first, "--to", last).returncode == 0
    result = run_cli("status", "-c", str(cfg), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    (project,) = report["projects"]
    for t in project["types"]:
        assert t["done"] == 2 and t["failed"] == 0 and t["pending"] > 0
        assert t["newest_done"] == last
    assert project["newest_complete_hour"] == last
    assert project["freshness_seconds"] > 0
    text = run_cli("status", "-c", str(cfg))
    assert text.returncode == 0 and "testai01" in text.stdout and last in text.stdout
