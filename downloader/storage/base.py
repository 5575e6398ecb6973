"""Where parts go. One interface, the worker does not know which implementation it talks to.

Local storage follows restic's save sequence: hidden temporary name in the partition folder →
stream → check size and gzip → fsync → (checkpoint) → rename → fsync the folder.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import hashlib
import json
import os
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import aiofiles
import aiofiles.os

from downloader.engine.checkpoint import StoredPart
from downloader.config import ConfigError, StorageConfig, check_writable
from downloader.core.constants import (
    IO_BLOCK_BYTES,
    PART_NAME_FORMAT,
    SUCCESS_NAME,
    TEMP_PREFIX,
    TEMP_SUFFIX,
    WRITEBACK_BYTES,
)
from downloader.core.integrity import CorruptPart, GzipVerifier
from downloader.core.partitions import PartitionKey


class StorageError(Exception):
    """A permanent storage problem (disk full, permission denied, missing bucket)."""


def partition_dir(key: PartitionKey) -> str:
    """The partition's folder below the storage root, Hive style (downstream jobs depend on it):
    ``ai=<ai>/data_type=<t>/export_type=<e>/date=<YYYY-MM-DD>/[hour=<HH>/]``."""
    p = key.period
    parts = [f"ai={key.ai}", f"data_type={key.data_type}", f"export_type={p.export_type}",
             f"date={p.date_str}"]
    if p.hour_str is not None:
        parts.append(f"hour={p.hour_str}")
    return "/".join(parts)


def part_name(index: int) -> str:
    return PART_NAME_FORMAT.format(index=index)


class PartSink(Protocol):
    """One part being stored. ``offset`` is how many bytes are already stored (resume point).

    ``write`` takes the next bytes as the chunks they arrived in (not joined: a copy of every
    byte on the event loop is what joining would cost). ``finish`` checks them and makes them
    durable without showing them under the part's final name; the worker then records the part
    in the checkpoint, and ``publish`` gives it its final name. A crash between the two leaves
    a recorded part that ``Storage.recover_part`` publishes without fetching it again."""

    offset: int

    async def write(self, chunks: Sequence[bytes]) -> None: ...

    async def settle(self) -> int: ...

    async def reset(self) -> None: ...

    async def finish(self, expected_size: int | None) -> StoredPart: ...

    async def publish(self) -> None: ...

    async def close(self) -> None: ...


class Storage(Protocol):
    """``check`` says whether parts can be stored now (start-up, and the daemon's readiness);
    it must not disturb parts being stored. ``sweep`` runs once at start-up, before any
    download, and removes what earlier runs left half-written, except the parts the
    checkpoint has recorded (``keep``: their ``location``), which ``recover_part`` publishes."""

    def location(self, key: PartitionKey, name: str = "") -> str: ...

    async def check(self) -> None: ...

    async def sweep(self, keep: Collection[str]) -> None: ...

    async def open_part(self, key: PartitionKey, index: int, verify_gzip: bool) -> PartSink: ...

    async def recover_part(self, key: PartitionKey, part: StoredPart) -> bool: ...

    async def write_success(self, key: PartitionKey, manifest: dict[str, Any]) -> None: ...

    async def close(self) -> None: ...


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode()


def _load_sync_file_range() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):  # not Linux/glibc: the final fsync does all the work
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return fn


_SYNC_FILE_RANGE = _load_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range to disk now, without waiting for it, so the
    fsync at the end of a part finds little left to do and disk and network overlap."""
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _permanent(exc: OSError) -> StorageError:
    return StorageError(f"{exc.filename or 'storage'}: {exc.strerror or exc}")


class LocalPartSink:
    """Streams a part to ``.part-NNNNN.csv.gz.partial`` beside its final name.

    Each block is written, hashed and (optionally) inflated in one executor job, and the next
    block is read from the network while that job runs: one thread hop per ~1 MiB, and the gzip
    check overlaps the download instead of following it.
    """

    def __init__(self, folder: Path, index: int, verify_gzip: bool,
                 pool: ThreadPoolExecutor) -> None:
        self.folder = folder
        self.index = index
        self.final = folder / part_name(index)
        self.temp = folder / f"{TEMP_PREFIX}{part_name(index)}{TEMP_SUFFIX}"
        self._verify = verify_gzip
        self._pool = pool
        self._file: BinaryIO | None = None
        self._sha = hashlib.sha256()
        self._gz: GzipVerifier | None = GzipVerifier() if verify_gzip else None
        self._pending: asyncio.Future[None] | None = None
        self.offset = 0
        self._written = 0  # bytes written by the I/O thread
        self._flushed = 0  # of which handed to the kernel's writeback

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _open(self) -> None:
        """Open the temporary file, resuming from what a previous run left in it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._file = open(self.temp, "a+b")  # noqa: SIM115 - closed in close()
        self._file.seek(0)
        size = 0
        try:
            while block := self._file.read(IO_BLOCK_BYTES):
                self._sha.update(block)
                if self._gz is not None:
                    self._gz.feed(block)
                size += len(block)
        except CorruptPart:
            self._truncate()
            size = 0
        self._file.seek(size)
        self.offset = self._written = self._flushed = size

    def _truncate(self) -> None:
        assert self._file is not None
        self._file.seek(0)
        self._file.truncate()
        self._written = self._flushed = 0
        self._sha = hashlib.sha256()
        self._gz = GzipVerifier() if self._verify else None

    def _sink(self, chunks: Sequence[bytes]) -> None:
        assert self._file is not None
        self._file.writelines(chunks)
        for chunk in chunks:
            self._written += len(chunk)
            self._sha.update(chunk)
            if self._gz is not None:
                self._gz.feed(chunk)
        if self._written - self._flushed >= WRITEBACK_BYTES:
            self._file.flush()
            _start_writeback(self._file.fileno(), self._flushed, self._written - self._flushed)
            self._flushed = self._written

    async def open(self) -> LocalPartSink:
        try:
            await self._run(self._open)
        except OSError as exc:
            raise _permanent(exc) from None
        return self

    async def _drain(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            try:
                await pending
            except OSError as exc:
                raise _permanent(exc) from None

    async def write(self, chunks: Sequence[bytes]) -> None:
        await self._drain()
        self._pending = asyncio.get_running_loop().run_in_executor(self._pool, self._sink,
                                                                   chunks)
        self.offset += sum(map(len, chunks))

    async def settle(self) -> int:
        """Wait for queued writes; returns the bytes really stored. A CorruptPart found by the
        running gzip check is raised here or at finish()."""
        await self._drain()
        return self.offset

    async def reset(self) -> None:
        try:
            await self._drain()
        except CorruptPart:
            pass
        await self._run(self._truncate)
        self.offset = 0

    def _seal(self, expected_size: int | None) -> StoredPart:
        assert self._file is not None
        self._file.flush()
        if expected_size is not None and self.offset != expected_size:
            raise CorruptPart(f"size {self.offset} differs from Content-Length {expected_size}")
        if self._gz is not None:
            self._gz.close()
        os.fsync(self._file.fileno())
        return StoredPart(self.index, self.offset, self._sha.hexdigest())

    async def finish(self, expected_size: int | None) -> StoredPart:
        await self._drain()
        try:
            stored: StoredPart = await self._run(self._seal, expected_size)
        except OSError as exc:
            raise _permanent(exc) from None
        return stored

    def _publish(self) -> None:
        os.replace(self.temp, self.final)
        _fsync_dir(self.folder)

    async def publish(self) -> None:
        try:
            await self._run(self._publish)
        except OSError as exc:
            raise _permanent(exc) from None

    async def close(self) -> None:
        try:
            await self._drain()
        except (CorruptPart, StorageError):
            pass
        if self._file is not None:
            f, self._file = self._file, None
            await self._run(f.close)


class LocalStorage:
    def __init__(self, root: Path, threads: int) -> None:
        self.root = root
        # One thread per concurrent download, plus a spare for manifests and renames.
        self._pool = ThreadPoolExecutor(max_workers=threads + 1, thread_name_prefix="gio-io")

    def folder(self, key: PartitionKey) -> Path:
        return self.root / partition_dir(key)

    def location(self, key: PartitionKey, name: str = "") -> str:
        return str(self.folder(key) / name) if name else str(self.folder(key))

    async def check(self) -> None:
        try:
            check_writable(self.root, "storage.url", is_dir=True)
        except ConfigError as exc:
            raise StorageError(str(exc)) from None

    async def sweep(self, keep: Collection[str]) -> None:
        """Nothing to remove: a part's temporary file is resumed from, not thrown away."""

    async def open_part(self, key: PartitionKey, index: int, verify_gzip: bool) -> PartSink:
        return await LocalPartSink(self.folder(key), index, verify_gzip, self._pool).open()

    async def recover_part(self, key: PartitionKey, part: StoredPart) -> bool:
        """A part the checkpoint calls finished: make sure it is there under its final name."""
        folder = self.folder(key)
        final = folder / part_name(part.index)
        temp = folder / f"{TEMP_PREFIX}{part_name(part.index)}{TEMP_SUFFIX}"
        if await aiofiles.os.path.isfile(final):
            return (await aiofiles.os.stat(final)).st_size == part.size
        if await aiofiles.os.path.isfile(temp) and (await aiofiles.os.stat(temp)).st_size \
                == part.size:
            # The crash came between the checkpoint row and the rename: finish the rename.
            await aiofiles.os.replace(temp, final)
            await asyncio.get_running_loop().run_in_executor(self._pool, _fsync_dir, folder)
            return True
        return False

    async def write_success(self, key: PartitionKey, manifest: dict[str, Any]) -> None:
        folder = self.folder(key)
        temp = folder / f"{TEMP_PREFIX}{SUCCESS_NAME}{TEMP_SUFFIX}"
        try:
            await aiofiles.os.makedirs(folder, exist_ok=True)
            async with aiofiles.open(temp, "wb") as f:
                await f.write(manifest_bytes(manifest))
                await f.flush()
                await asyncio.get_running_loop().run_in_executor(self._pool, os.fsync,
                                                                 f.fileno())
            await aiofiles.os.replace(temp, folder / SUCCESS_NAME)
            await asyncio.get_running_loop().run_in_executor(self._pool, _fsync_dir, folder)
        except OSError as exc:
            raise _permanent(exc) from None

    async def close(self) -> None:
        self._pool.shutdown(wait=True)


def open_storage(cfg: StorageConfig, threads: int) -> Storage:
    if cfg.scheme == "file":
        return LocalStorage(cfg.local_root, threads)
    if cfg.scheme == "s3":
        # Imported here: the base install works without aiobotocore (the [s3] extra).
        try:
            from downloader.storage.s3 import S3Storage
        except ImportError as exc:
            raise StorageError(f"storage.url {cfg.url}: S3 storage needs aiobotocore "
                               f"({exc.name or exc}); pip install 'gio-downloader[s3]'") from None
        return S3Storage(cfg, threads)
    raise StorageError(f"storage.url: {cfg.url}: scheme must be file:// or s3://")

