"""Does one job: asks /v2/insights, downloads every part, writes the manifests.

The worker returns an :class:`Outcome` and never sleeps on a partition that is not ready: the
scheduler puts it back in its queue with the delay, so a slow export never holds a worker.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import anyio
import structlog

from downloader import __version__
from downloader.sources.raw.client import Insights, InsightsClient
from downloader.engine.checkpoint import Checkpoint, StoredPart
from downloader.config import Config
from downloader.core.constants import IO_BLOCK_BYTES
from downloader.core.integrity import CorruptPart
from downloader.engine.links import LinksChanged, LinkSet
from downloader.core.partitions import Job, PartitionKey, due_at
from downloader.core.policy import Action, Decision, backoff, classify_download, parse_retry_after
from downloader.core.stats import Stats
from downloader.storage.base import PartSink, Storage, StorageError, part_name

log = structlog.get_logger("gio.worker")

# After the grace period a partition that still is not ready gets this many more polls.
LATE_NOT_READY_POLLS = 3
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


@dataclass(frozen=True)
class Outcome:
    kind: str  # "done" | "retry" | "failed"
    reason: str = ""
    delay: float = 0.0
    failed_keys: tuple[PartitionKey, ...] = ()


@dataclass
class JobState:
    """What the scheduler remembers of a job between tries (in memory, per run)."""

    polls: int = 0
    attempts: int = 0
    late_polls: int = 0
    last_reason: str = ""
    first_try: datetime | None = field(default=None)


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(start, total) of a Content-Range header, None where absent or unknown."""
    m = _CONTENT_RANGE.match(value or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(3)) if m.group(3) != "*" else None
    return start, total


def manifest(key: PartitionKey, parts: list[StoredPart], export_date: str,
             fetched_at: str) -> dict[str, Any]:
    p = key.period
    return {
        "ai": key.ai,
        "data_type": key.data_type,
        "export_type": p.export_type,
        "export_date": export_date or p.label,
        "period_start": p.start.isoformat(),
        "period_end": p.end.isoformat(),
        "fetched_at": fetched_at,
        "parts": [{"name": part_name(s.index), "bytes": s.size, "sha256": s.sha256}
                  for s in sorted(parts, key=lambda s: s.index)],
        "total_bytes": sum(s.size for s in parts),
        "written_by": f"gio-downloader {__version__}",
    }


