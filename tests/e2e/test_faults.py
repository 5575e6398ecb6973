"""Expiring links, broken bodies, server errors, corrupt parts, the rate limit: over real HTTP."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

from conftest import assert_partition_exact, hour_label, past_days, run_cli, write_config

TYPES = ["visit", "page", "custom_event"]


def _hours(count: int, day: int = 2, start: int = 4) -> tuple[str, str, list[str]]:
    base = past_days(day) + timedelta(hours=start)
    labels = [hour_label(base + timedelta(hours=i)) for i in range(count)]
    return labels[0], labels[-1], labels


def _check_all(sim, root: Path, labels: list[str], types=TYPES) -> None:
    for label in labels:
        for t in types:
            assert_partition_exact(sim.sim, root, "testai01", t, "hour", label)


def test_links_expire_while_parts_wait_and_resume(tmp_path: Path, start_sim) -> None:
    # One download at a time, slow parts, links that live 0.6 s: later parts of the partition
    # find their links expired and the partition refreshes them.
    sim = start_sim(parts_per_type=3, part_size=64 * 1024, link_ttl_seconds=0.6)
    sim.faults.throttle_bytes_per_second = 400 * 1024
    cfg = write_config(tmp_path, sim.url, concurrency={"downloads": 1, "partitions": 1})
    first, last, labels = _hours(1)
    result = run_cli("backfill", "-c", str(cfg), "--from", first, "--to", last)
    assert result.returncode == 0, result.stderr
    _check_all(sim, tmp_path / "data", labels)
    outcomes = Counter(d.outcome for d in sim.stats.downloads)
    assert outcomes["expired"] >= 1
    # A refresh serves every waiting part: far fewer API calls than expired links.
    calls = len(sim.stats.api_calls)
    assert 2 <= calls <= 1 + outcomes["expired"]


def test_body_breaks_resume_with_range(tmp_path: Path, start_sim) -> None:
    sim = start_sim(parts_per_type=2, part_size=96 * 1024)
    sim.faults.drop = 4
    sim.faults.drop_after_bytes = 40 * 1024
    cfg = write_config(tmp_path, sim.url)
    first, last, labels = _hours(2)
    result = run_cli("backfill", "-c", str(cfg), "--from", first, "--to", last)
    assert result.returncode == 0, result.stderr
    _check_all(sim, tmp_path / "data", labels)
    dropped = [d for d in sim.stats.downloads if d.outcome == "dropped"]
    assert len(dropped) == 4
    resumed = [d for d in sim.stats.downloads if d.outcome == "ok" and d.range_start]
    assert len(resumed) >= 4, "each broken part resumed from its bytes on disk"
    for d in dropped:
        later = [r for r in resumed if r.part_key == d.part_key and r.index == d.index]
        assert later and later[0].range_start >= d.bytes_sent - 0


def test_server_errors_rate_limits_and_corrupt_parts(tmp_path: Path, start_sim) -> None:
    sim = start_sim(parts_per_type=2)
    f = sim.faults
    f.api_500, f.api_429, f.retry_after_seconds, f.api_error = 2, 2, 0.3, 1
    f.download_500, f.corrupt = 2, 2
    cfg = write_config(tmp_path, sim.url)
    first, last, labels = _hours(3)
    result = run_cli("backfill", "-c", str(cfg), "--from", first, "--to", last)
    assert result.returncode == 0, result.stderr
    _check_all(sim, tmp_path / "data", labels)
    reasons = Counter(c.reason for c in sim.stats.api_calls)
    assert reasons["fault_500"] == 2 and reasons["fault_429"] == 2
    outcomes = Counter(d.outcome for d in sim.stats.downloads)
    assert outcomes["corrupt"] == 2 and outcomes["fault_500"] == 2
    # Retry-After was honoured: the next call for the same partition came that much later.
    calls = sim.stats.api_calls
    for i, c in enumerate(calls):
        if c.reason == "fault_429":
            nxt = next(n for n in calls[i + 1:] if n.path == c.path)
            assert nxt.t - c.t >= 0.3 - 0.01


def test_size_mode_still_resumes_broken_bodies(tmp_path: Path, start_sim) -> None:
    # verify: size skips the gzip check; a short body is still caught by Content-Length.
    sim = start_sim(parts_per_type=1)
    sim.faults.drop = 1
    cfg = write_config(tmp_path, sim.url, download={"verify": "size"})
    first, last, labels = _hours(1)
    result = run_cli("backfill", "-c", str(cfg), "--from", first, "--to", last)
    assert result.returncode == 0, result.stderr
    _check_all(sim, tmp_path / "data", labels)


def test_rate_limit_holds_on_the_server_clock(tmp_path: Path, start_sim) -> None:
    sim = start_sim(parts_per_type=1, part_size=8 * 1024, running_polls=1)
    sim.faults.enforce_rate_limit = True
    cfg = write_config(tmp_path, sim.url,
                       api={"rate_limit_per_second": 2},
                       concurrency={"downloads": 8, "partitions": 8},
                       projects=[{"ai": "testai01", "data_types": ["page"],
                                  "export_types": ["hour"]}])
    first, last, labels = _hours(6)
    result = run_cli("backfill", "-c", str(cfg), "--from", first, "--to", last)
    assert result.returncode == 0, result.stderr
    _check_all(sim, tmp_path / "data", labels, types=["page"])
    calls = sim.stats.api_calls
    assert len(calls) == 12  # RUNNING, then FINISHED, for each of 6 partitions
    assert sim.stats.max_calls_in_any_window(1.0) <= 2
    assert all(c.reason != "rate_limited" for c in calls)
