"""kill -9 during a backfill, several times, then a restart: nothing lost, nothing fetched twice."""

from __future__ import annotations

import random
import signal
import sqlite3
import time
from datetime import timedelta
from pathlib import Path

from conftest import (
    assert_partition_exact,
    hour_label,
    past_days,
    run_cli,
    start_cli,
    write_config,
)

TYPES = ["visit", "page", "custom_event"]


def finished_parts(checkpoint: Path) -> set[tuple[str, int]]:
    """(partition folder key as the simulator names it, index) of parts the checkpoint holds."""
    if not checkpoint.exists():
        return set()
    db = sqlite3.connect(checkpoint)
    try:
        rows = db.execute("SELECT item, partition, idx FROM parts WHERE source='raw'").fetchall()
    finally:
        db.close()
    out = set()
    for item, partition, idx in rows:
        ai, data_type = item.split("/")
        export_type, label = partition.split(":")
        out.add((f"{ai}/{export_type}/{data_type}/{label}", idx))
    return out


def temp_sizes(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_size for p in root.rglob(".part-*.partial")}


def test_sigkill_repeatedly_then_finish_byte_exact(tmp_path: Path, start_sim) -> None:
    sim = start_sim(parts_per_type=2, part_size=256 * 1024)
    sim.faults.throttle_bytes_per_second = 512 * 1024
    cfg = write_config(tmp_path, sim.url, concurrency={"downloads": 4, "partitions": 2})
    base = past_days(2) + timedelta(hours=6)
    labels = [hour_label(base + timedelta(hours=i)) for i in range(6)]
    args = ("backfill", "-c", str(cfg), "--from", labels[0], "--to", labels[-1])
    checkpoint = tmp_path / "state" / "checkpoint.db"
    rng = random.Random(7)

    def run_downloads(started: float) -> list:
        return [d for d in sim.stats.downloads if d.t >= started]

    kills = 0
    resumed_offsets: list[int] = []

    def check_run(finished_before: set[tuple[str, int]], started: float) -> None:
        # A request of an earlier (killed) run may be recorded late; its start time tells.
        for d in run_downloads(started):
            assert (d.part_key, d.index) not in finished_before, \
                f"finished part {d.part_key}#{d.index} was fetched again"

    # Two deterministic crashes through the fault-injection seam (SIGKILL after N stored bytes),
    # then two from outside at random moments.
    for kill_after in (500 * 1024, 2000 * 1024):
        before, first = finished_parts(checkpoint), time.time()
        result = run_cli(*args, GIO_DOWNLOADER_KILL_AFTER_BYTES=str(kill_after))
        assert result.returncode == -signal.SIGKILL, result.stderr
        kills += 1
        check_run(before, first)
    for _ in range(2):
        before, first = finished_parts(checkpoint), time.time()
        partial = temp_sizes(tmp_path / "data")
        proc = start_cli(*args)
        time.sleep(rng.uniform(0.6, 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        if proc.returncode == -signal.SIGKILL:
            kills += 1
        check_run(before, first)
        resumed_offsets += [d.range_start for d in run_downloads(first)
                            if d.range_start and d.range_start in partial.values()]
    assert kills >= 3

    before, first = finished_parts(checkpoint), time.time()
    partial = temp_sizes(tmp_path / "data")
    final = run_cli(*args)
    assert final.returncode == 0, final.stderr
    check_run(before, first)
    resumed_offsets += [d.range_start for d in run_downloads(first)
                        if d.range_start and d.range_start in partial.values()]
    assert resumed_offsets, "a partial part was resumed from its bytes on disk"
    for label in labels:
        for t in TYPES:
            assert_partition_exact(sim.sim, tmp_path / "data", "testai01", t, "hour", label)
    assert not temp_sizes(tmp_path / "data")


def test_sigkill_between_record_and_rename_publishes_without_fetching_again(
        tmp_path: Path, start_sim) -> None:
    """The part row is written once the bytes are fsynced under their temporary name, before
    the rename. A crash exactly there (the fault seam) leaves a recorded part that the restart
    renames: its bytes are not downloaded again."""
    sim = start_sim(parts_per_type=2, part_size=256 * 1024)
    cfg = write_config(tmp_path, sim.url, projects=[
        {"ai": "testai01", "data_types": ["page"], "export_types": ["hour"]}],
        concurrency={"downloads": 1, "partitions": 1})
    label = hour_label(past_days(2) + timedelta(hours=5))
    args = ("backfill", "-c", str(cfg), "--from", label, "--to", label)
    checkpoint = tmp_path / "state" / "checkpoint.db"

    killed = run_cli(*args, GIO_DOWNLOADER_KILL_BEFORE_PUBLISH="1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    recorded = finished_parts(checkpoint)
    assert len(recorded) == 1
    ((part_key, index),) = recorded
    # Recorded and durable, not yet under its name (the other part's file is opened, empty).
    (temp,) = [p for p, n in temp_sizes(tmp_path / "data").items() if n]
    assert temp.name == f".part-{index:05d}.csv.gz.partial"
    assert not list((tmp_path / "data").rglob("part-*.csv.gz"))

    restarted = time.time()
    final = run_cli(*args)
    assert final.returncode == 0, final.stderr
    again = {(d.part_key, d.index) for d in sim.stats.downloads if d.t >= restarted}
    assert (part_key, index) not in again and again, again
    assert_partition_exact(sim.sim, tmp_path / "data", "testai01", "page", "hour", label)
    assert not temp.exists()
