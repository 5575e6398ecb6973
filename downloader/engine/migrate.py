"""The checkpoint's schema and its upgrades, applied in place on the first writable open.

Schema 1 (before sources): rows keyed by ``(ai, data_type, export_type, label)``, the raw
export's ``exportDate`` in its own column, parts known by position only. Schema 2 keys rows by
``(source, item, partition)``; a raw row becomes ``("raw", "<ai>/<data_type>",
"<export_type>:<label>")``, its export date goes into ``info`` and each part gets its file name
(``part-NNNNN.csv.gz``, the only name schema 1 ever wrote). The upgrade runs in one transaction:
a crash during it leaves the schema-1 file as it was.
"""

from __future__ import annotations

import json
import sqlite3

from downloader.core.constants import PART_NAME_FORMAT

SCHEMA_VERSION = 2

_META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
# WITHOUT ROWID: rows live in primary-key order, so reading one item's partitions (planning,
# status) is a sequential scan however randomly they were written.
_PARTITIONS = """CREATE TABLE IF NOT EXISTS partitions (
    source TEXT NOT NULL, item TEXT NOT NULL, partition TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed')),
    parts_total INTEGER, info TEXT, fetched_at TEXT, job_ref TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, updated_at TEXT NOT NULL,
    PRIMARY KEY (source, item, partition)
) WITHOUT ROWID"""
_PARTS = """CREATE TABLE IF NOT EXISTS parts (
    source TEXT NOT NULL, item TEXT NOT NULL, partition TEXT NOT NULL,
    idx INTEGER NOT NULL, name TEXT NOT NULL, bytes INTEGER NOT NULL, sha256 TEXT NOT NULL,
    done_at TEXT NOT NULL,
    PRIMARY KEY (source, item, partition, idx)
) WITHOUT ROWID"""
SCHEMA = ";\n".join((_META, _PARTITIONS, _PARTS)) + ";"


def schema_version(db: sqlite3.Connection) -> int | None:
    """The version recorded in the file; None for a new, empty file."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "meta" not in tables:
        if tables:
            raise sqlite3.DatabaseError("not a gio-downloader checkpoint (no meta table)")
        return None
    row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    if row is None or not str(row[0]).isdigit():
        raise sqlite3.DatabaseError("not a gio-downloader checkpoint (no schema version)")
    return int(row[0])


def migrate(db: sqlite3.Connection, writable: bool) -> int:
    """Bring the file to :data:`SCHEMA_VERSION` (when ``writable``); returns the version the
    file has afterwards. A version from the future is returned untouched for the caller to
    refuse."""
    found = schema_version(db)
    if not writable:
        return SCHEMA_VERSION if found is None else found
    if found is None:
        db.executescript(SCHEMA)
        db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        return SCHEMA_VERSION
    if found == 1:
        _from_1(db)
        return SCHEMA_VERSION
    return found


def _from_1(db: sqlite3.Connection) -> None:
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("ALTER TABLE partitions RENAME TO partitions_v1")
        db.execute("ALTER TABLE parts RENAME TO parts_v1")
        db.execute(_PARTITIONS)
        db.execute(_PARTS)
        rows = db.execute(
            "SELECT ai, data_type, export_type, label, state, parts_total, export_date, "
            "fetched_at, attempts, last_error, updated_at FROM partitions_v1")
        db.executemany(
            "INSERT INTO partitions VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)",
            [("raw", f"{ai}/{dt}", f"{et}:{label}", state, total,
              json.dumps({"export_date": export_date}) if export_date else None,
              fetched, attempts, error, updated)
             for ai, dt, et, label, state, total, export_date, fetched, attempts, error, updated
             in rows.fetchall()])
        parts = db.execute("SELECT ai, data_type, export_type, label, idx, bytes, sha256, "
                           "done_at FROM parts_v1")
        db.executemany(
            "INSERT INTO parts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [("raw", f"{ai}/{dt}", f"{et}:{label}", idx, PART_NAME_FORMAT.format(index=idx),
              size, sha, done_at)
             for ai, dt, et, label, idx, size, sha, done_at in parts.fetchall()])
        db.execute("DROP TABLE partitions_v1")
        db.execute("DROP TABLE parts_v1")
        db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
