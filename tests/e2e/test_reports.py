"""End to end: the statistics source through the real CLI against the statistics simulator on
loopback, every stored byte compared with what the simulator served."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import TOKEN, run_cli, sha256_file, write_config

from downloader.core.constants import BEIJING
from downloader.sim.stats.app import (
    Dashboard,
    DashboardChart,
    StatsFaults,
    StatsSimConfig,
    StatsSimulator,
)
from downloader.sim.stats.run import RunningStatsSimulator, start_stats_simulator
from downloader.sources.stats.table import to_csv

UID = "nxog09md"
CLIENT_ID = "test-client"


def beijing_today() -> date:
    return datetime.now(BEIJING).date()


@pytest.fixture
def start_stats() -> Iterator[Callable[..., RunningStatsSimulator]]:
    started: list[RunningStatsSimulator] = []

    def start(**overrides: Any) -> RunningStatsSimulator:
        overrides.setdefault("token", TOKEN)
        overrides.setdefault("client_id", CLIENT_ID)
        overrides.setdefault("report_lag_minutes", 0)
        running = start_stats_simulator(StatsSimConfig(**overrides))
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


def reports_config(tmp_path: Path, url: str, reports: list[dict[str, Any]],
                   with_projects: bool = False, **sections: Any) -> Path:
    """A config with reports: (and the raw projects: of conftest when asked); lag 0, so that
    yesterday is due and today's snapshots may be taken whatever the time of day."""
    path = write_config(tmp_path, url, reports=reports, **sections)
    cfg = yaml.safe_load(path.read_text())
    if not with_projects:
        cfg.pop("projects")
    cfg["schedule"] = {**cfg.get("schedule", {}), "report_lag_minutes": 0}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def folder(root: Path, report: str, ident: str | None, day: date) -> Path:
    f = root / "reports" / f"project_uid={UID}" / f"report={report}"
    if ident is not None:
        f = f / f"id={ident}"
    return f / f"date={day:%Y-%m-%d}"


def assert_sealed(path: Path, expected: dict[str, bytes]) -> dict[str, Any]:
    """The folder holds exactly these files and a _SUCCESS that lists them."""
    assert sorted(p.name for p in path.iterdir()) == sorted([*expected, "_SUCCESS"]), path
    for name, data in expected.items():
        assert (path / name).read_bytes() == data, path / name
    manifest = json.loads((path / "_SUCCESS").read_text())
    assert [(p["name"], p["bytes"], p["sha256"]) for p in manifest["parts"]] == \
        [(n, len(d), sha256_file(path / n)) for n, d in expected.items()]
    return manifest


def assert_windowed(sim: StatsSimulator, root: Path, report: str, ident: str, day: date,
                    interval_ms: int = 86_400_000) -> None:
    kind = {"chart": "charts", "funnel": "funnels", "retention": "retentions",
            "frequency": "frequencies"}[report]
    body = sim.expected_result(UID, kind, ident, day, interval_ms)
    manifest = assert_sealed(folder(root, report, ident, day),
                             {"response.json": body, "data.csv": to_csv(body)})
    assert manifest["report"] == report and manifest["id"] == ident


def assert_users(sim: StatsSimulator, root: Path, report: str, ident: str,
                 parameters: tuple[str, ...] = ()) -> None:
    kind = {"segment_users": "segmentations", "tag_users": "tags"}[report]
    day = sim.today()
    parts = sim.expected_user_parts(UID, kind, ident, day, parameters)
    assert_sealed(folder(root, report, ident, day),
                  {f"part-{i:05d}.csv": p for i, p in enumerate(parts)})


