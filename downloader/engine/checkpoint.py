"""The checkpoint: one SQLite file that says which partitions and parts are finished.

A part row is written once its bytes are durable (fsynced under their temporary name or
committed to object storage) and before they get their final name, so a restart after a crash at
any instant knows every finished part and can complete its publication. A partition is done only
after its ``_SUCCESS`` manifest is written. Links are never stored: they expire and carry
signatures.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from downloader.core.partitions import PartitionKey, Period

SCHEMA_VERSION = 1

_SCHEMA = """
-- WITHOUT ROWID: rows live in primary-key order, so reading a project's partitions (planning,
-- status) is a sequential scan however randomly they were written.
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS partitions (
    ai TEXT NOT NULL, data_type TEXT NOT NULL, export_type TEXT NOT NULL, label TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed')),
    parts_total INTEGER, export_date TEXT, fetched_at TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, updated_at TEXT NOT NULL,
    PRIMARY KEY (ai, data_type, export_type, label)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS parts (
    ai TEXT NOT NULL, data_type TEXT NOT NULL, export_type TEXT NOT NULL, label TEXT NOT NULL,
    idx INTEGER NOT NULL, bytes INTEGER NOT NULL, sha256 TEXT NOT NULL, done_at TEXT NOT NULL,
    PRIMARY KEY (ai, data_type, export_type, label, idx)
) WITHOUT ROWID;
"""


class CheckpointError(Exception):
    """The checkpoint cannot be opened or is in use; str() is one line for the user."""


@dataclass(frozen=True)
class StoredPart:
    index: int
    size: int
    sha256: str


@dataclass(frozen=True)
class PartitionRow:
    key: PartitionKey
    state: str
    parts_total: int | None
    export_date: str | None
    fetched_at: str | None
    attempts: int
    last_error: str | None
    updated_at: str


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _key_args(key: PartitionKey) -> tuple[str, str, str, str]:
    return key.ai, key.data_type, key.period.export_type, key.period.label


class Checkpoint:
    """Synchronous on purpose: every write is a few rows per finished part (~64 MB of data), so
    a short blocking commit costs nothing measurable, and ordering stays obvious."""

    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = path
        self._lock_fd: int | None = None
        try:
            if readonly:
                if not path.exists():
                    self._db = sqlite3.connect(":memory:")
                    self._db.executescript(_SCHEMA)
                    return
                self._db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            self._take_lock()
            self._db = sqlite3.connect(path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                             (str(SCHEMA_VERSION),))
        except sqlite3.DatabaseError as exc:
            self._release_lock()
            raise CheckpointError(f"checkpoint {path}: {exc}") from None
        except OSError as exc:
            self._release_lock()
            raise CheckpointError(f"checkpoint {path}: {exc.strerror or exc}") from None

    def _take_lock(self) -> None:
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise CheckpointError(f"checkpoint {self.path} is in use by another "
                                  "gio-downloader process") from None
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def close(self) -> None:
        if self._lock_fd is not None:  # the writer folds the WAL back into the main file
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.DatabaseError:
                pass
        self._db.close()
        self._release_lock()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- parts -------------------------------------------------------------------------------

    def part_done(self, key: PartitionKey, part: StoredPart) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO parts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (*_key_args(key), part.index, part.size, part.sha256, _now()))

    def parts(self, key: PartitionKey) -> dict[int, StoredPart]:
        rows = self._db.execute(
            "SELECT idx, bytes, sha256 FROM parts WHERE ai=? AND data_type=? AND export_type=? "
            "AND label=?", _key_args(key))
        return {i: StoredPart(i, n, h) for i, n, h in rows}

    def forget_parts(self, key: PartitionKey) -> None:
        self._db.execute("DELETE FROM parts WHERE ai=? AND data_type=? AND export_type=? "
                         "AND label=?", _key_args(key))

    def forget_part(self, key: PartitionKey, index: int) -> None:
        """A recorded part whose publication failed: it is fetched again."""
        self._db.execute("DELETE FROM parts WHERE ai=? AND data_type=? AND export_type=? "
                         "AND label=? AND idx=?", (*_key_args(key), index))

    def unsealed_parts(self) -> list[tuple[PartitionKey, int]]:
        """The recorded parts of partitions not done yet: the ones a restart may still have to
        publish (their bytes are stored, maybe not yet under the final name)."""
        rows = self._db.execute(
            "SELECT p.ai, p.data_type, p.export_type, p.label, p.idx FROM parts p "
            "JOIN partitions q USING (ai, data_type, export_type, label) WHERE q.state != 'done'")
        return [(PartitionKey(ai, dt, Period.from_label(et, label)), idx)
                for ai, dt, et, label, idx in rows]

    # --- partitions --------------------------------------------------------------------------

    def _upsert(self, key: PartitionKey, state: str, **fields: Any) -> None:
        cols = ["state", "updated_at", *fields]
        vals = [state, _now(), *fields.values()]
        sets = ", ".join(f"{c}=excluded.{c}" for c in cols)
        self._db.execute(
            f"INSERT INTO partitions (ai, data_type, export_type, label, {', '.join(cols)}) "
            f"VALUES (?, ?, ?, ?, {', '.join('?' * len(cols))}) "
            f"ON CONFLICT (ai, data_type, export_type, label) DO UPDATE SET {sets}",
            (*_key_args(key), *vals))

    def started(self, key: PartitionKey, parts_total: int, export_date: str,
                fetched_at: str) -> None:
        """The API answered FINISHED: remember how many parts there are and when."""
        self._upsert(key, "pending", parts_total=parts_total, export_date=export_date,
                     fetched_at=fetched_at, last_error=None)

    def done(self, key: PartitionKey) -> None:
        self._upsert(key, "done", last_error=None)

    def failed(self, key: PartitionKey, error: str, attempts: int) -> None:
        self._upsert(key, "failed", last_error=error, attempts=attempts)

    def get(self, key: PartitionKey) -> PartitionRow | None:
        row = self._db.execute(
            "SELECT ai, data_type, export_type, label, state, parts_total, export_date, "
            "fetched_at, attempts, last_error, updated_at FROM partitions "
            "WHERE ai=? AND data_type=? AND export_type=? AND label=?", _key_args(key)).fetchone()
        return _row(row) if row else None

    def rows(self, state: str | None = None) -> Iterator[PartitionRow]:
        where, args = ("WHERE state = ?", (state,)) if state else ("", ())
        for row in self._db.execute(
                "SELECT ai, data_type, export_type, label, state, parts_total, export_date, "
                f"fetched_at, attempts, last_error, updated_at FROM partitions {where} "
                "ORDER BY export_type, label, ai, data_type", args):
            yield _row(row)

    def done_set(self) -> DoneSet:
        """Every done partition, for planning: one row per project, type and export type with
        its labels joined by SQLite, so hundreds of thousands of partitions load in a blink."""
        rows = self._db.execute(
            "SELECT ai, data_type, export_type, group_concat(label, ',') FROM partitions "
            "WHERE state = 'done' GROUP BY ai, data_type, export_type")
        return DoneSet({(ai, dt, et): frozenset(labels.split(",")) for ai, dt, et, labels in rows})



class DoneSet:
    """Done partitions as label sets per ``(ai, data_type, export_type)``: planning diffs whole
    sets at C speed instead of asking partition by partition."""

    def __init__(self, labels: dict[tuple[str, str, str], frozenset[str]]) -> None:
        self._labels = labels

    @classmethod
    def from_keys(cls, keys: Iterable[PartitionKey]) -> DoneSet:
        grouped: dict[tuple[str, str, str], set[str]] = {}
        for ai, data_type, period in keys:
            grouped.setdefault((ai, data_type, period.export_type), set()).add(period.label)
        return cls({k: frozenset(v) for k, v in grouped.items()})

    def labels(self, ai: str, data_type: str, export_type: str) -> frozenset[str]:
        return self._labels.get((ai, data_type, export_type), frozenset())

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, PartitionKey):
            return False
        ai, data_type, period = key
        return period.label in self.labels(ai, data_type, period.export_type)

    def __len__(self) -> int:
        return sum(len(v) for v in self._labels.values())


def _row(row: tuple[Any, ...]) -> PartitionRow:
    ai, data_type, export_type, label, *rest = row
    return PartitionRow(PartitionKey(ai, data_type, Period.from_label(export_type, label)), *rest)
