"""Stores one file of a partition: streamed from its link with Range resume, or written whole
when the source gave it inline; then sealed (durable), recorded and published.

The save sequence, for every source: temporary name → stream → check size (and gzip) → durable
→ checkpoint row → final name. A crash at any instant leaves either a resumable temporary file,
or a recorded part that a restart publishes without fetching it again.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time

import aiohttp
import structlog

from downloader.config.model import Config
from downloader.core.constants import IO_BLOCK_BYTES
from downloader.core.integrity import CorruptPart
from downloader.core.model import PartitionKey, StoredPart
from downloader.core.policy import Action, Decision, backoff, classify_download, parse_retry_after
from downloader.core.stats import Stats
from downloader.engine.checkpoint import Checkpoint
from downloader.engine.links import LinkSet
from downloader.engine.source import FileSpec
from downloader.storage.base import PartSink, Storage, StorageError

log = structlog.get_logger("gio.worker")

# Fault-injection seam for crash tests: SIGKILL this process once it has stored this many bytes.
KILL_AFTER_BYTES_ENV = "GIO_DOWNLOADER_KILL_AFTER_BYTES"
# ... and this one SIGKILLs it when the Nth part is recorded but not yet published.
KILL_BEFORE_PUBLISH_ENV = "GIO_DOWNLOADER_KILL_BEFORE_PUBLISH"

# On a slow link, hand what arrived to storage at least this often, so that a crash loses at most
# this much of the download (the bytes on disk are what a restart resumes from).
MAX_BUFFER_SECONDS = 0.25

_CONTENT_RANGE = re.compile(r"^bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)$")


class StopRun(Exception):
    """Nothing can succeed (credentials rejected, disk full): stop the whole run.
    ``config_error`` marks the ones the user fixes in the configuration (exit code 2)."""

    def __init__(self, message: str, config_error: bool = False) -> None:
        super().__init__(message)
        self.config_error = config_error


class PartFailed(Exception):
    """A part kept failing without progress; its partition is reported failed."""


def content_range(value: str | None) -> tuple[int | None, int | None]:
    """(start, total) of a Content-Range header, None where absent or unknown."""
    m = _CONTENT_RANGE.match(value or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(3)) if m.group(3) != "*" else None
    return start, total


def _seam(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value and value.isdigit() else None


class Transfer:
    def __init__(self, cfg: Config, session: aiohttp.ClientSession, storage: Storage,
                 checkpoint: Checkpoint, stats: Stats) -> None:
        self.cfg = cfg
        self.session = session
        self.storage = storage
        self.checkpoint = checkpoint
        self.stats = stats
        self.slots = asyncio.Semaphore(cfg.downloads)
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60)
        self._kill_after = _seam(KILL_AFTER_BYTES_ENV)
        self._kill_before_publish = _seam(KILL_BEFORE_PUBLISH_ENV)
        self._publishing = 0  # parts handed to publish() by this process

    def _backoff(self, attempt: int, retry_after: float | None = None) -> float:
        r = self.cfg.retry
        return backoff(attempt, r.initial_backoff_seconds, r.max_backoff_seconds, retry_after)

    async def part(self, key: PartitionKey, folder: str, index: int,
                   links: LinkSet) -> StoredPart:
        _, spec = links.get(key, index)
        verify_gzip = spec.gzip and self.cfg.verify == "gzip"
        try:
            sink = await self.storage.open_part(folder, spec.name, index, verify_gzip)
        except StorageError as exc:
            raise StopRun(str(exc)) from None
        try:
            if spec.data is not None:
                return await self._inline(key, index, spec, sink)
            return await self._download(key, index, links, sink)
        except StorageError as exc:
            raise StopRun(str(exc)) from None
        finally:
            await sink.close()

    async def _inline(self, key: PartitionKey, index: int, spec: FileSpec,
                      sink: PartSink) -> StoredPart:
        """A file the source's answer carried whole: no download, the same save sequence."""
        assert spec.data is not None
        async with self.slots:
            if sink.offset:
                await sink.reset()
            await sink.write([spec.data])
            stored = await self._seal(key, index, sink, len(spec.data))
        self.stats.bytes_done += len(spec.data)
        self.stats.parts_done += 1
        return stored

    async def _download(self, key: PartitionKey, index: int, links: LinkSet,
                        sink: PartSink) -> StoredPart:
        if sink.offset:
            log.info("resuming part", partition=str(key), part=index, offset=sink.offset)
            self.stats.bytes_resumed += sink.offset
        failures = 0
        sized = False
        while True:
            generation, spec = links.get(key, index)
            assert spec.url is not None
            start = sink.offset
            # The slot is held until the part is published, not just downloaded: a part whose
            # tail is still being fsynced or uploaded keeps its buffers, so it must count
            # against concurrency.downloads (else slow storage lets them pile up).
            async with self.slots:
                expected: int | None = None
                stored: StoredPart | None = None
                try:
                    decision, expected = await self._fetch_into(spec.url, sink)
                    if decision.action is Action.DOWNLOAD:
                        stored = await self._seal(key, index, sink, expected)
                except CorruptPart as exc:
                    log.warning("corrupt part", partition=str(key), part=index, error=str(exc))
                    decision = classify_download(None, corrupt=True)
            if expected is not None and not sized:
                self.stats.bytes_expected += expected
                sized = True
            if stored is not None:
                self.stats.parts_done += 1
                return stored
            if sink.offset <= start or decision.action is Action.REFETCH:
                failures += 1
            if failures >= self.cfg.retry.max_attempts:
                raise PartFailed(decision.reason)
            self.stats.retries += 1
            log.info("part retry", partition=str(key), part=index, reason=decision.reason,
                     offset=sink.offset, failures=failures)
            if decision.action is Action.REFETCH:
                await self._reset(sink)
                await links.refresh(generation)
            elif decision.action is Action.REFRESH:
                await links.refresh(generation)
            else:
                await asyncio.sleep(self._backoff(failures, decision.retry_after))

    async def _seal(self, key: PartitionKey, index: int, sink: PartSink,
                    expected: int | None) -> StoredPart:
        """Durable but not yet visible (fsynced under the temporary name, or uploaded but not
        completed): record in the checkpoint, then publish. A publication that fails takes the
        record back, and the part is fetched again."""
        stored = await sink.finish(expected)
        self.checkpoint.part_done(key, stored)
        self._publishing += 1
        if self._kill_before_publish == self._publishing:
            os.kill(os.getpid(), signal.SIGKILL)
        try:
            await sink.publish()
        except CorruptPart:
            self.checkpoint.forget_part(key, index)
            raise
        return stored

    async def _fetch_into(self, url: str, sink: PartSink) -> tuple[Decision, int | None]:
        """One GET of a part into ``sink``, resuming at its offset. Returns what to do next and
        the part's full size when the server said it."""
        headers = {"Range": f"bytes={sink.offset}-"} if sink.offset else {}
        try:
            async with self.session.get(url, headers=headers, timeout=self._timeout) as resp:
                if resp.status == 416 and sink.offset:
                    _, total = content_range(resp.headers.get("Content-Range"))
                    if total == sink.offset:  # we already have every byte
                        return classify_download(206), total
                    await self._reset(sink)
                    return classify_download(None, broken=True), None
                if resp.status not in (200, 206):
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                    return classify_download(resp.status, retry_after=retry_after), None
                expected: int | None
                if resp.status == 206:
                    start, expected = content_range(resp.headers.get("Content-Range"))
                    if start != sink.offset:
                        await self._reset(sink)
                        return classify_download(None, broken=True), None
                else:
                    if sink.offset:  # the server ignored Range: start over
                        await self._reset(sink)
                    expected = resp.content_length
                await self._stream(resp, sink)
                if expected is not None and sink.offset < expected:
                    return classify_download(None, broken=True), expected
                return classify_download(resp.status), expected
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError,
                ConnectionError):
            return classify_download(None, broken=True), None

    async def _stream(self, resp: aiohttp.ClientResponse, sink: PartSink) -> None:
        """Copy the body to ``sink`` in ~1 MiB batches; on a break, keep every byte that did
        arrive. The chunks are the ones aiohttp received (readchunk() hands them over without
        joining them), so the event loop copies nothing: storage writes them as they are."""
        blocks: list[bytes] = []
        size = 0
        flushed = time.monotonic()
        try:
            while True:
                data, _ = await resp.content.readchunk()
                if not data:
                    if resp.content.at_eof():
                        break
                    continue  # the end of one chunk of a chunked body
                blocks.append(data)
                size += len(data)
                if size >= IO_BLOCK_BYTES or time.monotonic() - flushed >= MAX_BUFFER_SECONDS:
                    await self._write(sink, blocks, size)
                    blocks, size = [], 0
                    flushed = time.monotonic()
        finally:
            if size:
                await self._write(sink, blocks, size)

    async def _reset(self, sink: PartSink) -> None:
        """Throw the stored bytes of a part away (they were wrong or unusable)."""
        self.stats.bytes_discarded += sink.offset
        await sink.reset()

    async def _write(self, sink: PartSink, blocks: list[bytes], size: int) -> None:
        await sink.write(blocks)
        self.stats.bytes_done += size
        if self._kill_after is not None and self.stats.bytes_done >= self._kill_after:
            await sink.settle()
            os.kill(os.getpid(), signal.SIGKILL)
