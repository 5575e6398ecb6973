"""A lost or broken checkpoint: one clear line, and ``checkpoint rebuild`` brings back every
complete partition from the _SUCCESS manifests, so nothing complete is downloaded again."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from conftest import hour_label, past_days, run_cli, write_config

TYPES = ["visit", "page"]


def _backfill(cfg: Path, first: str, last: str):  # type: ignore[no-untyped-def]
    return run_cli("backfill", "-c", str(cfg), "--from", first, "--to", last)


def test_corrupt_checkpoint_is_one_line_then_rebuild_fetches_nothing_again(
        tmp_path: Path, start_sim) -> None:
    sim = start_sim(parts_per_type=2)
    cfg = write_config(tmp_path, sim.url, projects=[
        {"ai": "testai01", "data_types": TYPES, "export_types": ["hour"]}])
    first = hour_label(past_days(2) + timedelta(hours=3))
    last = hour_label(past_days(2) + timedelta(hours=5))
    assert _backfill(cfg, first, last).returncode == 0
    calls, downloads = len(sim.stats.api_calls), len(sim.stats.downloads)
    checkpoint = tmp_path / "state" / "checkpoint.db"

    checkpoint.write_bytes(b"\x00garbage" * 512)
    broken = _backfill(cfg, first, last)
    assert broken.returncode == 2
    lines = broken.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in broken.stderr, broken.stderr
    assert str(checkpoint) in lines[0] and "checkpoint rebuild" in lines[0]

    rebuilt = run_cli("checkpoint", "rebuild", "-c", str(cfg))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "6 complete partitions from 6 _SUCCESS manifests" in rebuilt.stdout
    aside = [p for p in checkpoint.parent.iterdir() if ".before-rebuild-" in p.name]
    assert aside and aside[0].read_bytes().startswith(b"\x00garbage"), "the old file is kept"

    again = _backfill(cfg, first, last)
    assert again.returncode == 0, again.stderr
    assert "6 already done" in again.stderr
    assert (len(sim.stats.api_calls), len(sim.stats.downloads)) == (calls, downloads)


def test_rebuild_ignores_a_manifest_that_does_not_describe_its_folder(
        tmp_path: Path, start_sim) -> None:
    sim = start_sim(parts_per_type=1)
    cfg = write_config(tmp_path, sim.url, projects=[
        {"ai": "testai01", "data_types": ["page"], "export_types": ["hour"]}])
    label = hour_label(past_days(2) + timedelta(hours=7))
    assert _backfill(cfg, label, label).returncode == 0
    manifest = next((tmp_path / "data").rglob("_SUCCESS"))
    body = json.loads(manifest.read_text())
    body["ai"] = "someoneelse"  # moved or edited by hand: not trusted
    manifest.write_text(json.dumps(body))
    (tmp_path / "state" / "checkpoint.db").unlink()
    rebuilt = run_cli("checkpoint", "rebuild", "-c", str(cfg))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "0 complete partitions from 1 _SUCCESS manifests" in rebuilt.stdout
    assert "ignored" in rebuilt.stderr


def test_rebuild_refuses_while_a_run_holds_the_checkpoint(tmp_path: Path, start_sim) -> None:
    import fcntl
    import os

    sim = start_sim()
    cfg = write_config(tmp_path, sim.url)
    state = tmp_path / "state"
    state.mkdir()
    lock = state / "checkpoint.db.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        result = run_cli("checkpoint", "rebuild", "-c", str(cfg))
    finally:
        os.close(fd)
    assert result.returncode == 2
    assert "in use" in result.stderr and "Traceback" not in result.stderr
