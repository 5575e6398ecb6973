"""Does one job: asks the source, downloads every file, writes the manifests.

The worker returns an :class:`Outcome` and never sleeps on a partition that is not ready: the
scheduler puts it back in its queue with the delay, so a slow export never holds a worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import anyio
import structlog

from downloader import __version__
from downloader.config.model import Config
from downloader.core.model import PartitionKey, StoredPart
from downloader.core.policy import Action, Decision, backoff
from downloader.core.stats import Stats
from downloader.engine.checkpoint import Checkpoint
from downloader.engine.links import LinksChanged, LinkSet
from downloader.engine.source import Answer, Job, Source
from downloader.engine.transfer import PartFailed, StopRun, Transfer
from downloader.storage.base import Storage, StorageError

log = structlog.get_logger("gio.worker")

# After the grace period a partition that still is not ready gets this many more polls.
LATE_NOT_READY_POLLS = 3


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


def manifest(head: dict[str, Any], parts: list[StoredPart], fetched_at: str,
             extra: Mapping[int, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The ``_SUCCESS`` manifest: the source's fields, then the parts in order."""
    extra = extra or {}
    ordered = sorted(parts, key=lambda s: s.index)
    return {
        **head,
        "fetched_at": fetched_at,
        "parts": [{"name": s.name, "bytes": s.size, "sha256": s.sha256, **extra.get(s.index, {})}
                  for s in ordered],
        "total_bytes": sum(s.size for s in parts),
        "written_by": f"gio-downloader {__version__}",
    }


