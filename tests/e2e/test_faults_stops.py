"""Going on where going is right, stopping where it is not: exports still being built (#12.1),
unreachable APIs (#12.2), misbehaving download hosts and signals (#17.5, 6, 9-12). The real CLI
against the bundled simulator over loopback."""

from __future__ import annotations

import resource
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    PAGE_ONLY,
    REPO,
    TOKEN,
    assert_partition_exact,
    backfill_args,
    cli_env,
    partition_folder,
    past_hours,
    run_cli,
    start_cli,
    write_config,
)

TYPES = ["visit", "page", "custom_event"]




def _wait(predicate: Any, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- #12.1: an export being built is waited for, never given up for lateness -----------------

def test_running_past_the_grace_still_lands(tmp_path: Path, start_sim) -> None:
    sim = start_sim(parts_per_type=1, running_polls=6)
    # Long past due, no grace, and fewer attempts than RUNNING answers: RUNNING is no failure.
    cfg = write_config(tmp_path, sim.url, retry={"not_ready_grace_minutes": 0, "max_attempts": 2},
                       schedule={"running_poll_max_seconds": 0.05})
    labels = past_hours(2)
    result = run_cli(*backfill_args(cfg, labels))
    assert result.returncode == 0, result.stderr
    for label in labels:
        for t in TYPES:
            assert_partition_exact(sim.sim, tmp_path / "data", "testai01", t, "hour", label)
    statuses = Counter(c.status for c in sim.stats.api_calls)
    assert statuses == {"RUNNING": 6 * 2, "FINISHED": 2}, statuses


def test_backfill_stops_waiting_for_running_and_says_run_again(tmp_path: Path,
                                                               start_sim) -> None:
    sim = start_sim(parts_per_type=1, running_polls=10**9)
    cfg = write_config(tmp_path, sim.url, projects=[
        {"ai": "testai01", "data_types": ["page"], "export_types": ["hour"]}],
        schedule={"running_poll_max_seconds": 0.1, "backfill_running_wait_minutes": 0.01})
    labels = past_hours(2)
    started = time.monotonic()
    result = run_cli(*backfill_args(cfg, labels), timeout=30)
    assert result.returncode == 1, result.stderr
    assert time.monotonic() - started < 10
    assert "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if "still being built" in x]
    assert "2 partitions" in line and "run again later" in line, line
    for label in labels:
        assert f"testai01/page/hour:{label}" in line, line
    assert not list((tmp_path / "data").rglob("_SUCCESS"))
    assert {c.status for c in sim.stats.api_calls} == {"RUNNING"}


# --- #12.2: an API that cannot be reached, a token that is refused ---------------------------

def test_unreachable_api_fails_fast_with_one_line(tmp_path: Path) -> None:
    port = closed_port()
    cfg = write_config(tmp_path, f"http://127.0.0.1:{port}", projects=PAGE_ONLY)
    labels = past_hours(1)
    started = time.monotonic()
    result = run_cli(*backfill_args(cfg, labels), timeout=40)
    took = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert took < 20, f"took {took:.1f} s"
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) <= 5, result.stderr
    (line,) = [x for x in lines if "connection refused" in x]
    assert f"127.0.0.1:{port}" in line, line


def test_wrong_token_stops_at_once_with_one_line(tmp_path: Path, start_sim) -> None:
    sim = start_sim(token="another-token")
    cfg = write_config(tmp_path, sim.url)
    labels = past_hours(3)
    started = time.monotonic()
    result = run_cli(*backfill_args(cfg, labels))
    assert time.monotonic() - started < 10
    # Exit 2, as before the fix: a configuration error (RestartPreventExitStatus=2 in the unit).
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) <= 5 and "Traceback" not in result.stderr, result.stderr
    (line,) = [x for x in lines if "401" in x]
    assert "api.token" in line
    assert TOKEN not in result.stdout + result.stderr
    assert all(c.reason == "unauthorized" for c in sim.stats.api_calls)
    assert len(sim.stats.api_calls) <= 4, "stopped at the first refusal of each worker"


# --- #17.5, #17.6: many parts under a low descriptor limit; unusable download answers ---------

def test_hundreds_of_parts_under_a_low_descriptor_limit(tmp_path: Path, start_sim) -> None:
    sim = start_sim(parts_per_type=300, part_size=4 * 1024)
    cfg = write_config(tmp_path, sim.url, projects=PAGE_ONLY,
                       concurrency={"downloads": 2, "partitions": 1})
    labels = past_hours(1)

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    result = subprocess.run([sys.executable, "-m", "downloader", *backfill_args(cfg, labels)],
                            capture_output=True, text=True, timeout=60, env=cli_env(),
                            cwd=REPO, preexec_fn=low_limit)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Too many open files" not in result.stdout + result.stderr
    assert assert_partition_exact(sim.sim, tmp_path / "data", "testai01", "page", "hour",
                                  labels[0]) == 300


