"""The checkpoint's upgrade from schema 1 (a file written by the flat-package release, kept as a
fixture) to schema 2: in place, on the first writable open, nothing complete lost."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from downloader.core.model import PartitionKey, StoredPart
from downloader.engine.checkpoint import Checkpoint, CheckpointError
from downloader.engine.migrate import SCHEMA_VERSION

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "checkpoint-v1.db"


@pytest.fixture
def old(tmp_path: Path) -> Path:
    path = tmp_path / "checkpoint.db"
    shutil.copy(FIXTURE, path)
    return path


def _version(path: Path) -> str:
    with sqlite3.connect(path) as db:
        return str(db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])


def test_fixture_is_schema_1() -> None:
    assert _version(FIXTURE) == "1"


def test_schema_1_is_migrated_in_place(old: Path) -> None:
    with Checkpoint(old) as cp:
        done = cp.done_set()
        assert len(done) == 5
        for label in ("2026113010", "2026113011"):
            for t in ("visit", "page"):
                assert PartitionKey("raw", f"testai01/{t}", f"hour:{label}") in done
        assert PartitionKey("raw", "testai01/visit", "day:20261129") in done
        row = cp.get(PartitionKey("raw", "testai01/visit", "hour:2026113010"))
        assert row is not None and row.state == "done" and row.parts_total == 2
        assert row.info == {"export_date": "2026113010"}
        assert cp.parts(row.key) == {
            0: StoredPart(0, 100, "a" * 64, "part-00000.csv.gz"),
            1: StoredPart(1, 50, "b" * 64, "part-00001.csv.gz")}
        pending = PartitionKey("raw", "testai01/visit", "hour:2026113012")
        row = cp.get(pending)
        assert row is not None and (row.state, row.parts_total) == ("pending", 2)
        assert cp.unsealed_parts() == [(pending, StoredPart(0, 123, "d" * 64,
                                                            "part-00000.csv.gz"))]
        failed = cp.get(PartitionKey("raw", "testai01/page", "hour:2026113012"))
        assert failed is not None and failed.state == "failed"
        assert (failed.last_error, failed.attempts) == ("export job failed: boom", 8)
    assert _version(old) == str(SCHEMA_VERSION)
    with Checkpoint(old) as cp:  # a second open finds schema 2 and changes nothing
        assert len(cp.done_set()) == 5


def test_readonly_open_of_schema_1_says_how_to_upgrade(old: Path) -> None:
    with pytest.raises(CheckpointError) as info:
        Checkpoint(old, readonly=True)
    assert "schema 1" in str(info.value) and str(old) in str(info.value)
    assert _version(old) == "1"  # a reader changes nothing


def test_schema_from_the_future_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.db"
    with Checkpoint(path):
        pass
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(CheckpointError) as info:
        Checkpoint(path)
    assert "schema 99" in str(info.value) and "newer" in str(info.value)
    assert "\n" not in str(info.value)