class Worker:
    def __init__(self, cfg: Config, session: aiohttp.ClientSession,
                 sources: Mapping[str, Source], storage: Storage, checkpoint: Checkpoint,
                 stats: Stats, clock: Callable[[], datetime]) -> None:
        self.cfg = cfg
        self.sources = sources
        self.storage = storage
        self.checkpoint = checkpoint
        self.stats = stats
        self.clock = clock
        self.transfer = Transfer(cfg, session, storage, checkpoint, stats)
        self._counted: set[PartitionKey] = set()  # partitions whose parts are in stats totals

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
        source = self.sources[job.source]
        keys = [k for k in job.keys if not self._is_done(k)]
        keys = [k for k in keys if not await self._finish_from_checkpoint(source, k)]
        if not keys:
            return Outcome("done")
        answer = await source.ask(job, keys)
        state.polls += 1
        decision = answer.decision
        if decision.action is Action.STOP:
            raise StopRun(decision.reason, config_error=True)
        if decision.action is Action.DOWNLOAD:
            return await self._download(source, job, keys, answer, state)
        return self._not_now(job, keys, state, decision)

    def _is_done(self, key: PartitionKey) -> bool:
        row = self.checkpoint.get(key)
        return row is not None and row.state == "done"

    def _not_now(self, job: Job, keys: list[PartitionKey], state: JobState,
                 decision: Decision) -> Outcome:
        retry = self.cfg.retry
        if decision.action is Action.WAIT:
            deadline = job.due + timedelta(minutes=retry.not_ready_grace_minutes)
            if self.clock() >= deadline:
                state.late_polls += 1
                if state.late_polls >= LATE_NOT_READY_POLLS:
                    return Outcome("failed", decision.reason, failed_keys=tuple(keys))
            return Outcome("retry", decision.reason, self._backoff(state.polls - 1))
        if decision.action is Action.RETRY:
            state.attempts += 1
            self.stats.retries += 1
            if state.attempts >= retry.max_attempts:
                return Outcome("failed", decision.reason, failed_keys=tuple(keys))
            return Outcome("retry", decision.reason,
                           self._backoff(state.attempts - 1, decision.retry_after))
        return Outcome("failed", decision.reason, failed_keys=tuple(keys))

    async def _finish_from_checkpoint(self, source: Source, key: PartitionKey) -> bool:
        """A restart after the last part but before _SUCCESS: finish without asking the API."""
        row = self.checkpoint.get(key)
        if row is None or row.parts_total is None:
            return False
        parts = self.checkpoint.parts(key)
        if len(parts) != row.parts_total:
            return False
        folder = source.folder(key)
        for part in parts.values():
            if not await self.storage.recover_part(folder, part):
                return False
        await self._seal_partition(source, key, list(parts.values()), row.info,
                                   row.fetched_at or "")
        return True

    async def _seal_partition(self, source: Source, key: PartitionKey, parts: list[StoredPart],
                              info: Mapping[str, str], fetched_at: str,
                              extra: Mapping[int, Mapping[str, Any]] | None = None) -> None:
        folder = source.folder(key)
        await self.storage.write_success(
            folder, manifest(source.manifest(key, info), parts, fetched_at, extra))
        self.checkpoint.done(key)
        self._counted.discard(key)
        self.stats.partitions_done += 1
        log.info("partition done", partition=str(key), parts=len(parts),
                 bytes=sum(p.size for p in parts), location=self.storage.location(folder))

    async def _download(self, source: Source, job: Job, keys: list[PartitionKey],
                        answer: Answer, state: JobState) -> Outcome:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        fetched_at: dict[PartitionKey, str] = {}

        async def refetch() -> Answer:
            return await self._fetch_finished(source, job, keys)

        links = LinkSet(answer, refetch)
        todo: dict[PartitionKey, list[int]] = {}
        finished: dict[PartitionKey, dict[int, StoredPart]] = {}
        for key in keys:
            count = links.count(key)
            info = dict(answer.info.get(key, {}))
            row = self.checkpoint.get(key)
            if row is not None and row.parts_total not in (None, count):
                # The export was rebuilt with another number of parts: positions changed.
                self.checkpoint.forget_parts(key)
            if row is None or row.parts_total != count or not row.fetched_at:
                self.checkpoint.started(key, count, info, now)
                fetched_at[key] = now
            else:
                fetched_at[key] = row.fetched_at
            known = self.checkpoint.parts(key)
            finished[key] = {}
            folder = source.folder(key)
            for index, part in known.items():
                if await self.storage.recover_part(folder, part):
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
                finished[key][index] = await self.transfer.part(key, source.folder(key), index,
                                                                links)
            except PartFailed as exc:
                failures.setdefault(key, f"{links.get(key, index)[1].name}: {exc}")
            except LinksChanged as exc:
                failures.setdefault(key, str(exc))
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
        for key in keys:
            if key in failures:
                continue
            extra = {i: spec.extra for i, spec in enumerate(answer.files.get(key, ()))
                     if spec.extra}
            await self._seal_partition(source, key, list(finished[key].values()),
                                       answer.info.get(key, {}), fetched_at[key], extra)
        if failures:
            state.attempts += 1
            reason = "; ".join(f"{k}: {r}" for k, r in failures.items())
            if state.attempts >= self.cfg.retry.max_attempts:
                return Outcome("failed", reason, failed_keys=tuple(failures))
            self.stats.retries += 1
            return Outcome("retry", reason, self._backoff(state.attempts - 1))
        return Outcome("done")

    async def _fetch_finished(self, source: Source, job: Job,
                              keys: list[PartitionKey]) -> Answer:
        """New links for a job that was finished a moment ago (retrying transient trouble)."""
        attempt = 0
        while True:
            answer = await source.ask(job, keys)
            decision = answer.decision
            if decision.action is Action.STOP:
                raise StopRun(decision.reason, config_error=True)
            if decision.action is Action.DOWNLOAD:
                log.info("links refreshed", job=str(job))
                return answer
            attempt += 1
            if attempt >= self.cfg.retry.max_attempts or decision.action is Action.FAIL:
                raise PartFailed(f"could not refresh links: {decision.reason}")
            self.stats.retries += 1
            await asyncio.sleep(self._backoff(attempt - 1, decision.retry_after))
