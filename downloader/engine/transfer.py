"""Stores one file of a partition: streamed from its link with a checked Range resume, or written
whole when the source gave it inline; then sealed (durable), recorded and published.

The save sequence, for every source: temporary name → stream → check size (and gzip) → durable
→ checkpoint row → final name. A crash at any instant leaves either a resumable temporary file,
or a recorded part that a restart publishes without fetching it again.

A resume sends ``If-Range`` with the validator (ETag or Last-Modified) of the bytes already
stored: if the vendor re-exported the part meanwhile, the server answers with the whole new body
and the old bytes are thrown away, so two versions are never spliced. Without a validator the
part starts again at byte 0.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiohttp
import structlog

from downloader.config.model import Config
from downloader.core.constants import IO_BLOCK_BYTES
from downloader.core.integrity import CorruptPart
from downloader.core.model import PartitionKey, StoredPart
from downloader.core.policy import (
    Action,
    Decision,
    backoff,
    classify_download,
    parse_retry_after,
)
from downloader.core.ratelimit import Slots
from downloader.core.stats import Stats
from downloader.engine.checkpoint import Checkpoint, CheckpointError
from downloader.engine.links import LinkSet
from downloader.engine.source import FileSpec, Source
from downloader.storage.base import PartSink, Storage, StorageError

log = structlog.get_logger("gio.worker")

# Fault-injection seam for crash tests: SIGKILL this process once it has stored this many bytes.
KILL_AFTER_BYTES_ENV = "GIO_DOWNLOADER_KILL_AFTER_BYTES"
# ... and this one SIGKILLs it when the Nth part is recorded but not yet published.
KILL_BEFORE_PUBLISH_ENV = "GIO_DOWNLOADER_KILL_BEFORE_PUBLISH"

# On a slow link, hand what arrived to storage at least this often, so that a crash loses at most
# this much of the download (the bytes on disk are what a restart resumes from).
MAX_BUFFER_SECONDS = 0.25
# A link that broke off twice in a row without a byte is replaced by fresh links.
SAME_LINK_TRIES = 2

_CONTENT_RANGE = re.compile(r"^bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)$")


class StopRun(Exception):
    """Nothing can succeed (credentials rejected, disk full): stop the whole run.
    ``config_error`` marks the ones the user fixes in the configuration (exit code 2)."""

    def __init__(self, message: str, config_error: bool = False) -> None:
        super().__init__(message)
        self.config_error = config_error


class PartFailed(Exception):
    """A part kept failing without progress; its partition is reported failed."""


class Stopping(Exception):
    """The run is stopping: no new download starts (the part stays resumable)."""


@dataclass(frozen=True)
class Fetched:
    decision: Decision
    expected: int | None = None  # the part's full size, when the server said it
    status: int | None = None


def content_range(value: str | None) -> tuple[int | None, int | None]:
    """(start, total) of a Content-Range header, None where absent or unknown."""
    m = _CONTENT_RANGE.match(value or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(3)) if m.group(3) != "*" else None
    return start, total


def validator_of(headers: Mapping[str, str]) -> str | None:
    """A strong ETag, else Last-Modified: what If-Range may carry (RFC 9110 §13.1.5)."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified") or None


