"""Storage and checkpoint faults (#12.3, #17.7): a full disk, an unreadable checkpoint, a second
process on one checkpoint, left-over temporary files. One line, the right exit code, nothing
corrupt. The real CLI against the bundled simulator; full disks are small tmpfs mounts (root
only, skipped otherwise)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    PAGE_ONLY,
    assert_partition_exact,
    backfill_args,
    partition_folder,
    past_hours,
    run_cli,
    start_cli,
    write_config,
)

TYPES = ["visit", "page", "custom_event"]




def _checkpoint(tmp_path: Path) -> Path:
    return tmp_path / "state" / "checkpoint.db"


@contextlib.contextmanager
def full_tmpfs(path: Path, size_kib: int, leave_kib: int) -> Iterator[Path]:
    """A tmpfs of ``size_kib`` at ``path`` with a filler file that leaves ``leave_kib`` free.
    Yields the filler; always unmounted."""
    if os.geteuid() != 0:
        pytest.skip("a full disk is simulated with a tmpfs mount, which needs root")
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs",
                              str(path)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        filler = path / "filler"
        st = os.statvfs(path)
        with open(filler, "wb") as f:
            f.write(b"\0" * (st.f_bavail * st.f_frsize - leave_kib * 1024))
        yield filler
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _sealed(root: Path, labels: list[str], types: list[str] = TYPES) -> list[tuple[str, str]]:
    return [(t, label) for label in labels for t in types
            if (partition_folder(root, "testai01", t, "hour", label) / "_SUCCESS").exists()]


def _one_line(stderr: str, needle: str) -> str:
    assert "Traceback" not in stderr and "ExceptionGroup" not in stderr, stderr
    lines = [x for x in stderr.splitlines() if needle.lower() in x.lower()]
    assert len(lines) == 1, stderr
    return lines[0]


# --- a full disk ---------------------------------------------------------------------------

def test_full_storage_stops_then_a_rerun_completes_without_fetching_again(
        tmp_path: Path, start_sim) -> None:
    sim = start_sim(parts_per_type=2, part_size=64 * 1024)
    root = tmp_path / "data"
    cfg = write_config(tmp_path, sim.url, concurrency={"downloads": 4, "partitions": 1})
    labels = past_hours(4)
    with full_tmpfs(root, 3 * 1024, leave_kib=600) as filler:
        started = time.monotonic()
        result = run_cli(*backfill_args(cfg, labels), timeout=60)
        assert result.returncode == 1, result.stderr
        assert time.monotonic() - started < 10
        _one_line(result.stderr, "no space left")
        # A stop of the whole run, not a pile of partitions failed by "internal errors".
        assert "internal error" not in result.stderr, result.stderr
        assert "part failed unexpectedly" not in result.stdout
        sealed = _sealed(root, labels)
        assert 0 < len(sealed) < 4 * 3, sealed
        for t, label in sealed:  # whatever was sealed is whole and exact
            assert_partition_exact(sim.sim, root, "testai01", t, "hour", label)

        filler.unlink()
        restarted = time.time()
        again = run_cli(*backfill_args(cfg, labels))
        assert again.returncode == 0, again.stderr
        for label in labels:
            for t in TYPES:
                assert_partition_exact(sim.sim, root, "testai01", t, "hour", label)
        fetched = {d.part_key for d in sim.stats.downloads if d.t >= restarted}
        assert fetched.isdisjoint({f"testai01/hour/{t}/{label}" for t, label in sealed})
        assert not list(root.rglob(".*.partial*"))


def test_full_storage_line_names_the_path(tmp_path: Path, start_sim) -> None:
    sim = start_sim(parts_per_type=2, part_size=64 * 1024)
    root = tmp_path / "data"
    cfg = write_config(tmp_path, sim.url, projects=PAGE_ONLY)
    labels = past_hours(2)
    with full_tmpfs(root, 1024, leave_kib=100):
        result = run_cli(*backfill_args(cfg, labels), timeout=60)
    assert result.returncode == 1, result.stderr
    line = _one_line(result.stderr, "no space left")
    assert str(root) in line, line


def test_full_checkpoint_disk_stops_with_one_line(tmp_path: Path, start_sim) -> None:
    sim = start_sim(parts_per_type=8, part_size=8 * 1024)
    cfg = write_config(tmp_path, sim.url, concurrency={"downloads": 4, "partitions": 2})
    labels = past_hours(6)
    checkpoint = _checkpoint(tmp_path)
    with full_tmpfs(checkpoint.parent, 8 * 1024, leave_kib=96) as filler:
        started = time.monotonic()
        result = run_cli(*backfill_args(cfg, labels), timeout=60)
        assert result.returncode == 1, result.stderr + result.stdout[-2000:]
        assert time.monotonic() - started < 10
        line = _one_line(result.stderr, "no space left")
        assert str(checkpoint) in line, line
        assert "Traceback" not in result.stdout
        for t, label in _sealed(tmp_path / "data", labels):
            assert_partition_exact(sim.sim, tmp_path / "data", "testai01", t, "hour", label)

        filler.unlink()
        again = run_cli(*backfill_args(cfg, labels))
        assert again.returncode == 0, again.stderr
        for label in labels:
            for t in TYPES:
                assert_partition_exact(sim.sim, tmp_path / "data", "testai01", t, "hour", label)


# --- an unreadable checkpoint --------------------------------------------------------------

def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not a checkpoint\n" * 400)


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _future(path: Path) -> None:
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    db.close()


BREAKS: list[tuple[Any, str]] = [(_garbage, "rebuild"), (_truncated, "rebuild"),
                                 (_future, "schema 99")]


@pytest.mark.parametrize(("damage", "remedy"), BREAKS, ids=["garbage", "truncated", "future"])
def test_unreadable_checkpoint_exits_2_naming_the_file(tmp_path: Path, start_sim, damage: Any,
                                                       remedy: str) -> None:
    sim = start_sim(parts_per_type=4, part_size=32 * 1024)
    cfg = write_config(tmp_path, sim.url)
    labels = past_hours(3)
    assert run_cli(*backfill_args(cfg, labels)).returncode == 0
    checkpoint = _checkpoint(tmp_path)
    for extra in ("-wal", "-shm"):
        Path(f"{checkpoint}{extra}").unlink(missing_ok=True)
    damage(checkpoint)
    calls = len(sim.stats.api_calls)
    more = past_hours(4)  # one hour more than the checkpoint knows
    result = run_cli(*backfill_args(cfg, more))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(checkpoint) in lines[0] and remedy in lines[0], lines[0]
    assert len(sim.stats.api_calls) == calls, "nothing was asked with an unreadable checkpoint"


def test_the_remedy_the_message_names_exists(tmp_path: Path, start_sim) -> None:
    sim = start_sim(parts_per_type=1)
    cfg = write_config(tmp_path, sim.url)
    labels = past_hours(2)
    assert run_cli(*backfill_args(cfg, labels)).returncode == 0
    checkpoint = _checkpoint(tmp_path)
    checkpoint.rename(checkpoint.with_suffix(".broken"))
    rebuilt = run_cli("checkpoint", "rebuild", "-c", str(cfg))
    assert rebuilt.returncode == 0, rebuilt.stderr
    calls = len(sim.stats.api_calls)
    again = run_cli(*backfill_args(cfg, labels))
    assert again.returncode == 0 and len(sim.stats.api_calls) == calls, again.stderr


# --- two processes on one checkpoint --------------------------------------------------------

def test_second_backfill_exits_2_naming_the_lock_and_pid(tmp_path: Path, start_sim) -> None:
    sim = start_sim(parts_per_type=2, part_size=64 * 1024)
    sim.faults.throttle_bytes_per_second = 32 * 1024  # two seconds a part, four at once
    cfg = write_config(tmp_path, sim.url, projects=PAGE_ONLY)
    labels = past_hours(3)
    first = start_cli(*backfill_args(cfg, labels))
    try:
        deadline = time.monotonic() + 10
        while not sim.stats.downloads and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sim.stats.downloads, "the first backfill is downloading"
        started = time.monotonic()
        second = run_cli(*backfill_args(cfg, labels), timeout=30)
        assert time.monotonic() - started < 5
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        lock = f"{_checkpoint(tmp_path)}.lock"
        assert lock in lines[0] and f"pid {first.pid}" in lines[0], lines[0]
        _, err = first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGKILL)
            first.communicate()
    assert first.returncode == 0, err
    for label in labels:
        assert_partition_exact(sim.sim, tmp_path / "data", "testai01", "page", "hour", label)


# --- leftovers --------------------------------------------------------------------------------

def test_leftovers_of_unknown_partitions_are_removed_at_start(tmp_path: Path,
                                                              start_sim) -> None:
    sim = start_sim(parts_per_type=1)
    cfg = write_config(tmp_path, sim.url, projects=PAGE_ONLY)
    root = tmp_path / "data"
    done, other = past_hours(2)
    assert run_cli(*backfill_args(cfg, [done])).returncode == 0
    # A partition the checkpoint never heard of, and a done one, with temporary files in them.
    stray = partition_folder(root, "testai01", "page", "hour", other)
    stray.mkdir(parents=True)
    (stray / ".part-00000.csv.gz.partial").write_bytes(b"\x1f\x8b" + b"x" * 1000)
    sealed = partition_folder(root, "testai01", "page", "hour", done)
    (sealed / ".part-00003.csv.gz.partial").write_bytes(b"half")
    # Not ours: left alone.
    (root / "README.txt").write_text("keep me")
    (stray / "notes.partial").write_text("keep me too")

    later = past_hours(1, day=1)
    result = run_cli(*backfill_args(cfg, later))
    assert result.returncode == 0, result.stderr
    assert not (stray / ".part-00000.csv.gz.partial").exists()
    assert not (sealed / ".part-00003.csv.gz.partial").exists()
    assert (root / "README.txt").exists() and (stray / "notes.partial").exists()
    events = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
    (removed,) = [e for e in events if e["event"] == "removed left-over temporary files"]
    assert removed["files"] == 2, removed
    assert_partition_exact(sim.sim, root, "testai01", "page", "hour", done)
