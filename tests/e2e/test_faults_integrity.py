"""Nothing wrong is ever sealed: answers without links (#14), re-exports and resumes (#17.1-2),
compressed transfers (#17.4), corrupt gzip parts, stalled bodies and unreadable answers (#12.3).
The real CLI against the bundled simulator over loopback."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    PAGE_ONLY,
    assert_partition_exact,
    partition_folder,
    past_hours,
    run_cli,
    sha256_file,
    write_config,
)

import downloader.sim.raw.app as sim_app

TYPES = ["visit", "page", "custom_event"]



def _backfill(cfg: Path, labels: list[str], **env: str) -> Any:
    return run_cli("backfill", "-c", str(cfg), "--from", labels[0], "--to", labels[-1], **env)


def _events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _no_success(root: Path, label: str, types: list[str] = TYPES) -> None:
    for t in types:
        folder = partition_folder(root, "testai01", t, "hour", label)
        assert not (folder / "_SUCCESS").exists(), f"{folder} was sealed"


# --- #14: a FINISHED answer without usable links is malformed, never an empty partition -----

LINK_FAULTS: list[tuple[str, dict[str, Any], str]] = [
    ("finished_without_links", {}, "without downloadLinks"),
    ("links_wrong_shape", {"links_wrong_shape_kind": "string"}, "downloadLinks is str"),
    ("links_wrong_shape", {"links_wrong_shape_kind": "object"}, "downloadLinks[visit]"),
    ("type_missing", {}, "lacks downloadLinks[visit]"),
]
LINK_IDS = ["without_links", "wrong_shape_string", "wrong_shape_object", "type_missing"]


@pytest.mark.parametrize(("knob", "extra", "missing"), LINK_FAULTS, ids=LINK_IDS)
def test_answers_without_links_are_retried_until_exact(
        tmp_path: Path, start_sim, knob: str, extra: dict[str, Any], missing: str) -> None:
    sim = start_sim(parts_per_type=2)
    for name, value in extra.items():
        setattr(sim.faults, name, value)
    setattr(sim.faults, knob, 3)
    cfg = write_config(tmp_path, sim.url)
    labels = past_hours(2)
    result = _backfill(cfg, labels)
    assert result.returncode == 0, result.stderr
    for label in labels:
        for t in TYPES:
            assert_partition_exact(sim.sim, tmp_path / "data", "testai01", t, "hour", label)
    bent = [c for c in sim.stats.api_calls if c.reason.startswith(("fault_without",
                                                                    "fault_links",
                                                                    "fault_type"))]
    assert len(bent) == 3 and getattr(sim.faults, knob) == 0
    # Logged once per partition and run, saying what was wrong.
    warned = [e for e in _events(result.stdout) if e["event"].startswith("unreadable API")]
    assert warned and all(missing in e["error"] for e in warned), warned
    assert len(warned) <= len(labels)


@pytest.mark.parametrize(("knob", "extra", "missing"), LINK_FAULTS, ids=LINK_IDS)
def test_answers_without_links_fail_unsealed_then_a_rerun_completes(
        tmp_path: Path, start_sim, knob: str, extra: dict[str, Any], missing: str) -> None:
    sim = start_sim(parts_per_type=2)
    for name, value in extra.items():
        setattr(sim.faults, name, value)
    setattr(sim.faults, knob, 3)  # more than max_attempts: the first run gives up
    cfg = write_config(tmp_path, sim.url, retry={"max_attempts": 2})
    labels = past_hours(1)
    (label,) = labels
    result = _backfill(cfg, labels)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    _no_success(tmp_path / "data", label)
    assert not list((tmp_path / "data").rglob("part-*")), "nothing is published"
    for t in TYPES:
        lines = [line for line in result.stderr.splitlines()
                 if f"testai01/{t}/hour:{label}" in line]
        assert len(lines) == 1, result.stderr
        assert "failed" in lines[0] and missing in lines[0], lines[0]
    # The one fault left is retried away by the rerun, which completes the hour.
    again = _backfill(cfg, labels)
    assert again.returncode == 0, again.stderr
    for t in TYPES:
        assert_partition_exact(sim.sim, tmp_path / "data", "testai01", t, "hour", label)


# --- #17.1, #17.2: re-exports ---------------------------------------------------------------

def test_reexport_mid_download_stores_the_new_bytes_never_a_splice(
        tmp_path: Path, start_sim, monkeypatch: pytest.MonkeyPatch) -> None:
    seen_if_range: list[str] = []
    real = sim_app.if_range_holds

    def spy(value: str, etag: str, modified: Any) -> bool:
        seen_if_range.append(value)
        return real(value, etag, modified)

    monkeypatch.setattr(sim_app, "if_range_holds", spy)
    sim = start_sim(parts_per_type=1, part_size=96 * 1024)
    sim.faults.throttle_bytes_per_second = 128 * 1024
    cfg = write_config(tmp_path, sim.url, projects=PAGE_ONLY,
                       concurrency={"downloads": 1, "partitions": 1})
    labels = past_hours(1)
    (label,) = labels
    killed = _backfill(cfg, labels, GIO_DOWNLOADER_KILL_AFTER_BYTES=str(16 * 1024))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    folder = partition_folder(tmp_path / "data", "testai01", "page", "hour", label)
    (old,) = sim.sim.expected_parts("testai01", "hour", "page", label)
    partial = folder / ".part-00000.csv.gz.partial"
    assert 0 < partial.stat().st_size < old.size, "half a part on disk"

    (new,) = sim.sim.reexport("testai01", "hour", "page", label)
    assert new.sha256 != old.sha256
    sim.faults.throttle_bytes_per_second = None
    restarted = time.time()
    final = _backfill(cfg, labels)
    assert final.returncode == 0, final.stderr
    assert_partition_exact(sim.sim, tmp_path / "data", "testai01", "page", "hour", label)
    assert sha256_file(folder / "part-00000.csv.gz") == new.sha256
    # The resume asked "only if still the version I have" with the old version's ETag, and the
    # server sent the whole new part.
    assert seen_if_range == [f'"{old.sha256}"'], seen_if_range
    (again,) = [d for d in sim.stats.downloads if d.t >= restarted]
    assert again.status_code == 200 and again.outcome == "ok"


def test_reexport_with_fewer_parts_leaves_no_stale_part(tmp_path: Path, start_sim) -> None:
    sim = start_sim(parts_per_type=3, part_size=32 * 1024)
    # One try per part: the first download (part 0; one at a time, in order) is caught in a
    # redirect loop, so the partition fails with parts 1 and 2 published, nothing sealed.
    sim.faults.redirect_loop = 1
    cfg = write_config(tmp_path, sim.url, projects=PAGE_ONLY, retry={"max_attempts": 1},
                       concurrency={"downloads": 1, "partitions": 1})
    labels = past_hours(1)
    (label,) = labels
    failed = _backfill(cfg, labels)
    assert failed.returncode == 1, failed.stderr
    folder = partition_folder(tmp_path / "data", "testai01", "page", "hour", label)
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert names == ["part-00001.csv.gz", "part-00002.csv.gz"], names

    assert len(sim.sim.reexport("testai01", "hour", "page", label, parts=2)) == 2
    final = _backfill(cfg, labels)
    assert final.returncode == 0, final.stderr
    assert assert_partition_exact(sim.sim, tmp_path / "data", "testai01", "page", "hour",
                                  label) == 2
    assert not (folder / "part-00002.csv.gz").exists()
    manifest = json.loads((folder / "_SUCCESS").read_text())
    assert [p["name"] for p in manifest["parts"]] == ["part-00000.csv.gz", "part-00001.csv.gz"]


# --- #17.4: a compressing proxy -----------------------------------------------------------

def test_compressed_transfer_is_never_stored(tmp_path: Path, start_sim) -> None:
    sim = start_sim(parts_per_type=2)
    sim.faults.gzip_transfer = True
    cfg = write_config(tmp_path, sim.url)
    labels = past_hours(1)
    result = _backfill(cfg, labels)
    assert result.returncode == 0, result.stderr
    for t in TYPES:
        assert_partition_exact(sim.sim, tmp_path / "data", "testai01", t, "hour", labels[0])
    # The client asked for identity, so the "proxy" never compressed a body.
    outcomes = Counter(d.outcome for d in sim.stats.downloads)
    assert outcomes == {"ok": 6}, outcomes


# --- #12.3: corrupt gzip parts, stalled bodies, unreadable answers ----------------------------

def test_corrupt_gzip_part_is_fetched_again_from_the_start(tmp_path: Path, start_sim) -> None:
    sim = start_sim(parts_per_type=2)
    sim.faults.corrupt = 2
    cfg = write_config(tmp_path, sim.url, projects=PAGE_ONLY, download={"verify": "gzip"},
                       concurrency={"downloads": 1, "partitions": 1})
    labels = past_hours(1)
    result = _backfill(cfg, labels)
    assert result.returncode == 0, result.stderr
    assert_partition_exact(sim.sim, tmp_path / "data", "testai01", "page", "hour", labels[0])
    downloads = sim.stats.downloads
    corrupt = [i for i, d in enumerate(downloads) if d.outcome == "corrupt"]
    assert len(corrupt) == 2
    for i in corrupt:  # the next try of that part starts at byte 0
        nxt = next(d for d in downloads[i + 1:] if d.index == downloads[i].index)
        assert nxt.range_start is None


def test_corrupt_gzip_part_beyond_the_attempts_fails_naming_the_part(
        tmp_path: Path, start_sim) -> None:
    sim = start_sim(parts_per_type=1)
    sim.faults.corrupt = 1000
    cfg = write_config(tmp_path, sim.url, projects=PAGE_ONLY, download={"verify": "gzip"},
                       retry={"max_attempts": 2})
    labels = past_hours(1)
    (label,) = labels
    result = _backfill(cfg, labels)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if f"testai01/page/hour:{label}" in x]
    assert "part-00000.csv.gz" in line and "integrity" in line, line
    folder = partition_folder(tmp_path / "data", "testai01", "page", "hour", label)
    assert not (folder / "part-00000.csv.gz").exists(), "a corrupt part got its final name"
    assert not (folder / "_SUCCESS").exists()


def test_corrupt_gzip_fetches_are_bounded_by_max_attempts(tmp_path: Path, start_sim) -> None:
    sim = start_sim(parts_per_type=1)
    sim.faults.corrupt = 3
    cfg = write_config(tmp_path, sim.url, projects=PAGE_ONLY, download={"verify": "gzip"},
                       retry={"max_attempts": 2})
    labels = past_hours(1)
    result = _backfill(cfg, labels)
    assert result.returncode == 1, result.stderr
    assert sum(d.outcome == "corrupt" for d in sim.stats.downloads) == 2


def test_stalled_body_resumes_with_range(tmp_path: Path, start_sim) -> None:
    sim = start_sim(parts_per_type=1, part_size=64 * 1024)
    f = sim.faults
    f.stall, f.stall_after_bytes, f.stall_seconds = 1, 8 * 1024, 20.0
    cfg = write_config(tmp_path, sim.url, projects=PAGE_ONLY,
                       download={"read_timeout_seconds": 1})
    labels = past_hours(1)
    started = time.monotonic()
    result = _backfill(cfg, labels)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 10, "the read timeout ended the stall"
    assert_partition_exact(sim.sim, tmp_path / "data", "testai01", "page", "hour", labels[0])
    stalled, resumed = sim.stats.downloads
    assert stalled.outcome == "stalled"
    assert resumed.outcome == "ok" and resumed.status_code == 206
    assert resumed.range_start == 8 * 1024, resumed


@pytest.mark.parametrize("kind", ["html", "truncated", "no_status"])
def test_unreadable_api_answers_are_retried_and_logged_once(
        tmp_path: Path, start_sim, kind: str) -> None:
    sim = start_sim(parts_per_type=1)
    sim.faults.api_garbage, sim.faults.api_garbage_kind = 3, kind
    cfg = write_config(tmp_path, sim.url)
    labels = past_hours(1)
    result = _backfill(cfg, labels)
    assert result.returncode == 0, result.stderr
    for t in TYPES:
        assert_partition_exact(sim.sim, tmp_path / "data", "testai01", t, "hour", labels[0])
    assert sum(c.reason.startswith("fault_garbage") for c in sim.stats.api_calls) == 3
    out = result.stdout + result.stderr
    assert "Traceback" not in out and "Signature=" not in out
    (warned,) = [e for e in _events(result.stdout) if e["event"].startswith("unreadable API")]
    body = warned["body"]
    assert 0 < len(body) <= 200
    assert body.startswith("<html>" if kind == "html" else "{"), body
