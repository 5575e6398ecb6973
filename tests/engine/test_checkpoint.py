"""Checkpoint (downloader/engine/checkpoint.py): the record of finished parts and partitions."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from downloader.core.constants import BEIJING
from downloader.core.model import PartitionKey
from downloader.core.model import StoredPart as _Stored
from downloader.core.partitions import Period
from downloader.engine.checkpoint import Checkpoint, CheckpointError, PartitionRow
from downloader.sources.raw.keys import parse_key, raw_key


def key(ai: str = "0a1b2c3d", data_type: str = "visit", export_type: str = "hour",
        label: str = "2026010110") -> PartitionKey:
    return raw_key(ai, data_type, Period.from_label(export_type, label))


def StoredPart(index: int, size: int, sha256: str) -> _Stored:  # noqa: N802 - reads as the type
    return _Stored(index, size, sha256, f"part-{index:05d}.csv.gz")


KEY = key()
SHA = "ab" * 32


@pytest.fixture
def cp_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "checkpoint.db"


@pytest.fixture
def cp(cp_path: Path):  # type: ignore[no-untyped-def]
    checkpoint = Checkpoint(cp_path)
    yield checkpoint
    checkpoint.close()


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --- parts -------------------------------------------------------------------------------------


def test_parts_round_trip(cp: Checkpoint) -> None:
    assert cp.parts(KEY) == {}
    cp.part_done(KEY, StoredPart(0, 64 * 1024 * 1024, SHA))
    cp.part_done(KEY, StoredPart(2, 17, "cd" * 32))
    assert cp.parts(KEY) == {0: StoredPart(0, 64 * 1024 * 1024, SHA),
                             2: StoredPart(2, 17, "cd" * 32)}


def test_part_done_again_replaces(cp: Checkpoint) -> None:
    cp.part_done(KEY, StoredPart(0, 10, SHA))
    cp.part_done(KEY, StoredPart(0, 11, "ef" * 32))
    assert cp.parts(KEY) == {0: StoredPart(0, 11, "ef" * 32)}


@pytest.mark.parametrize(
    "other",
    [key(ai="ffff0000"), key(data_type="page"), key(export_type="day", label="20260101"),
     key(label="2026010111")],
    ids=["other-ai", "other-data-type", "other-export-type", "other-hour"],
)
def test_parts_are_kept_per_partition(cp: Checkpoint, other: PartitionKey) -> None:
    cp.part_done(KEY, StoredPart(0, 10, SHA))
    cp.part_done(other, StoredPart(1, 20, SHA))
    assert cp.parts(KEY) == {0: StoredPart(0, 10, SHA)}
    assert cp.parts(other) == {1: StoredPart(1, 20, SHA)}

    cp.forget_parts(KEY)
    assert cp.parts(KEY) == {}
    assert cp.parts(other) == {1: StoredPart(1, 20, SHA)}  # untouched


# --- partition states --------------------------------------------------------------------------


def test_get_unknown_is_none(cp: Checkpoint) -> None:
    assert cp.get(KEY) is None
    assert list(cp.rows()) == []
    assert len(cp.done_set()) == 0


def _updated(row: PartitionRow) -> datetime:
    stamp = datetime.fromisoformat(row.updated_at)
    assert stamp.tzinfo is not None
    return stamp


def test_started_failed_done(cp: Checkpoint) -> None:
    cp.started(KEY, parts_total=3, info={"export_date": "2026010110"},
               fetched_at="2026-01-01 11:40")
    row = cp.get(KEY)
    assert row is not None
    assert row.key == KEY
    assert (row.state, row.parts_total, row.info, row.fetched_at) == (
        "pending", 3, {"export_date": "2026010110"}, "2026-01-01 11:40")
    assert (row.attempts, row.last_error) == (0, None)
    _updated(row)

    cp.failed(KEY, "HTTP 500 eight times", attempts=8)
    row = cp.get(KEY)
    assert row is not None
    assert (row.state, row.last_error, row.attempts) == ("failed", "HTTP 500 eight times", 8)
    assert row.parts_total == 3  # kept from started()

    cp.started(KEY, parts_total=4, info={"export_date": "2026010110"},
               fetched_at="2026-01-01 12:10")
    row = cp.get(KEY)
    assert row is not None
    assert (row.state, row.parts_total, row.fetched_at, row.last_error) == (
        "pending", 4, "2026-01-01 12:10", None)
    assert row.attempts == 8  # started() does not reset the count

    cp.done(KEY)
    row = cp.get(KEY)
    assert row is not None
    assert (row.state, row.parts_total, row.last_error) == ("done", 4, None)
    assert KEY in cp.done_set() and len(cp.done_set()) == 1


def test_failed_without_started(cp: Checkpoint) -> None:
    cp.failed(KEY, "请求参数不合法", attempts=1)
    row = cp.get(KEY)
    assert row is not None
    assert (row.state, row.parts_total, row.last_error, row.attempts) == (
        "failed", None, "请求参数不合法", 1)


def test_get_round_trips_day_keys(cp: Checkpoint) -> None:
    day = key(export_type="day", label="20281231", data_type="vstr")
    cp.done(day)
    row = cp.get(day)
    assert row is not None and row.key == day
    assert parse_key(row.key)[2].start == datetime(2028, 12, 31, tzinfo=BEIJING)


def test_rows_order_and_done_set(cp: Checkpoint) -> None:
    written = [
        key(ai="b", data_type="visit", export_type="hour", label="2026010110"),
        key(ai="a", data_type="visit", export_type="day", label="20260102"),
        key(ai="a", data_type="page", export_type="hour", label="2026010110"),
        key(ai="a", data_type="visit", export_type="hour", label="2026010109"),
        key(ai="a", data_type="action", export_type="hour", label="2026010110"),
        key(ai="a", data_type="visit", export_type="day", label="20260101"),
    ]
    for k in written:
        cp.done(k)
    cp.failed(written[0], "boom", 2)
    # Ordered by export type, then label (time), then project, then data type.
    assert [r.key for r in cp.rows()] == [
        key(ai="a", data_type="visit", export_type="day", label="20260101"),
        key(ai="a", data_type="visit", export_type="day", label="20260102"),
        key(ai="a", data_type="visit", export_type="hour", label="2026010109"),
        key(ai="a", data_type="action", export_type="hour", label="2026010110"),
        key(ai="a", data_type="page", export_type="hour", label="2026010110"),
        key(ai="b", data_type="visit", export_type="hour", label="2026010110"),
    ]
    done = cp.done_set()
    assert len(done) == len(written) - 1
    assert all(k in done for k in written[1:])
    assert written[0] not in done and key(ai="zz") not in done


# --- the file: lock, reopen, read-only view ---------------------------------------------------


def test_second_writer_is_refused(cp_path: Path) -> None:
    first = Checkpoint(cp_path)
    try:
        with pytest.raises(CheckpointError) as info:
            Checkpoint(cp_path)
        assert "in use" in str(info.value) and str(cp_path) in str(info.value)
        assert "\n" not in str(info.value)
        first.done(KEY)  # the first writer is unaffected
        assert KEY in first.done_set() and len(first.done_set()) == 1
    finally:
        first.close()
    second = Checkpoint(cp_path)  # the lock went with close()
    second.close()


def test_context_manager_releases_the_lock(cp_path: Path) -> None:
    with Checkpoint(cp_path) as cp:
        cp.done(KEY)
    with Checkpoint(cp_path) as cp:
        assert KEY in cp.done_set() and len(cp.done_set()) == 1


def test_reopen_after_close_keeps_data(cp_path: Path) -> None:
    with Checkpoint(cp_path) as cp:
        cp.started(KEY, 2, {"export_date": "2026010110"}, "2026-01-01 11:40")
        cp.part_done(KEY, StoredPart(0, 10, SHA))
        cp.part_done(KEY, StoredPart(1, 20, SHA))
        cp.done(KEY)
        cp.failed(key(data_type="page"), "boom", 3)
    with Checkpoint(cp_path) as cp:
        assert cp.parts(KEY) == {0: StoredPart(0, 10, SHA), 1: StoredPart(1, 20, SHA)}
        row = cp.get(KEY)
        assert row is not None and (row.state, row.parts_total) == ("done", 2)
        page = cp.get(key(data_type="page"))
        assert page is not None and (page.state, page.attempts) == ("failed", 3)


def test_readonly_missing_file_is_empty_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state" / "checkpoint.db"
    with Checkpoint(path, readonly=True) as view:
        assert list(view.rows()) == []
        assert view.get(KEY) is None
        assert view.parts(KEY) == {}
        assert len(view.done_set()) == 0
    assert _listing(tmp_path) == []


def test_readonly_sees_a_running_writer_without_taking_the_lock(cp_path: Path) -> None:
    with Checkpoint(cp_path) as writer:
        writer.part_done(KEY, StoredPart(0, 10, SHA))
        writer.done(KEY)
        with Checkpoint(cp_path, readonly=True) as view:
            assert KEY in view.done_set() and len(view.done_set()) == 1
            assert view.parts(KEY) == {0: StoredPart(0, 10, SHA)}
        # Opening the view did not disturb the writer.
        writer.done(key(data_type="page"))


def test_readonly_after_the_writer_closed(cp_path: Path) -> None:
    with Checkpoint(cp_path) as writer:
        writer.done(KEY)
    with Checkpoint(cp_path, readonly=True) as view:
        assert [r.key for r in view.rows()] == [KEY]


def test_not_a_database_is_a_checkpoint_error_and_frees_the_lock(cp_path: Path) -> None:
    cp_path.parent.mkdir(parents=True)
    cp_path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CheckpointError) as info:
        Checkpoint(cp_path)
    assert str(cp_path) in str(info.value) and "\n" not in str(info.value)
    cp_path.unlink()
    with Checkpoint(cp_path) as cp:  # the failed open did not keep the lock
        cp.done(KEY)


@pytest.mark.parametrize("folder", ["run#1", "run?x", "run%41"])
def test_readonly_path_with_uri_characters(tmp_path: Path, folder: str) -> None:
    path = tmp_path / folder / "checkpoint.db"
    with Checkpoint(path) as writer:
        writer.done(KEY)
    before = _listing(tmp_path)
    with Checkpoint(path, readonly=True) as view:
        assert KEY in view.done_set() and len(view.done_set()) == 1
    assert [p for p in _listing(tmp_path) if p not in before and "-" not in p] == []


async def test_done_set_read_off_the_loop_sees_the_writer(
        cp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    readers: list[int] = []
    original = Checkpoint.done_set

    def recording(self: Checkpoint):  # type: ignore[no-untyped-def]
        readers.append(threading.get_ident())
        return original(self)

    monkeypatch.setattr(Checkpoint, "done_set", recording)
    with Checkpoint(cp_path) as cp:
        cp.done(KEY)
        cp.done(key(data_type="page"))
        cp.failed(key(data_type="vstr"), "boom", 1)
        off = await cp.done_set_off_loop()
        assert len(off) == 2 and KEY in off and key(data_type="vstr") not in off
    # Read by another thread than the event loop's.
    assert readers and threading.get_ident() not in readers
