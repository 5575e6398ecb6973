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
from downloader.core.policy import Action, Decision, backoff, poll_delay
from downloader.core.stats import Stats
from downloader.engine.checkpoint import Checkpoint, CheckpointError
from downloader.engine.links import LinksChanged, LinkSet
from downloader.engine.source import Answer, Job, Source
from downloader.engine.transfer import PartFailed, Stopping, StopRun, Transfer
from downloader.storage.base import Storage, StorageError

log = structlog.get_logger("gio.worker")

# After the grace period a partition that is not produced yet gets this many more polls.
LATE_NOT_READY_POLLS = 3
# A failed export job is submitted again after a short backoff (exports-spec §0: seconds).
MAX_RESUBMIT_BACKOFF_SECONDS = 30.0
# Polls of a job rebuilt to refresh its links before that refresh counts as failed.
MAX_REFRESH_POLLS = 120
# A backfill whose API host never answered gives up after this many quick retries (1+2+4 s).
UNREACHABLE_TRIES = 3


@dataclass(frozen=True)
class Outcome:
    kind: str  # "done" | "retry" | "failed"
    reason: str = ""
    delay: float = 0.0
    failed_keys: tuple[PartitionKey, ...] = ()
    still_running: bool = False  # failed only because a backfill stopped waiting for it