def test_reports_only_config_lands_every_kind_byte_exact(tmp_path: Path, start_stats) -> None:
    dashboard = Dashboard("Db01Ab23", "看板", (
        DashboardChart("YoX28w7R", "dup of explicit", "chart"),
        DashboardChart("Ch02Ab23", "chart", "chart"),
        DashboardChart("Fn02Ab23", "funnel", "funnel"),
        DashboardChart("Rt02Ab23", "retention", "retention")))
    sim = start_stats(doing_polls=2, dashboards={UID: (dashboard,)},
                      segmentations={UID: ("Sg01Ab23", "Sg02Ab23")})
    cfg = reports_config(tmp_path, sim.url, [{
        "project_uid": UID, "charts": ["YoX28w7R"], "funnels": ["Fn01Ab23"],
        "retentions": ["Rt01Ab23"], "frequencies": ["Fq01Ab23"], "dashboards": "all",
        "segments": "all", "tags": ["Tg01Ab23"], "user_variables": ["user_name", "city"],
        "rules": True, "interval": "hour"}])
    yesterday = beijing_today() - timedelta(days=1)
    first = (yesterday - timedelta(days=2)).strftime("%Y%m%d00")
    result = run_cli("backfill", "-c", str(cfg), "--from", first)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    root = tmp_path / "data"
    for n in range(3):
        day = yesterday - timedelta(days=n)
        assert_windowed(sim.sim, root, "chart", "YoX28w7R", day, 3_600_000)
        assert_windowed(sim.sim, root, "chart", "Ch02Ab23", day, 3_600_000)
        assert_windowed(sim.sim, root, "funnel", "Fn01Ab23", day)
        assert_windowed(sim.sim, root, "funnel", "Fn02Ab23", day)
        assert_windowed(sim.sim, root, "retention", "Rt01Ab23", day)
        assert_windowed(sim.sim, root, "retention", "Rt02Ab23", day)
        assert_windowed(sim.sim, root, "frequency", "Fq01Ab23", day)
    for seg in ("Sg01Ab23", "Sg02Ab23"):
        assert_users(sim.sim, root, "segment_users", seg, ("user_name", "city"))
    assert_users(sim.sim, root, "tag_users", "Tg01Ab23", ("user_name", "city"))
    assert_sealed(folder(root, "rules", None, sim.sim.today()),
                  {"rules.csv": sim.sim.expected_rules(UID)})
    # Past snapshot days: one line, at the default level, naming them skipped.
    skipped = [line for line in result.stdout.splitlines() if "skipped" in line]
    assert len(skipped) == 1 and "3 past snapshot days skipped" in skipped[0]
    calls = sim.sim.stats.calls
    # Each dashboard item asked once per day although it is also listed explicitly.
    chart_days = [c for c in calls if c.path.endswith("/charts/YoX28w7R") and c.reason == "result"]
    assert len(chart_days) == 3
    assert not [c for c in calls if c.status_code in (400, 401) or c.early]
    assert not [c for c in calls if c.reason == "unknown_path"]
    assert not list(root.rglob(".*")), "temporary files left behind"
    assert TOKEN not in result.stdout + result.stderr
    for path in [*root.rglob("*"), *(tmp_path / "state").iterdir()]:
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
            assert b"sign=" not in path.read_bytes() or path.suffix == ".csv", path
    # Everything is committed: a second run asks only for the lists, never for an item.
    before = len(calls)
    again = run_cli("backfill", "-c", str(cfg), "--from", first)
    assert again.returncode == 0, again.stderr
    new = sim.sim.stats.calls[before:]
    assert {c.path.rsplit("/", 1)[-1] for c in new} <= {"dashboards.json", "Db01Ab23.json",
                                                        "segmentations.json"}


def test_failed_job_is_resubmitted_and_its_message_shown(tmp_path: Path, start_stats) -> None:
    sim = start_stats(faults=StatsFaults(failed=1))
    cfg = reports_config(tmp_path, sim.url, [{"project_uid": UID, "tags": ["Tg01Ab23"]}])
    result = run_cli("backfill", "-c", str(cfg), "--days", "1")
    assert result.returncode == 0, result.stderr
    assert "下载出错，请您稍后重试" in result.stdout + result.stderr
    assert_users(sim.sim, tmp_path / "data", "tag_users", "Tg01Ab23")


def test_every_job_failing_exits_1_after_max_job_attempts(tmp_path: Path, start_stats) -> None:
    sim = start_stats(faults=StatsFaults(failed=100))
    cfg = reports_config(tmp_path, sim.url, [{"project_uid": UID, "charts": ["YoX28w7R"]}],
                         retry={"max_job_attempts": 2})
    result = run_cli("backfill", "-c", str(cfg), "--days", "2")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "1 failed" in result.stderr and "export job failed" in result.stderr
    assert len([c for c in sim.sim.stats.calls if c.reason == "failed"]) == 2


def test_429_and_5xx_are_retried(tmp_path: Path, start_stats) -> None:
    sim = start_stats(faults=StatsFaults(api_500=2, api_429=2, retry_after_seconds=0.2,
                                         download_500=1, drop=1))
    cfg = reports_config(tmp_path, sim.url, [{"project_uid": UID, "funnels": ["Fn01Ab23"],
                                              "segments": ["Sg01Ab23"]}])
    result = run_cli("backfill", "-c", str(cfg), "--days", "2")
    assert result.returncode == 0, result.stderr
    root = tmp_path / "data"
    assert_windowed(sim.sim, root, "funnel", "Fn01Ab23", beijing_today() - timedelta(days=1))
    assert_users(sim.sim, root, "segment_users", "Sg01Ab23")
    reasons = [c.reason for c in sim.sim.stats.calls]
    assert reasons.count("fault_500") == 2 and reasons.count("fault_429") == 2


def test_expired_links_are_asked_for_again(tmp_path: Path, start_stats) -> None:
    # The simulator's clock jumps an hour ahead for the first two link checks only: the first
    # links are expired when fetched (403), so the engine asks the same GET again.
    seen = {"n": 0}

    def clock() -> datetime:
        seen["n"] += 1
        jump = timedelta(hours=1) if seen["n"] in (3, 4) else timedelta(0)
        return datetime.now(UTC) + jump

    sim = start_stats(clock=clock, doing_polls=0, link_ttl_seconds=60)
    cfg = reports_config(tmp_path, sim.url, [{"project_uid": UID, "tags": ["Tg01Ab23"]}])
    result = run_cli("backfill", "-c", str(cfg), "--days", "1")
    assert result.returncode == 0, result.stderr
    assert_users(sim.sim, tmp_path / "data", "tag_users", "Tg01Ab23")
    outcomes = [d.outcome for d in sim.sim.stats.downloads]
    assert outcomes.count("expired") >= 1 and outcomes.count("ok") == 2
    assert len([c for c in sim.sim.stats.calls if c.reason == "done"]) == 2