@pytest.mark.parametrize("knob", ["huge_header", "redirect_loop"])
def test_unusable_download_answers_are_retried_without_leaking_links(
        tmp_path: Path, start_sim, knob: str) -> None:
    sim = start_sim(parts_per_type=2)
    setattr(sim.faults, knob, 3)
    cfg = write_config(tmp_path, sim.url, projects=PAGE_ONLY, log={"format": "json",
                                                                   "level": "debug"})
    labels = past_hours(1)
    result = run_cli(*backfill_args(cfg, labels))
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert "Traceback" not in out and "ExceptionGroup" not in out
    assert "Signature=" not in out and "/download/" not in out
    assert_partition_exact(sim.sim, tmp_path / "data", "testai01", "page", "hour", labels[0])
    assert sum(d.outcome == knob for d in sim.stats.downloads) >= 3


# --- #17.9, #17.10: signals ---------------------------------------------------------------

def test_sigterm_with_only_queued_jobs_is_interrupted(tmp_path: Path, start_sim) -> None:
    sim = start_sim(parts_per_type=1, running_polls=10**9)
    cfg = write_config(tmp_path, sim.url, schedule={"running_poll_max_seconds": 2})
    labels = past_hours(2)
    proc = start_cli(*backfill_args(cfg, labels))
    try:
        _wait(lambda: len(sim.stats.api_calls) >= 2, "both hours answered RUNNING")
        time.sleep(0.3)  # every job is back in the queue, waiting for its next poll
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err
    assert "interrupted" in err and "Traceback" not in err, err
    assert not list((tmp_path / "data").rglob("_SUCCESS"))


def test_no_download_starts_after_sigterm(tmp_path: Path, start_sim) -> None:
    sim = start_sim(parts_per_type=6, part_size=64 * 1024)
    sim.faults.throttle_bytes_per_second = 64 * 1024  # one second per part
    cfg = write_config(tmp_path, sim.url, projects=PAGE_ONLY, shutdown_grace_seconds=5,
                       concurrency={"downloads": 2, "partitions": 1})
    labels = past_hours(1)
    proc = start_cli(*backfill_args(cfg, labels))
    try:
        _wait(lambda: len(sim.stats.downloads) >= 2, "two downloads")
        time.sleep(0.2)
        signalled = time.time()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1 and "interrupted" in err, err
    late = [d for d in sim.stats.downloads if d.t > signalled + 0.2]
    assert late == [], f"downloads started after the signal: {late}"
    # The two in flight finished inside the grace period and were published.
    folder = partition_folder(tmp_path / "data", "testai01", "page", "hour", labels[0])
    assert len(list(folder.glob("part-*.csv.gz"))) == 2
    again = run_cli(*backfill_args(cfg, labels))
    assert again.returncode == 0, again.stderr
    assert_partition_exact(sim.sim, tmp_path / "data", "testai01", "page", "hour", labels[0])


# --- #17.11, #17.12: failing refreshes and refused download connections ---------------------

def test_failed_link_refresh_is_not_repeated_by_every_waiting_part(
        tmp_path: Path, start_sim) -> None:
    sim = start_sim(parts_per_type=8, part_size=32 * 1024, link_ttl_seconds=0.3)
    sim.faults.throttle_bytes_per_second = 64 * 1024  # half a second per part
    attempts = 3
    cfg = write_config(tmp_path, sim.url, projects=PAGE_ONLY,
                       concurrency={"downloads": 1, "partitions": 1},
                       retry={"max_attempts": attempts, "initial_backoff_seconds": 0.05,
                              "max_backoff_seconds": 0.2})
    labels = past_hours(1)
    proc = start_cli(*backfill_args(cfg, labels))
    try:
        _wait(lambda: len(sim.stats.api_calls) >= 1, "the first answer")
        sim.faults.api_500 = 10**6  # every refresh fails from now on
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    expired = sum(d.outcome == "expired" for d in sim.stats.downloads)
    calls = len(sim.stats.api_calls)
    assert expired >= 1
    # The first answer, one refresh's tries, the job's own tries: not 7 waiting parts x tries.
    assert calls <= 1 + 2 * attempts + 1, (calls, Counter(c.reason for c in sim.stats.api_calls))


def test_refused_download_connections_back_off_before_refreshing(
        tmp_path: Path, start_sim) -> None:
    sim = start_sim(parts_per_type=1, part_size=64 * 1024)
    sim.faults.drop, sim.faults.drop_after_bytes = 6, 0
    cfg = write_config(tmp_path, sim.url, projects=PAGE_ONLY,
                       retry={"max_attempts": 8, "initial_backoff_seconds": 0.2,
                              "max_backoff_seconds": 0.4})
    labels = past_hours(1)
    result = run_cli(*backfill_args(cfg, labels))
    assert result.returncode == 0, result.stderr
    assert_partition_exact(sim.sim, tmp_path / "data", "testai01", "page", "hour", labels[0])
    drops = [d for d in sim.stats.downloads if d.outcome == "dropped"]
    assert len(drops) == 6 and all(d.bytes_sent == 0 for d in drops)
    # Backoff between the tries (at least 0.1 + 0.2 + 0.2 s of sleeps for six failures) ...
    assert drops[-1].t - drops[0].t >= 0.45, [round(d.t - drops[0].t, 3) for d in drops]
    # ... and the same link is tried again before new links are asked for.
    refreshes = len(sim.stats.api_calls) - 1
    assert 1 <= refreshes <= len(drops) // 2, refreshes
