"""Generated parts cached on disk, and the catalogue of what each partition currently holds.

The bytes of a part depend only on its `PartSpec` and index, so the cache file name hashes all
of them (and `GENERATOR_VERSION`); files are written atomically (temporary name, then rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from dataclasses import astuple, dataclass
from datetime import datetime, timedelta
from pathlib import Path

from downloader.sim.raw.csvgen import (
    GENERATOR_VERSION,
    PartSpec,
    Pool,
    assemble,
    build_pool,
    pool_member_bytes,
)

# Pools kept in memory; each is at most (POOL_VARIANTS + 1) * csvgen.MAX_MEMBER_BYTES.
POOL_CACHE_ENTRIES = 16


@dataclass(frozen=True)
class ExpectedPart:
    index: int
    size: int
    sha256: str
    path: Path


class PartStore:
    """Generates parts lazily and caches them on disk; safe to call from several threads."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._pools: OrderedDict[tuple[object, ...], Pool] = OrderedDict()

    def _key_lock(self, key: str) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def _pool(self, spec: PartSpec) -> Pool:
        member_bytes = pool_member_bytes(spec)
        key = (*spec.partition_key, member_bytes)
        with self._key_lock(f"pool:{key}"):
            with self._lock:
                pool = self._pools.get(key)
                if pool is not None:
                    self._pools.move_to_end(key)
                    return pool
            pool = build_pool(spec, member_bytes)
            with self._lock:
                self._pools[key] = pool
                while len(self._pools) > POOL_CACHE_ENTRIES:
                    self._pools.popitem(last=False)
            return pool

    def part(self, spec: PartSpec, index: int) -> ExpectedPart:
        """Return part `index` of `spec`, generating and caching it on first use."""
        if not 0 <= index < spec.parts_per_type:
            raise IndexError(f"part {index} out of range 0..{spec.parts_per_type - 1}")
        digest = hashlib.sha256(repr((GENERATOR_VERSION, astuple(spec), index)).encode())
        name = f"{spec.data_type}-{spec.export_date}-{index:05d}-{digest.hexdigest()[:40]}"
        path = self.cache_dir / f"{name}.csv.gz"
        meta_path = path.with_name(path.name + ".json")
        with self._key_lock(str(path)):
            cached = self._load_meta(path, meta_path, index)
            if cached is not None:
                return cached
            members = assemble(self._pool(spec), spec, index)
            sha = hashlib.sha256()
            size = 0
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            with tmp.open("wb") as out:
                for member in members:
                    out.write(member)
                    sha.update(member)
                    size += len(member)
            os.replace(tmp, path)
            tmp_meta = tmp.with_name(tmp.name + ".json")
            tmp_meta.write_text(json.dumps({"size": size, "sha256": sha.hexdigest()}))
            os.replace(tmp_meta, meta_path)
            return ExpectedPart(index, size, sha.hexdigest(), path)

    @staticmethod
    def _load_meta(path: Path, meta_path: Path, index: int) -> ExpectedPart | None:
        try:
            meta = json.loads(meta_path.read_text())
            if path.stat().st_size == meta["size"]:
                return ExpectedPart(index, int(meta["size"]), str(meta["sha256"]), path)
        except (OSError, ValueError, KeyError):
            pass
        return None

    def parts(self, spec: PartSpec) -> list[ExpectedPart]:
        return [self.part(spec, i) for i in range(spec.parts_per_type)]


@dataclass(frozen=True)
class Version:
    """What one partition and data type currently holds: the n-th export of it."""

    number: int
    parts: int
    modified: datetime  # Last-Modified of its parts; whole seconds, rising with each version


class Versions:
    """The current version of every re-exported partition; the rest are at version 0."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: dict[str, Version] = {}

    def current(self, key: str, first: Version) -> Version:
        """The version serving `key`; `first` (version 0) when it was never re-exported."""
        with self._lock:
            return self._current.get(key, first)

    def bump(self, key: str, first: Version, now: datetime, parts: int | None) -> Version:
        """Record a re-export at `now`: a new version, optionally with a new part count.

        Last-Modified rises by at least one second per version, so an HTTP date (one-second
        resolution) tells any two versions apart and If-Range with a date stays exact.
        """
        with self._lock:
            old = self._current.get(key, first)
            modified = max(now.replace(microsecond=0), old.modified + timedelta(seconds=1))
            new = Version(old.number + 1, old.parts if parts is None else parts, modified)
            self._current[key] = new
            return new