@dataclass
class JobState:
    """What the scheduler remembers of a job between tries (in memory, per run)."""

    polls: int = 0  # answers of any kind
    attempts: int = 0  # transient failures (5xx, 429, unreadable answers, broken downloads)
    late_polls: int = 0  # "not produced" answers after the grace period
    running_polls: int = 0  # "being built" answers in a row
    first_running: datetime | None = None  # the first "being built" answer of this run
    running_reason: str = ""  # what the last "being built" answer said (the status page)
    jobs: int = 0  # export jobs that failed on the vendor's side


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
                 stats: Stats, clock: Callable[[], datetime], stopping: asyncio.Event,
                 running_wait: timedelta | None = None) -> None:
        self.cfg = cfg
        # How long a backfill waits for an export that is being built (None: the daemon,
        # which never gives up on one inside the retention window).
        self.running_wait = running_wait
        self.answered: set[str] = set()  # sources whose API has answered in this run
        self.sources = sources
        self.storage = storage
        self.checkpoint = checkpoint
        self.stats = stats
        self.clock = clock
        self.transfer = Transfer(cfg, session, storage, checkpoint, stats, stopping)
        self._counted: set[PartitionKey] = set()  # partitions whose parts are in stats totals

    def _backoff(self, attempt: int, retry_after: float | None = None) -> float:
        r = self.cfg.retry
        return backoff(attempt, r.initial_backoff_seconds, r.max_backoff_seconds, retry_after)

    # --- the job -----------------------------------------------------------------------------

    async def run(self, job: Job, state: JobState) -> Outcome:
        try:
            return await self._run(job, state)
        except (StorageError, CheckpointError) as exc:  # disk full, permission denied, ...
            raise StopRun(str(exc)) from None

    async def _run(self, job: Job, state: JobState) -> Outcome:
        source = self.sources[job.source]
        keys = [k for k in job.keys if not self._is_done(k)]
        keys = [k for k in keys if not await self._finish_from_checkpoint(source, k)]
        if not keys:
            return Outcome("done")
        row = self.checkpoint.get(keys[0])
        job_ref = row.job_ref if row is not None else None
        answer = await source.ask(job, keys, job_ref)
        state.polls += 1
        decision = answer.decision
        if not decision.unreachable:
            self.answered.add(source.name)
            self.stats.api_problem = None
        if answer.job_ref != job_ref:
            for key in keys:
                self.checkpoint.submitted(key, answer.job_ref)
        if decision.action is Action.STOP:
            raise StopRun(decision.reason, config_error=True)
        if decision.action is not Action.POLL:
            state.running_polls, state.first_running = 0, None
        if decision.action is Action.DOWNLOAD:
            return await self._download(source, job, keys, answer, state)
        if decision.action is Action.FAIL and answer.files:
            await self._keep(source, job, keys, answer)
        return self._not_now(source, job, keys, state, decision)

    async def _keep(self, source: Source, job: Job, keys: list[PartitionKey],
                    answer: Answer) -> None:
        """A failed answer that carries files for a person to look at (an unusable result
        body): they are stored the usual way, under their names, but the partition is not
        sealed: no ``_SUCCESS``, and a later run replaces them."""

        async def no_refresh() -> Answer:
            raise PartFailed("nothing to refresh")

        links = LinkSet(answer, no_refresh)
        for key in keys:
            for index, spec in enumerate(answer.files.get(key, ())):
                if spec.data is not None:
                    await self.transfer.part(source, key, index, links)
            self.checkpoint.forget_parts(key)  # kept to look at, never a finished part

    def _is_done(self, key: PartitionKey) -> bool:
        row = self.checkpoint.get(key)
        return row is not None and row.state == "done"

    def _not_now(self, source: Source, job: Job, keys: list[PartitionKey], state: JobState,
                 decision: Decision) -> Outcome:
        retry = self.cfg.retry
        if decision.action is Action.POLL:
            now = self.clock()
            state.running_polls += 1
            state.first_running = state.first_running or now
            state.running_reason = decision.reason
            if self.running_wait is not None and now - state.first_running >= self.running_wait:
                minutes = round(self.running_wait.total_seconds() / 60)
                return Outcome("failed", f"{decision.reason} after {minutes} min",
                               failed_keys=tuple(keys), still_running=True)
            return Outcome("retry", decision.reason,
                           poll_delay(state.running_polls, source.poll_first_seconds,
                                      source.poll_max_seconds))
        if decision.action is Action.RESUBMIT:
            state.jobs += 1
            log.warning("export job failed", job=str(job), reason=decision.reason,
                        job_attempt=state.jobs, of=retry.max_job_attempts)
            if state.jobs >= retry.max_job_attempts:
                return Outcome("failed", decision.reason, failed_keys=tuple(keys))
            return Outcome("retry", decision.reason,
                           backoff(state.jobs - 1, retry.initial_backoff_seconds,
                                   min(retry.max_backoff_seconds, MAX_RESUBMIT_BACKOFF_SECONDS)))
        if decision.action is Action.WAIT:
            deadline = job.due + timedelta(minutes=retry.not_ready_grace_minutes)
            if self.clock() >= deadline:
                state.late_polls += 1
                if state.late_polls >= LATE_NOT_READY_POLLS:
                    return Outcome("failed", decision.reason, failed_keys=tuple(keys))
            return Outcome("retry", decision.reason, self._backoff(state.polls - 1))
        if decision.action is Action.RETRY and decision.unreachable:
            self.stats.api_problem = decision.reason
            log.warning("API not reachable", job=str(job), reason=decision.reason,
                        attempt=state.attempts + 1)
            if self.running_wait is None:  # the daemon keeps trying, with backoff
                state.attempts += 1
                self.stats.retries += 1
                return Outcome("retry", decision.reason, self._backoff(state.attempts - 1))
            if source.name not in self.answered:
                # A backfill that never got an answer from this host: a few quick tries, then
                # one line. After a first answer it is a transient failure like the others.
                state.attempts += 1
                if state.attempts > UNREACHABLE_TRIES:
                    raise StopRun(f"{decision.reason} (check the base_url in the config and "
                                  "the network)")
                return Outcome("retry", decision.reason, 2.0 ** (state.attempts - 1))
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
        log.debug("partition done", partition=str(key), parts=len(parts),
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
            if row is None or row.parts_total != count:
                # A new list of files (the export was rebuilt with another number of parts,
                # or parts were recorded for an answer that was not sealed): positions changed.
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
        stopped = False

        async def one(key: PartitionKey, index: int) -> None:
            nonlocal stopped
            try:
                finished[key][index] = await self.transfer.part(source, key, index, links)
            except PartFailed as exc:
                failures.setdefault(key, f"{answer.files[key][index].name}: {exc}")
            except LinksChanged:
                pass  # the partition is planned again below
            except Stopping:
                stopped = True
            except StopRun as exc:
                fatal.append(exc)
                tg.cancel_scope.cancel()
            except Exception as exc:  # a bug, not a download problem: logged (redacted)
                log.error("part failed unexpectedly", partition=str(key), part=index,
                          error=f"{type(exc).__name__}: {exc}")
                failures.setdefault(key, f"{answer.files[key][index].name}: internal error "
                                         f"{type(exc).__name__}")

        try:
            async with anyio.create_task_group() as tg:
                for key, indexes in todo.items():
                    for index in indexes:
                        tg.start_soon(one, key, index)
        finally:
            self.stats.link_refreshes += links.refreshes
        if fatal:
            raise fatal[0]
        changed = links.changed
        for key in changed:  # re-exported with another part count: positions mean new files
            self.checkpoint.forget_parts(key)
            self._counted.discard(key)
            log.info("export rebuilt with another number of parts; planning it again",
                     partition=str(key))
        for key in keys:
            if key in failures or key in changed or len(finished[key]) < links.count(key):
                continue
            specs = answer.files.get(key, ())
            extra = {i: spec.extra for i, spec in enumerate(specs) if spec.extra}
            await self.storage.tidy(source.folder(key), [spec.name for spec in specs])
            await self._seal_partition(source, key, list(finished[key].values()),
                                       answer.info.get(key, {}), fetched_at[key], extra)
        if failures:
            # A part gives up only after retry.max_attempts tries of its own (fresh links
            # included): its partition fails for this run (the daemon tries it next cycle).
            reason = "; ".join(f"{k}: {r}" for k, r in failures.items())
            return Outcome("failed", reason, failed_keys=tuple(failures))
        if changed or stopped:
            return Outcome("retry", "export rebuilt" if changed else "stopping")
        return Outcome("done")

    async def _fetch_finished(self, source: Source, job: Job,
                              keys: list[PartitionKey]) -> Answer:
        """New links for a job that was finished a moment ago: ask again, waiting out a new
        build (a source whose re-ask starts a new job answers "being built" for a while) and
        retrying transient trouble."""
        attempt = polls = 0
        while True:
            row = self.checkpoint.get(keys[0])
            job_ref = row.job_ref if row is not None else None
            answer = await source.ask(job, keys, job_ref)
            if answer.job_ref != job_ref:
                for key in keys:
                    self.checkpoint.submitted(key, answer.job_ref)
            decision = answer.decision
            if decision.action is Action.STOP:
                raise StopRun(decision.reason, config_error=True)
            if decision.action is Action.DOWNLOAD:
                log.debug("links refreshed", job=str(job))
                return answer
            if decision.action is Action.POLL and polls < MAX_REFRESH_POLLS:
                polls += 1
                await asyncio.sleep(poll_delay(polls, source.poll_first_seconds,
                                               source.poll_max_seconds))
                continue
            attempt += 1
            if attempt >= self.cfg.retry.max_attempts or decision.action in (
                    Action.FAIL, Action.POLL):
                raise PartFailed(f"could not refresh links: {decision.reason}")
            self.stats.retries += 1
            await asyncio.sleep(self._backoff(attempt - 1, decision.retry_after))