def test_a_missing_item_fails_alone_with_one_line(tmp_path: Path, start_stats) -> None:
    sim = start_stats(missing_ids=frozenset({"Fn09Ab23", "Db09Ab23"}))
    cfg = reports_config(tmp_path, sim.url, [{
        "project_uid": UID, "funnels": ["Fn09Ab23", "Fn01Ab23"], "dashboards": ["Db09Ab23"]}])
    result = run_cli("backfill", "-c", str(cfg), "--days", "2")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    failed = [line for line in result.stderr.splitlines() if line.startswith("  failed")]
    assert len(failed) == 2, result.stderr
    assert any("funnel Fn09Ab23 of project nxog09md" in f and "404" in f for f in failed)
    assert any("dashboard Db09Ab23 of project nxog09md" in f for f in failed)
    assert_windowed(sim.sim, tmp_path / "data", "funnel", "Fn01Ab23",
                    beijing_today() - timedelta(days=1))


def test_no_dashboards_is_a_warning(tmp_path: Path, start_stats) -> None:
    sim = start_stats(dashboards={UID: ()})
    cfg = reports_config(tmp_path, sim.url, [{"project_uid": UID, "dashboards": "all"}])
    result = run_cli("backfill", "-c", str(cfg), "--days", "2")
    assert result.returncode == 0, result.stderr
    assert "has no dashboards" in result.stdout


def test_wrong_token_stops_naming_api_token(tmp_path: Path, start_stats) -> None:
    sim = start_stats(token="another-token")
    cfg = reports_config(tmp_path, sim.url, [{"project_uid": UID, "charts": ["YoX28w7R"],
                                              "dashboards": "all"}])
    result = run_cli("backfill", "-c", str(cfg), "--days", "2")
    assert result.returncode == 2, result.stderr
    assert "api.token" in result.stderr and "Traceback" not in result.stderr
    assert len(sim.sim.stats.calls) == 1  # the first refusal stops the run


def test_rate_stays_within_2_a_second(tmp_path: Path, start_stats) -> None:
    sim = start_stats(faults=StatsFaults(enforce_rate_limit=True), doing_polls=1)
    cfg = reports_config(tmp_path, sim.url, [{"project_uid": UID,
                                              "charts": ["YoX28w7R", "Ch02Ab23"],
                                              "tags": ["Tg01Ab23"]}],
                         api={"rate_limit_per_second": 2})
    result = run_cli("backfill", "-c", str(cfg), "--days", "2")
    assert result.returncode == 0, result.stderr
    stats = sim.sim.stats
    assert not [c for c in stats.calls if c.reason == "rate_limited"]
    assert stats.max_calls_in_any_window() <= 2


def test_list_calls_are_retried_before_planning(tmp_path: Path, start_stats) -> None:
    sim = start_stats(faults=StatsFaults(api_500=1, api_429=1, retry_after_seconds=0.2))
    cfg = reports_config(tmp_path, sim.url, [{"project_uid": UID, "segments": "all"}])
    result = run_cli("backfill", "-c", str(cfg), "--days", "1")
    assert result.returncode == 0, result.stderr
    for seg in sim.sim.segmentations_of(UID):
        assert_users(sim.sim, tmp_path / "data", "segment_users", seg)
    reasons = [c.reason for c in sim.sim.stats.calls]
    assert reasons[:3] == ["fault_500", "fault_429", "ok"]


def test_an_unusable_result_is_kept_as_response_json_and_the_partition_fails(
        tmp_path: Path, start_stats) -> None:
    sim = start_stats()
    sim.sim.config.faults.unusable_result = 1
    cfg = reports_config(tmp_path, sim.url, [{"project_uid": UID, "charts": ["YoX28w7R"]}])
    day = beijing_today() - timedelta(days=1)
    result = run_cli("backfill", "-c", str(cfg), "--from", f"{day:%Y%m%d}00",
                     "--to", f"{day:%Y%m%d}23")
    assert result.returncode == 1, result.stderr
    failed = [line for line in result.stderr.splitlines() if line.startswith("  failed")]
    assert len(failed) == 1 and "unusable result" in failed[0], result.stderr
    assert "data.csv is not written" in failed[0] and "Traceback" not in result.stderr
    where = folder(tmp_path / "data", "chart", "YoX28w7R", day)
    assert sorted(p.name for p in where.iterdir()) == ["response.json"]  # kept, not sealed
    assert (where / "response.json").read_bytes().startswith(b"<html>")
    # The next run asks again and seals the real result; the kept body is replaced.
    again = run_cli("backfill", "-c", str(cfg), "--from", f"{day:%Y%m%d}00",
                    "--to", f"{day:%Y%m%d}23")
    assert again.returncode == 0, again.stderr
    assert_windowed(sim.sim, tmp_path / "data", "chart", "YoX28w7R", day)