def _seam(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value and value.isdigit() else None


class Transfer:
    def __init__(self, cfg: Config, session: aiohttp.ClientSession, storage: Storage,
                 checkpoint: Checkpoint, stats: Stats, stopping: asyncio.Event) -> None:
        self.cfg = cfg
        self.session = session
        self.storage = storage
        self.checkpoint = checkpoint
        self.stats = stats
        self.stopping = stopping
        self.slots = Slots(cfg.downloads)
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=30,
                                              sock_read=cfg.read_timeout_seconds)
        self._kill_after = _seam(KILL_AFTER_BYTES_ENV)
        self._kill_before_publish = _seam(KILL_BEFORE_PUBLISH_ENV)
        self._publishing = 0  # parts handed to publish() by this process

    def _backoff(self, attempt: int, retry_after: float | None = None) -> float:
        r = self.cfg.retry
        return backoff(attempt, r.initial_backoff_seconds, r.max_backoff_seconds, retry_after)

    async def _open(self, source: Source, key: PartitionKey, index: int,
                    spec: FileSpec) -> PartSink:
        try:
            return await self.storage.open_part(source.folder(key), spec.name, index,
                                                spec.gzip and self.cfg.verify == "gzip")
        except StorageError as exc:
            raise StopRun(str(exc)) from None

    async def part(self, source: Source, key: PartitionKey, index: int,
                   links: LinkSet) -> StoredPart:
        """Store one file. The sink is opened inside a download slot, never before: a
        partition of a thousand parts holds at most ``concurrency.downloads`` files open."""
        sink: PartSink | None = None
        try:
            _, spec = links.get(key, index)
            if spec.data is not None:
                async with self.slots.slot():
                    sink = await self._open(source, key, index, spec)
                    return await self._inline(key, index, spec, sink)
            return await self._download(source, key, index, links)
        except (StorageError, CheckpointError) as exc:
            raise StopRun(str(exc)) from None
        finally:
            if sink is not None:
                await sink.close()

    async def _inline(self, key: PartitionKey, index: int, spec: FileSpec,
                      sink: PartSink) -> StoredPart:
        """A file the source's answer carried whole: no download, the same save sequence."""
        assert spec.data is not None
        if sink.offset:
            await sink.reset()
        await sink.write([spec.data])
        stored = await self._seal(key, index, sink, len(spec.data))
        self.stats.bytes_done += len(spec.data)
        self.stats.parts_done += 1
        return stored

    async def _download(self, source: Source, key: PartitionKey, index: int,
                        links: LinkSet) -> StoredPart:
        sink: PartSink | None = None
        failures = quiet = 0  # attempts without progress; of them, in a row on one link
        stale_auth = False
        sized = False

        def on_size(size: int) -> None:  # the part's size, as soon as its answer says it
            nonlocal sized
            if not sized:
                self.stats.bytes_expected += size
                sized = True

        try:
            while True:
                generation, spec = links.get(key, index)
                assert spec.url is not None
                if self.stopping.is_set():
                    raise Stopping()
                # The slot is held until the part is published, not just downloaded: a part
                # whose tail is still being fsynced or uploaded keeps its buffers, so it must
                # count against concurrency.downloads (else slow storage lets them pile up).
                async with self.slots.slot(resuming=sink is not None):
                    if self.stopping.is_set():
                        raise Stopping()
                    if sink is None:
                        sink = await self._open(source, key, index, spec)
                        if sink.offset:
                            log.debug("resuming part", partition=str(key), part=index,
                                      offset=sink.offset)
                            self.stats.bytes_resumed += sink.offset
                    start = sink.offset
                    headers = dict(await source.download_headers(stale_auth)) if spec.auth \
                        else {}
                    stored: StoredPart | None = None
                    try:
                        got = await self._fetch_into(spec, sink, headers, on_size)
                        if got.decision.action is Action.DOWNLOAD:
                            stored = await self._seal(key, index, sink, got.expected)
                    except CorruptPart as exc:
                        log.warning("corrupt part", partition=str(key), part=index,
                                    error=str(exc))
                        got = Fetched(classify_download(None, corrupt=True))
                if stored is not None:
                    self.stats.parts_done += 1
                    return stored
                decision = got.decision
                stale_auth = spec.auth and got.status == 401
                progress = sink.offset > start
                if not progress or decision.action in (Action.REFETCH, Action.REFRESH):
                    failures += 1
                if failures >= self.cfg.retry.max_attempts:
                    raise PartFailed(decision.reason)
                self.stats.retries += 1
                log.debug("part retry", partition=str(key), part=index,
                          reason=decision.reason, offset=sink.offset, failures=failures)
                if stale_auth:
                    continue  # the same link with a new token
                if decision.action is Action.REFETCH:
                    await self._reset(sink)
                    await links.refresh(generation)
                elif decision.action is Action.REFRESH:
                    await links.refresh(generation)
                elif decision.action is Action.RESUME and progress:
                    quiet = 0  # go on from the new bytes at once
                elif decision.action is Action.RESUME and quiet + 1 >= SAME_LINK_TRIES:
                    quiet = 0
                    await links.refresh(generation)
                else:
                    quiet += decision.action is Action.RESUME
                    await asyncio.sleep(self._backoff(failures - 1, decision.retry_after))
        finally:
            if sink is not None:
                await sink.close()

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

    async def _fetch_into(self, spec: FileSpec, sink: PartSink, extra: dict[str, str],
                          on_size: Callable[[int], None]) -> Fetched:
        """One GET of a part into ``sink``, resuming at its offset when the stored bytes are
        known to be of the version the server has."""
        assert spec.url is not None
        # The parts are stored exactly as served: no transfer compression by a proxy.
        headers = {"Accept-Encoding": "identity", **extra}
        if sink.offset and (not spec.ranged or sink.validator is None):
            await self._reset(sink)  # the bytes cannot be matched to a version: start over
        if sink.offset:
            assert sink.validator is not None
            headers["Range"] = f"bytes={sink.offset}-"
            headers["If-Range"] = sink.validator
        try:
            async with self.session.get(spec.url, headers=headers,
                                        timeout=self._timeout) as resp:
                return await self._take(resp, sink, on_size)
        except (aiohttp.ClientError, TimeoutError, ConnectionError, ValueError):
            # ClientError covers resets, payload errors, oversized headers and redirect loops;
            # ValueError a link aiohttp cannot use. The link is never logged (it is signed).
            return Fetched(classify_download(None, broken=True))

    async def _take(self, resp: aiohttp.ClientResponse, sink: PartSink,
                    on_size: Callable[[int], None]) -> Fetched:
        status = resp.status
        if status == 416 and sink.offset:
            _, total = content_range(resp.headers.get("Content-Range"))
            if total == sink.offset and total == sink.total:  # every byte is here already
                return Fetched(classify_download(206), total, status)
            await self._reset(sink)
            return Fetched(classify_download(None, broken=True), None, status)
        if status not in (200, 206):
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            return Fetched(classify_download(status, retry_after=retry_after), None, status)
        encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            return Fetched(Decision(Action.RETRY, f"download was sent with Content-Encoding "
                                                  f"{encoding} although identity was asked "
                                                  "(a compressing proxy?)"), None, status)
        validator = validator_of(resp.headers)
        expected: int | None
        if status == 206:
            start, expected = content_range(resp.headers.get("Content-Range"))
            if start != sink.offset or expected != sink.total or (
                    validator is not None and validator != sink.validator):
                await self._reset(sink)  # not the bytes we have: start over, next try
                return Fetched(classify_download(None, broken=True), None, status)
        else:
            if sink.offset:  # a new version (If-Range did not hold) or Range ignored
                await self._reset(sink)
            expected = resp.content_length
            await sink.remember(validator, expected)
        if expected is not None:
            on_size(expected)
        await self._stream(resp, sink)
        if expected is not None and sink.offset < expected:
            return Fetched(classify_download(None, broken=True), expected, status)
        return Fetched(classify_download(status), expected, status)

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
