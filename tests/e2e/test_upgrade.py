"""Upgrading keeps the work done: a checkpoint written by the flat-package release (schema 1,
the committed fixture) is migrated on the first run, and nothing it records as complete is asked
for or downloaded again."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import datetime
from pathlib import Path

from conftest import run_cli, write_config

from downloader.core.constants import BEIJING

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "checkpoint-v1.db"
# The fixture's hours are 2026-11-30 10:00 and 11:00 (Beijing), done for visit and page.
NOW = datetime(2026, 11, 30, 16, 0, tzinfo=BEIJING)


def test_old_checkpoint_is_upgraded_and_done_hours_are_not_fetched(tmp_path: Path,
                                                                     start_sim) -> None:
    sim = start_sim(clock=lambda: NOW)
    checkpoint = tmp_path / "state" / "checkpoint.db"
    checkpoint.parent.mkdir()
    shutil.copy(FIXTURE, checkpoint)
    cfg = write_config(tmp_path, sim.url, projects=[
        {"ai": "testai01", "data_types": ["visit", "page"], "export_types": ["hour"]}])
    result = run_cli("backfill", "-c", str(cfg), "--from", "2026113010", "--to", "2026113011",
                     GIO_DOWNLOADER_FAKE_NOW=NOW.isoformat())
    assert result.returncode == 0, result.stderr
    assert "backfill: 0 partitions, 0 parts, 0 B in" in result.stderr
    assert "; 4 already done; 0 failed" in result.stderr
    assert sim.stats.api_calls == [] and sim.stats.downloads == []
    with sqlite3.connect(checkpoint) as db:
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("2",)

    # The hour after them was pending in the old file: it is completed now, from the API.
    result = run_cli("backfill", "-c", str(cfg), "--from", "2026113012", "--to", "2026113012",
                     GIO_DOWNLOADER_FAKE_NOW=NOW.isoformat())
    assert result.returncode == 0, result.stderr
    assert "backfill: 2 partitions, " in result.stderr
    assert len(sim.stats.api_calls) == 1
