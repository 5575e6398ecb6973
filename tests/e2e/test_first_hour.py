"""What a new user meets in the first hour: a quiet log at the default level with a summary that
adds up, a pipe into head, a wrong token that leaves nothing behind, a secret file with a
trailing newline."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from conftest import REPO, cli_env, hour_label, past_days, run_cli, write_config

TYPES = ["visit", "page", "custom_event"]


def test_default_level_shows_start_progress_warnings_and_the_summary_only(
        tmp_path: Path, start_sim) -> None:
    sim = start_sim(parts_per_type=2, running_polls=1)
    cfg = write_config(tmp_path, sim.url, log={"format": "json", "level": "info"},
                       projects=[{"ai": "testai01", "data_types": TYPES,
                                  "export_types": ["hour"]}])
    first = hour_label(past_days(2))
    last = hour_label(past_days(2) + timedelta(hours=11))
    result = run_cli("backfill", "-c", str(cfg), "--from", first, "--to", last)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines() + result.stderr.splitlines()
    # 36 partitions, each RUNNING once: not a line per partition or poll.
    assert len(lines) <= 12, "\n".join(lines)
    assert "partition done" not in result.stdout and "not ready" not in result.stdout
    summary = [line for line in result.stderr.splitlines() if line.startswith("backfill:")]
    assert len(summary) == 1
    assert summary[0].startswith("backfill: 36 partitions, 72 parts, ")
    assert "; 0 already done; 0 failed" in summary[0]


def test_status_into_head_exits_quietly(tmp_path: Path, start_sim) -> None:
    sim = start_sim(parts_per_type=1)
    cfg = write_config(tmp_path, sim.url, projects=[
        {"ai": f"testai{i:02d}", "data_types": TYPES, "export_types": ["hour", "day"]}
        for i in range(30)])
    shell = (f"{sys.executable} -m downloader status -c {cfg} | head -3; "
             "exit ${PIPESTATUS[0]}")
    result = subprocess.run(["bash", "-c", shell], capture_output=True, text=True,
                            env=cli_env(), cwd=REPO, timeout=60)
    assert len(result.stdout.splitlines()) == 3
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_wrong_token_is_one_line_and_leaves_no_checkpoint(tmp_path: Path, start_sim) -> None:
    sim = start_sim()
    cfg = write_config(tmp_path, sim.url)
    label = hour_label(past_days(2) + timedelta(hours=3))
    result = run_cli("backfill", "-c", str(cfg), "--from", label, "--to", label,
                     GIO_TEST_TOKEN="not-the-token")
    assert result.returncode == 2, result.stderr
    assert "check api.token" in result.stderr and "Traceback" not in result.stderr
    assert "not-the-token" not in result.stdout + result.stderr
    state = tmp_path / "state"
    assert not state.exists() or list(state.iterdir()) == [], list(state.iterdir())


def test_token_with_a_trailing_newline_is_a_config_error(tmp_path: Path, start_sim) -> None:
    sim = start_sim()
    cfg = write_config(tmp_path, sim.url)
    result = run_cli("backfill", "-c", str(cfg), "--days", "1",
                     GIO_TEST_TOKEN="secret-from-a-file\n")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "api.token" in result.stderr
    assert "control character" in result.stderr and "secret-from-a-file" not in result.stderr
    assert sim.stats.api_calls == []
