"""The checkpoint: one SQLite file that says which partitions and parts are finished.

A part row is written once its bytes are durable (fsynced under their temporary name or
committed to object storage) and before they get their final name, so a restart after a crash at
any instant knows every finished part and can complete its publication. A partition is done only
after its ``_SUCCESS`` manifest is written. Links are never stored: they expire and carry
signatures.

Rows are keyed by ``(source, item, partition)`` (schema 2). A schema-1 file, written before
sources existed, is migrated in place on the first writable open: its keys become the raw
source's (see :mod:`downloader.engine.migrate`).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from downloader.core.model import DoneSet, PartitionKey, StoredPart
from downloader.engine.migrate import SCHEMA, SCHEMA_VERSION, migrate

_COLUMNS = ("source, item, partition, state, parts_total, info, fetched_at, job_ref, attempts, "
            "last_error, updated_at")
_KEY = "source=? AND item=? AND partition=?"


class CheckpointError(Exception):
    """The checkpoint cannot be opened or is in use; str() is one line for the user."""


@dataclass(frozen=True)
class PartitionRow:
    key: PartitionKey
    state: str
    parts_total: int | None
    info: dict[str, str] = field(hash=False)  # what the source said of the finished export
    fetched_at: str | None
    job_ref: str | None  # the source's id of a submitted export job, polled after a restart
    attempts: int
    last_error: str | None
    updated_at: str


def explain(path: Path, exc: sqlite3.Error) -> str:
    """One line for a SQLite failure, with what to do about it."""
    text = str(exc)
    if "full" in text:
        return f"checkpoint {path}: no space left on device ({text}); free space, then run again"
    if "malformed" in text or "not a database" in text or "gio-downloader checkpoint" in text:
        return (f"checkpoint {path}: unreadable ({text}); move the file away and run "
                "'gio-downloader checkpoint rebuild -c CONFIG' to rebuild it from the "
                "_SUCCESS manifests")
    return f"checkpoint {path}: {text}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


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
                    self._db.executescript(SCHEMA)
                    return
                self._db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
                self._check_version(writable=False)
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            self._take_lock()
            self._db = sqlite3.connect(path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._check_version(writable=True)
        except sqlite3.Error as exc:
            self._release_lock()
            raise CheckpointError(explain(path, exc)) from None
        except OSError as exc:
            self._release_lock()
            raise CheckpointError(f"checkpoint {path}: {exc.strerror or exc}") from None

    def _check_version(self, writable: bool) -> None:
        found = migrate(self._db, writable)
        if found > SCHEMA_VERSION:
            raise CheckpointError(
                f"checkpoint {self.path} has schema {found}, written by a newer gio-downloader "
                f"(this one knows {SCHEMA_VERSION}): upgrade, or point checkpoint at a new file")
        if found < SCHEMA_VERSION:  # read-only and not migrated yet
            raise CheckpointError(
                f"checkpoint {self.path} has schema {found}: run backfill or run once to "
                "upgrade it")

    def _take_lock(self) -> None:
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.read(fd, 32).decode(errors="replace").strip()
            finally:
                os.close(fd)
            pid = f" (pid {holder})" if holder.isdigit() else ""
            raise CheckpointError(f"checkpoint {self.path} is in use by another gio-downloader "
                                  f"process{pid}; lock {lock_path}") from None
        # The lock is the flock, held for the process's life and gone with it (kill -9
        # included); the pid in the file only says who holds it.
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
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

    def is_empty(self) -> bool:
        return not self._do("SELECT 1 FROM partitions LIMIT 1")

    def remove(self) -> None:
        """Delete the (closed) file, its WAL files and its lock: for a checkpoint a run
        created and never used."""
        for suffix in ("", "-wal", "-shm", ".lock"):
            self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- parts -------------------------------------------------------------------------------

    def _do(self, sql: str, args: Any = ()) -> list[Any]:
        """Run one statement; any SQLite failure (a full disk, a corrupt file) becomes one
        line naming the file, never a traceback."""
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise CheckpointError(explain(self.path, exc)) from None

    def part_done(self, key: PartitionKey, part: StoredPart) -> None:
        self._do(
            "INSERT OR REPLACE INTO parts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (*key, part.index, part.name, part.size, part.sha256, _now()))

    def parts(self, key: PartitionKey) -> dict[int, StoredPart]:
        rows = self._do(f"SELECT idx, name, bytes, sha256 FROM parts WHERE {_KEY}", key)
        return {i: StoredPart(i, n, h, name) for i, name, n, h in rows}

    def forget_parts(self, key: PartitionKey) -> None:
        self._do(f"DELETE FROM parts WHERE {_KEY}", key)

    def forget_part(self, key: PartitionKey, index: int) -> None:
        """A recorded part whose publication failed: it is fetched again."""
        self._do(f"DELETE FROM parts WHERE {_KEY} AND idx=?", (*key, index))

    def unsealed_parts(self) -> list[tuple[PartitionKey, StoredPart]]:
        """The recorded parts of partitions not done yet: the ones a restart may still have to
        publish (their bytes are stored, maybe not yet under the final name)."""
        rows = self._do(
            "SELECT p.source, p.item, p.partition, p.idx, p.name, p.bytes, p.sha256 FROM parts p "
            "JOIN partitions q USING (source, item, partition) WHERE q.state != 'done'")
        return [(PartitionKey(s, i, p), StoredPart(idx, n, h, name))
                for s, i, p, idx, name, n, h in rows]

    # --- partitions --------------------------------------------------------------------------

    def _upsert(self, key: PartitionKey, state: str, **fields: Any) -> None:
        cols = ["state", "updated_at", *fields]
        vals = [state, _now(), *fields.values()]
        sets = ", ".join(f"{c}=excluded.{c}" for c in cols)
        self._do(
            f"INSERT INTO partitions (source, item, partition, {', '.join(cols)}) "
            f"VALUES (?, ?, ?, {', '.join('?' * len(cols))}) "
            f"ON CONFLICT (source, item, partition) DO UPDATE SET {sets}",
            (*key, *vals))

    def started(self, key: PartitionKey, parts_total: int, info: dict[str, str],
                fetched_at: str) -> None:
        """The export is finished: remember how many files there are, what the source said of
        them (for the manifest) and when."""
        self._upsert(key, "pending", parts_total=parts_total,
                     info=json.dumps(info, sort_keys=True), fetched_at=fetched_at,
                     last_error=None)

    def submitted(self, key: PartitionKey, job_ref: str | None) -> None:
        """The source's export job for this partition (None: forget it, e.g. it failed)."""
        self._upsert(key, "pending", job_ref=job_ref)

    def done(self, key: PartitionKey) -> None:
        self._upsert(key, "done", last_error=None, job_ref=None)

    def failed(self, key: PartitionKey, error: str, attempts: int) -> None:
        self._upsert(key, "failed", last_error=error, attempts=attempts)

    def get(self, key: PartitionKey) -> PartitionRow | None:
        rows = self._do(f"SELECT {_COLUMNS} FROM partitions WHERE {_KEY}", key)
        return _row(rows[0]) if rows else None

    def rows(self, state: str | None = None) -> Iterator[PartitionRow]:
        where, args = ("WHERE state = ?", (state,)) if state else ("", ())
        for row in self._do(f"SELECT {_COLUMNS} FROM partitions {where} "
                            "ORDER BY source, partition, item", args):
            yield _row(row)

    def prune(self, before: datetime) -> int:
        """Forget partitions last touched before ``before`` (out of every window the planner
        looks at): the checkpoint stays as small as the retention window. Returns how many."""
        cutoff = before.astimezone(UTC).isoformat(timespec="seconds")
        gone = self._do("SELECT count(*) FROM partitions WHERE updated_at < ?", (cutoff,))[0][0]
        if gone:
            self._do("DELETE FROM parts WHERE (source, item, partition) IN (SELECT source, item, "
                     "partition FROM partitions WHERE updated_at < ?)", (cutoff,))
            self._do("DELETE FROM partitions WHERE updated_at < ?", (cutoff,))
        return int(gone)

    async def done_set_off_loop(self) -> DoneSet:
        """``done_set`` read by another connection in a worker thread: a large checkpoint does
        not hold the event loop (downloads, the health listener) while it is read."""
        if self._lock_fd is None:  # a read-only view (or in memory): read it here
            return self.done_set()

        def read() -> DoneSet:
            view = Checkpoint(self.path, readonly=True)
            try:
                return view.done_set()
            finally:
                view.close()

        return await asyncio.to_thread(read)

    def done_set(self) -> DoneSet:
        """Every done partition, for planning: one row per source and item with its partitions
        joined by SQLite, so hundreds of thousands of partitions load in a blink."""
        rows = self._do(
            "SELECT source, item, group_concat(partition, char(31)) FROM partitions "
            "WHERE state = 'done' GROUP BY source, item")
        return DoneSet({(source, item): frozenset(parts.split("\x1f"))
                        for source, item, parts in rows})


def _row(row: tuple[Any, ...]) -> PartitionRow:
    source, item, partition, state, total, info, fetched_at, job_ref, *rest = row
    return PartitionRow(PartitionKey(source, item, partition), state, total,
                        json.loads(info) if info else {}, fetched_at, job_ref, *rest)
