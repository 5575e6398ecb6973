"""One export part streaming into an S3 multipart upload.

Each chunk is hashed (SHA-256 for the manifest, the upload checksum of the current 8 MiB piece),
gzip-checked and copied into the current buffer in one executor job, overlapping the download of
the next chunk. A full buffer is sent as the next UploadPart while the next one fills if the
buffer pool has a spare buffer to lend, else before the next one fills; so at most two buffers
exist per part and memory is bounded whatever the part's size. ``finish`` checks size and gzip
and sends the last piece; the object appears only when ``publish`` completes the upload, after
the worker has recorded the part in the checkpoint (a restart completes an upload left between
the two, see ``S3Storage.recover_part``). A part smaller than one buffer is sent with one
PutObject instead, in ``publish``. The buffers are in :mod:`downloader.storage.s3buffers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

import anyio
import structlog

from downloader.core.integrity import CorruptPart, GzipVerifier
from downloader.core.model import StoredPart
from downloader.storage.base import StorageError
from downloader.storage.s3buffers import PART_BYTES, BufferPool, Checksum, PartBuffer
from downloader.storage.s3client import S3Bucket

log = structlog.get_logger("gio.s3")

# How long close() may spend aborting an unfinished upload when the run is being cancelled.
ABORT_TIMEOUT_SECONDS = 15


class S3PartSink:
    """One part streaming into a multipart upload of ``key`` (see the module doc). Its buffers
    come from ``buffers``; hashing and gzip checks run in ``pool``."""

    def __init__(self, bucket: S3Bucket, buffers: BufferPool, pool: Executor, key: str,
                 name: str, index: int, verify_gzip: bool) -> None:
        self._bucket = bucket
        self._buffers = buffers
        self._pool = pool
        self.index = index
        self.name = name
        self.key = key
        self._verify = verify_gzip
        self.offset = 0
        self._open = False  # counted among the buffer pool's open parts
        self._start()

    def _start(self) -> None:
        self._sha = hashlib.sha256()
        self._gz: GzipVerifier | None = GzipVerifier() if self._verify else None
        self._buf: PartBuffer | None = None  # taken at the first byte, not while queued
        self._sum = Checksum(self._bucket.checksum)
        self._buffered = 0  # bytes handed to the current buffer (some may still be in a job)
        self._absorbing: asyncio.Future[None] | None = None
        self._uploading: asyncio.Task[dict[str, Any]] | None = None
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._sealed = False  # finish() succeeded: every byte is sent, none is visible yet
        self.offset = 0
        self.validator: str | None = None  # in memory: a restart starts a part at byte 0
        self.total: int | None = None

    async def remember(self, validator: str | None, total: int | None) -> None:
        self.validator, self.total = validator, total

    async def open(self) -> S3PartSink:
        """Abort what an earlier run left of this part: its hash state died with that run."""
        aborted = await self._bucket.abort_uploads(self.key, exact=True)
        if aborted:
            log.info("discarded an unfinished upload of this part; uploading it again",
                     object=self._bucket.url_of(self.key), uploads=aborted)
        self._buffers.sink_opened()
        self._open = True
        return self

    # --- streaming ---------------------------------------------------------------------------

    def _absorb(self, buf: PartBuffer, pieces: list[memoryview]) -> None:
        for data in pieces:
            self._sha.update(data)
            self._sum.update(data)
            buf.append(data)
            if self._gz is not None:
                self._gz.feed(data)  # zlib takes any buffer: no copy

    async def _drain(self) -> None:
        pending, self._absorbing = self._absorbing, None
        if pending is not None:
            await pending

    async def _wait_upload(self) -> None:
        task, self._uploading = self._uploading, None
        if task is not None:
            self._parts.append(await task)

    def _take_buffer(self) -> tuple[PartBuffer, Checksum]:
        """The filled buffer and its checksum; the next byte takes a new buffer."""
        body = self._buf if self._buf is not None else self._buffers.take_buffer()
        checksum = self._sum
        self._buf, self._sum, self._buffered = None, Checksum(self._bucket.checksum), 0
        return body, checksum

    async def _ship(self) -> None:
        """Send the full buffer as the next UploadPart, after the previous one is through."""
        await self._drain()
        await self._wait_upload()
        if self._upload_id is None:
            self._upload_id = await self._bucket.create_upload(self.key)
        body, checksum = self._take_buffer()
        number = len(self._parts) + 1
        self._uploading = asyncio.create_task(
            self._upload(self._upload_id, number, body, checksum))
        if self._buffers.take_spare():  # fill the next buffer while this one uploads
            self._uploading.add_done_callback(self._buffers.give_spare)
        else:  # the pool's memory budget is spent: let the upload finish first
            await self._wait_upload()

    async def _upload(self, upload_id: str, number: int, body: PartBuffer,
                      checksum: Checksum) -> dict[str, Any]:
        """Send one buffer; it goes back to the pool once the server has all of it."""
        try:
            piece = await self._bucket.upload_part(self.key, upload_id, number, body, checksum)
        except BaseException:
            body.close()  # a request that failed or was cancelled may still hold a view of it
            raise
        self._buffers.give_back(body)
        return piece

    async def write(self, chunks: Sequence[bytes]) -> None:
        pieces: list[memoryview] = []
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                # Exact 8 MiB parts: a chunk that crosses a boundary is split (views, no copy).
                room = PART_BYTES - self._buffered
                piece, view = view[:room], view[room:]
                pieces.append(piece)
                self._buffered += len(piece)
                self.offset += len(piece)
                if self._buffered >= PART_BYTES:
                    await self._queue(pieces)
                    pieces = []
                    await self._ship()
        if pieces:
            await self._queue(pieces)

    async def _queue(self, pieces: list[memoryview]) -> None:
        """Hash, check and copy ``pieces`` into the current buffer in one executor job."""
        await self._drain()
        if self._buf is None:
            self._buf = self._buffers.take_buffer()
        self._absorbing = asyncio.get_running_loop().run_in_executor(
            self._pool, self._absorb, self._buf, pieces)

    async def settle(self) -> int:
        """Wait for the queued hashing and the UploadPart in flight; returns the bytes taken."""
        await self._drain()
        await self._wait_upload()
        return self.offset

    async def _discard(self) -> None:
        """Stop everything in flight and abort the upload; errors no longer matter."""
        with contextlib.suppress(Exception):
            await self._drain()
        task, self._uploading = self._uploading, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
            if not task.cancelled():
                task.exception()  # retrieved: it no longer matters
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is not None:
            await self._bucket.abort_upload(self.key, upload_id)

    def _drop_buffer(self) -> None:
        buf, self._buf = self._buf, None
        if buf is not None:
            self._buffers.give_back(buf)

    async def reset(self) -> None:
        await self._discard()
        self._drop_buffer()
        self._start()

    # --- sealing -----------------------------------------------------------------------------

    def _check_gzip(self) -> None:
        if self._gz is not None:
            self._gz.close()

    async def finish(self, expected_size: int | None) -> StoredPart:
        """Check size and gzip, and send what is left of a multipart upload, without completing
        it: nothing is visible yet (``publish`` does that, once the worker has recorded the
        part). A part smaller than one buffer stays in memory until then."""
        await self._drain()
        if expected_size is not None and self.offset != expected_size:
            raise CorruptPart(f"size {self.offset} differs from Content-Length {expected_size}")
        await asyncio.get_running_loop().run_in_executor(self._pool, self._check_gzip)
        if self._upload_id is not None:
            if self._buffered:
                await self._ship()
            await self._wait_upload()
        self._sealed = True
        return StoredPart(self.index, self.offset, self._sha.hexdigest(), self.name)

    async def publish(self) -> None:
        """Make the object appear whole: complete the upload (or PUT a small part), then compare
        the stored size with the bytes sent."""
        if self._upload_id is None:
            body, checksum = self._take_buffer()
            try:
                await self._bucket.put(self.key, body, checksum)
            except BaseException:
                body.close()  # a request that failed may still hold a view of it
                raise
            self._buffers.give_back(body)
        else:
            await self._bucket.complete_upload(self.key, self._upload_id, self._parts)
        # Kept until now so that the reset() after a failed completion aborts the upload.
        self._upload_id = None
        stored = await self._bucket.size_of(self.key)
        if stored != self.offset:
            held = "is missing" if stored is None else f"holds {stored} bytes"
            raise CorruptPart(f"{self._bucket.url_of(self.key)} {held} after {self.offset} "
                              "were sent")

    async def close(self) -> None:
        """Abort an unfinished upload: a later run starts the part over (see the module doc).
        One that was sent in full (``finish``) but not completed is left for ``recover_part``:
        the checkpoint has recorded the part, and the start-up sweep spares its upload."""
        if self._sealed:
            self._upload_id = None
        with anyio.CancelScope(shield=True), anyio.move_on_after(ABORT_TIMEOUT_SECONDS):
            with contextlib.suppress(StorageError):
                await self._discard()
        self._drop_buffer()
        if self._open:
            self._open = False
            self._buffers.sink_closed()