class Worker:
    def __init__(self, cfg: Config, session: aiohttp.ClientSession, client: InsightsClient,
                 storage: Storage, checkpoint: Checkpoint, stats: Stats,
                 clock: Callable[[], datetime]) -> None:
        self.cfg = cfg
        self.session = session
        self.client = client
        self.storage = storage
        self.checkpoint = checkpoint
        self.stats = stats
        self.clock = clock
        self.slots = asyncio.Semaphore(cfg.downloads)
        self._counted: set[PartitionKey] = set()  # partitions whose parts are in stats totals
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60)
        kill = os.environ.get(KILL_AFTER_BYTES_ENV)
        self._kill_after = int(kill) if kill and kill.isdigit() else None
        kill = os.environ.get(KILL_BEFORE_PUBLISH_ENV)
        self._kill_before_publish = int(kill) if kill and kill.isdigit() else None
        self._publishing = 0  # parts handed to publish() by this process

    def _backoff(self, attempt: int, retry_after: float | None = None) -> float:
        r = self.cfg.retry
        return backoff(attempt, r.initial_backoff_seconds, r.max_backoff_seconds, retry_after)

    # --- the job -----------------------------------------------------------------------------

    async def run(self, job: Job, state: JobState) -> Outcome:
        try:
            return await self._run(job, state)
        except StorageError as exc:  # disk full, permission denied, bucket gone: stop
            raise StopRun(str(exc)) from None

    async def _run(self, job: Job, state: JobState) -> Outcome:
        keys = [k for k in job.keys() if not self._is_done(k)]
        keys = [k for k in keys if not await self._finish_from_checkpoint(k)]
        if not keys:
            return Outcome("done")
        job = Job(job.ai, job.period, tuple(k.data_type for k in keys))
        state.first_try = state.first_try or self.clock()
        outcome = await self.client.fetch(job)
        state.polls += 1
        decision = outcome.decision
        if decision.action is Action.STOP:
            raise StopRun(decision.reason, config_error=True)
        if decision.action is Action.DOWNLOAD:
            assert outcome.insights is not None
            return await self._download(job, outcome.insights, state)
        return self._not_now(job, state, decision)

    def _is_done(self, key: PartitionKey) -> bool:
        row = self.checkpoint.get(key)
        return row is not None and row.state == "done"

    def _not_now(self, job: Job, state: JobState, decision: Decision) -> Outcome:
        state.last_reason = decision.reason
        retry = self.cfg.retry
        if decision.action is Action.WAIT:
            deadline = due_at(job.period, self.cfg.lags) + timedelta(
                minutes=retry.not_ready_grace_minutes)
            if self.clock() >= deadline:
                state.late_polls += 1
                if state.late_polls >= LATE_NOT_READY_POLLS:
                    return self._give_up(job, decision.reason)
            return Outcome("retry", decision.reason, self._backoff(state.polls - 1))
        if decision.action is Action.RETRY:
            state.attempts += 1
            self.stats.retries += 1
            if state.attempts >= retry.max_attempts:
                return self._give_up(job, decision.reason)
            return Outcome("retry", decision.reason,
                           self._backoff(state.attempts - 1, decision.retry_after))
        return self._give_up(job, decision.reason)

    def _give_up(self, job: Job, reason: str) -> Outcome:
        return Outcome("failed", reason, failed_keys=tuple(job.keys()))

    async def _finish_from_checkpoint(self, key: PartitionKey) -> bool:
        """A restart after the last part but before _SUCCESS: finish without asking the API."""
        row = self.checkpoint.get(key)
        if row is None or row.parts_total is None:
            return False
        parts = self.checkpoint.parts(key)
        if len(parts) != row.parts_total:
            return False
        for part in parts.values():
            if not await self.storage.recover_part(key, part):
                return False
        await self._seal_partition(key, list(parts.values()), row.export_date or "",
                                   row.fetched_at or "")
        return True

    async def _seal_partition(self, key: PartitionKey, parts: list[StoredPart],
                              export_date: str, fetched_at: str) -> None:
        await self.storage.write_success(key, manifest(key, parts, export_date, fetched_at))
        self.checkpoint.done(key)
        self._counted.discard(key)
        self.stats.partitions_done += 1
        log.info("partition done", partition=str(key), parts=len(parts),
                 bytes=sum(p.size for p in parts), location=self.storage.location(key))

    async def _download(self, job: Job, insights: Insights, state: JobState) -> Outcome:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        fetched_at: dict[PartitionKey, str] = {}

        async def refetch() -> Insights:
            return await self._fetch_finished(job)

        links = LinkSet(insights, refetch)
        todo: dict[PartitionKey, list[int]] = {}
        finished: dict[PartitionKey, dict[int, StoredPart]] = {}
        for key in job.keys():
            count = links.count(key.data_type)
            row = self.checkpoint.get(key)
            if row is not None and row.parts_total not in (None, count):
                # The export was rebuilt with another number of parts: positions changed.
                self.checkpoint.forget_parts(key)
            if row is None or row.parts_total != count or not row.fetched_at:
                self.checkpoint.started(key, count, insights.export_date, now)
                fetched_at[key] = now
            else:
                fetched_at[key] = row.fetched_at
            known = self.checkpoint.parts(key)
            finished[key] = {}
            for index, part in known.items():
                if await self.storage.recover_part(key, part):
                    finished[key][index] = part
                    self.stats.parts_recovered += 1
            todo[key] = [i for i in range(count) if i not in finished[key]]
            if key not in self._counted:  # a retried job is counted once
                self._counted.add(key)
                self.stats.parts_total += count
                self.stats.parts_done += len(finished[key])
        failures: dict[PartitionKey, str] = {}
        fatal: list[StopRun] = []

        async def one(key: PartitionKey, index: int) -> None:
            try:
                finished[key][index] = await self._part(key, index, links)
            except (PartFailed, LinksChanged) as exc:
                failures.setdefault(key, f"{part_name(index)}: {exc}")
            except StopRun as exc:
                fatal.append(exc)
                tg.cancel_scope.cancel()

        try:
            async with anyio.create_task_group() as tg:
                for key, indexes in todo.items():
                    for index in indexes:
                        tg.start_soon(one, key, index)
        finally:
            self.stats.link_refreshes += links.refreshes
        if fatal:
            raise fatal[0]
        for key in job.keys():
            if key in failures:
                continue
            await self._seal_partition(key, list(finished[key].values()), insights.export_date,
                                       fetched_at[key])
        if failures:
            state.attempts += 1
            reason = "; ".join(f"{k.data_type}: {r}" for k, r in failures.items())
            if state.attempts >= self.cfg.retry.max_attempts:
                return Outcome("failed", reason, failed_keys=tuple(failures))
            self.stats.retries += 1
            return Outcome("retry", reason, self._backoff(state.attempts - 1))
        return Outcome("done")

    async def _fetch_finished(self, job: Job) -> Insights:
        """New links for a job that was FINISHED a moment ago (retrying transient trouble)."""
        attempt = 0
        while True:
            outcome = await self.client.fetch(job)
            decision = outcome.decision
            if decision.action is Action.STOP:
                raise StopRun(decision.reason, config_error=True)
            if decision.action is Action.DOWNLOAD and outcome.insights is not None:
                log.info("links refreshed", job=str(job))
                return outcome.insights
            attempt += 1
            if attempt >= self.cfg.retry.max_attempts or decision.action is Action.FAIL:
                raise PartFailed(f"could not refresh links: {decision.reason}")
            self.stats.retries += 1
            await asyncio.sleep(self._backoff(attempt - 1, decision.retry_after))

    # --- one part ----------------------------------------------------------------------------

    async def _part(self, key: PartitionKey, index: int, links: LinkSet) -> StoredPart:
        try:
            sink = await self.storage.open_part(key, index, self.cfg.verify == "gzip")
        except StorageError as exc:
            raise StopRun(str(exc)) from None
        try:
            if sink.offset:
                log.info("resuming part", partition=str(key), part=index, offset=sink.offset)
                self.stats.bytes_resumed += sink.offset
            failures = 0
            sized = False
            while True:
                generation, url = links.get(key.data_type, index)
                start = sink.offset
                # The slot is held until the part is published, not just downloaded: a part
                # whose tail is still being fsynced or uploaded keeps its buffers, so it must
                # count against concurrency.downloads (else slow storage lets them pile up).
                async with self.slots:
                    expected: int | None = None
                    stored: StoredPart | None = None
                    try:
                        decision, expected = await self._fetch_into(url, sink)
                        if decision.action is Action.DOWNLOAD:
                            stored = await self._seal(key, index, sink, expected)
                    except CorruptPart as exc:
                        log.warning("corrupt part", partition=str(key), part=index,
                                    error=str(exc))
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
        except StorageError as exc:
            raise StopRun(str(exc)) from None
        finally:
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

    async def _fetch_into(self, url: str, sink: PartSink) -> tuple[Decision, int | None]:
        """One GET of a part into ``sink``, resuming at its offset. Returns what to do next and
        the part's full size when the server said it."""
        headers = {"Range": f"bytes={sink.offset}-"} if sink.offset else {}
        try:
            async with self.session.get(url, headers=headers, timeout=self._timeout) as resp:
                if resp.status == 416 and sink.offset:
                    _, total = _content_range(resp.headers.get("Content-Range"))
                    if total == sink.offset:  # we already have every byte
                        return classify_download(206), total
                    await self._reset(sink)
                    return classify_download(None, broken=True), None
                if resp.status not in (200, 206):
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                    return classify_download(resp.status, retry_after=retry_after), None
                expected: int | None
                if resp.status == 206:
                    start, expected = _content_range(resp.headers.get("Content-Range"))
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
