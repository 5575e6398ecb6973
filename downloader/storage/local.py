"""Local storage, following restic's save sequence: hidden temporary name in the partition
folder → stream → check size and gzip → fsync → (checkpoint) → rename → fsync the folder."""

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
from typing import Any, BinaryIO

import aiofiles
import aiofiles.os
import structlog

from downloader.config.load import check_writable
from downloader.config.model import ConfigError
from downloader.core.constants import (
    IO_BLOCK_BYTES,
    SUCCESS_NAME,
    TEMP_PREFIX,
    TEMP_SUFFIX,
    WRITEBACK_BYTES,
)
from downloader.core.integrity import CorruptPart, GzipVerifier
from downloader.core.model import StoredPart
from downloader.storage.base import (
    PartSink,
    StorageError,
    manifest_bytes,
    temp_name,
    validator_name,
)

log = structlog.get_logger("gio.storage")


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


def _permanent(exc: OSError, path: Path | None = None) -> StorageError:
    """One line naming the file (a write or fsync error carries none: ``path`` says which)."""
    where = exc.filename or path or "storage"
    return StorageError(f"{where}: {exc.strerror or exc}")


class LocalPartSink:
    """Streams a part to ``.<name>.partial`` beside its final name.

    Each block is written, hashed and (optionally) inflated in one executor job, and the next
    block is read from the network while that job runs: one thread hop per ~1 MiB, and the gzip
    check overlaps the download instead of following it.
    """

    def __init__(self, folder: Path, name: str, index: int, verify_gzip: bool,
                 pool: ThreadPoolExecutor) -> None:
        self.folder = folder
        self.index = index
        self.name = name
        self.final = folder / name
        self.temp = folder / temp_name(name)
        self._verify = verify_gzip
        self._pool = pool
        self._file: BinaryIO | None = None
        self._sha = hashlib.sha256()
        self._gz: GzipVerifier | None = GzipVerifier() if verify_gzip else None
        self._pending: asyncio.Future[None] | None = None
        self._validator_file = folder / validator_name(name)
        self.validator: str | None = None
        self.total: int | None = None
        self._validator_due = False  # remember()ed, not yet written beside the bytes
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
        if size:
            self.validator, self.total = self._read_validator()
        self._file.seek(size)
        self.offset = self._written = self._flushed = size

    def _read_validator(self) -> tuple[str | None, int | None]:
        try:
            saved = json.loads(self._validator_file.read_text())
            return str(saved["validator"]), int(saved["total"]) if saved["total"] else None
        except (OSError, ValueError, KeyError, TypeError):
            return None, None  # unknown version: the bytes are not resumed

    def _write_validator(self, validator: str | None, total: int | None) -> None:
        if validator is None:
            self._validator_file.unlink(missing_ok=True)
        else:
            self._validator_file.write_text(json.dumps({"validator": validator,
                                                        "total": total}))

    async def remember(self, validator: str | None, total: int | None) -> None:
        """Written by the next write job, before its bytes: no wait here, so the body is read
        from the first byte on (aiohttp drops what it buffered once the connection breaks)."""
        self.validator, self.total = validator, total
        self._validator_due = True

    def _truncate(self) -> None:
        assert self._file is not None
        self._validator_file.unlink(missing_ok=True)
        self._file.seek(0)
        self._file.truncate()
        self._written = self._flushed = 0
        self._sha = hashlib.sha256()
        self._gz = GzipVerifier() if self._verify else None

    def _sink(self, chunks: Sequence[bytes]) -> None:
        assert self._file is not None
        if self._validator_due:
            self._validator_due = False
            self._write_validator(self.validator, self.total)
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
            raise _permanent(exc, self.temp) from None
        return self

    async def _drain(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            try:
                await pending
            except OSError as exc:
                raise _permanent(exc, self.temp) from None

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
        try:
            await self._run(self._truncate)
        except OSError as exc:
            raise _permanent(exc, self.temp) from None
        self.offset = 0
        self.validator = self.total = None

    def _seal(self, expected_size: int | None) -> StoredPart:
        assert self._file is not None
        self._file.flush()
        if expected_size is not None and self.offset != expected_size:
            raise CorruptPart(f"size {self.offset} differs from Content-Length {expected_size}")
        if self._gz is not None:
            self._gz.close()
        os.fsync(self._file.fileno())
        return StoredPart(self.index, self.offset, self._sha.hexdigest(), self.name)

    async def finish(self, expected_size: int | None) -> StoredPart:
        await self._drain()
        try:
            stored: StoredPart = await self._run(self._seal, expected_size)
        except OSError as exc:
            raise _permanent(exc, self.temp) from None
        return stored

    def _publish(self) -> None:
        os.replace(self.temp, self.final)
        _fsync_dir(self.folder)
        self._validator_file.unlink(missing_ok=True)

    async def publish(self) -> None:
        try:
            await self._run(self._publish)
        except OSError as exc:
            raise _permanent(exc, self.temp) from None

    async def close(self) -> None:
        try:
            await self._drain()
        except (CorruptPart, StorageError):
            pass
        if self._file is not None:
            f, self._file = self._file, None
            try:
                await self._run(f.close)
            except OSError:
                pass  # e.g. a full disk while flushing: the bytes were not counted as stored


class LocalStorage:
    def __init__(self, root: Path, threads: int) -> None:
        self.root = root
        # One thread per concurrent download, plus a spare for manifests and renames.
        self._pool = ThreadPoolExecutor(max_workers=threads + 1, thread_name_prefix="gio-io")

    def folder(self, folder: str) -> Path:
        return self.root / folder

    def location(self, folder: str, name: str = "") -> str:
        return str(self.folder(folder) / name) if name else str(self.folder(folder))

    async def check(self) -> None:
        try:
            check_writable(self.root, "storage.url", is_dir=True)
        except ConfigError as exc:
            raise StorageError(str(exc)) from None

    def _sweep(self, keep: Collection[str], roots: Collection[str],
               resumable: Collection[str], only: Collection[str] | None) -> int:
        resume = {self.root / f for f in resumable}
        mine = None if only is None else {self.root / f for f in only}
        removed = 0
        if not self.root.is_dir():
            return 0
        for top in self.root.iterdir():
            if not top.is_dir() or not any(top.name.startswith(r.rstrip("/")) for r in roots):
                continue
            for temp in top.rglob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}*"):
                final = temp.parent / temp.name[len(TEMP_PREFIX):].split(TEMP_SUFFIX)[0]
                if temp.parent in resume or str(final) in keep or \
                        (mine is not None and temp.parent not in mine):
                    continue
                temp.unlink(missing_ok=True)
                removed += 1
        return removed

    async def sweep(self, keep: Collection[str], roots: Collection[str],
                    resumable: Collection[str] = (),
                    only: Collection[str] | None = None) -> int:
        """Temporary files of partitions the checkpoint no longer has pending (done since,
        pruned out of the retention window, or never recorded) are removed; those of pending
        partitions stay, to be resumed."""
        try:
            removed: int = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._sweep, keep, roots, resumable, only)
        except OSError as exc:
            raise _permanent(exc) from None
        if removed:
            log.info("removed left-over temporary files", files=removed, storage=str(self.root))
        return removed

    async def open_part(self, folder: str, name: str, index: int,
                        verify_gzip: bool) -> PartSink:
        return await LocalPartSink(self.folder(folder), name, index, verify_gzip,
                                   self._pool).open()

    async def recover_part(self, folder: str, part: StoredPart) -> bool:
        """A part the checkpoint calls finished: make sure it is there under its final name."""
        path = self.folder(folder)
        final = path / part.name
        temp = path / temp_name(part.name)
        if await aiofiles.os.path.isfile(final):
            return (await aiofiles.os.stat(final)).st_size == part.size
        if await aiofiles.os.path.isfile(temp) and (await aiofiles.os.stat(temp)).st_size \
                == part.size:
            # The crash came between the checkpoint row and the rename: finish the rename.
            try:
                await aiofiles.os.replace(temp, final)
                await asyncio.get_running_loop().run_in_executor(self._pool, _fsync_dir, path)
            except OSError as exc:
                raise _permanent(exc) from None
            return True
        return False

    def _tidy(self, folder: Path, keep: Collection[str]) -> int:
        removed = 0
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return 0
        for name in names:
            if name in keep or name == SUCCESS_NAME or (folder / name).is_dir():
                continue
            (folder / name).unlink(missing_ok=True)
            removed += 1
        if removed:
            _fsync_dir(folder)
        return removed

    async def tidy(self, folder: str, keep: Collection[str]) -> int:
        try:
            removed: int = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._tidy, self.folder(folder), keep)
        except OSError as exc:
            raise _permanent(exc) from None
        return removed

    def _manifests(self, root: str) -> list[tuple[str, bytes]]:
        found: list[tuple[str, bytes]] = []
        if not self.root.is_dir():
            return found
        for top in sorted(self.root.iterdir()):
            if top.is_dir() and top.name.startswith(root.rstrip("/")):
                for path in sorted(top.rglob(SUCCESS_NAME)):
                    found.append((str(path.parent.relative_to(self.root)), path.read_bytes()))
        return found

    async def manifests(self, root: str) -> list[tuple[str, bytes]]:
        try:
            found: list[tuple[str, bytes]] = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._manifests, root)
        except OSError as exc:
            raise _permanent(exc) from None
        return found

    async def write_success(self, folder_name: str, manifest: dict[str, Any]) -> None:
        folder = self.folder(folder_name)
        temp = folder / temp_name(SUCCESS_NAME)
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
