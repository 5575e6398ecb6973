"""Wiring: storage, checkpoint, HTTP session, rate budgets, the sources and the workers, run
over one job queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType

import aiohttp
import anyio
import structlog

from downloader import __version__
from downloader.config.model import Config
from downloader.core.constants import READ_BUFFER_BYTES
from downloader.core.model import DoneSet, PartitionKey
from downloader.core.policy import Action, backoff
from downloader.core.ratelimit import RateBudgets
from downloader.core.stats import Stats
from downloader.engine.checkpoint import Checkpoint, CheckpointError
from downloader.engine.jobs import UNREACHABLE_TRIES, JobState, Outcome, Worker
from downloader.engine.scheduler import DelayQueue, jobs_in_order, plan_all
from downloader.engine.sharding import ownership
from downloader.engine.source import Job, Preparing, Source
from downloader.engine.transfer import StopRun
from downloader.storage.base import Storage
from downloader.storage.factory import open_storage

log = structlog.get_logger("gio.app")


@dataclass
class Summary:
    done: list[PartitionKey] = field(default_factory=list)
    failed: dict[PartitionKey, str] = field(default_factory=dict)
    not_due: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    already_done: int = 0
    still_running: list[PartitionKey] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    running_wait_minutes: float = 0.0
    parts: int = 0  # downloaded by this run (not counting parts found complete on disk)
    bytes: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    fatal: str | None = None
    fatal_is_config: bool = False


def make_session(cfg: Config) -> aiohttp.ClientSession:
    """One session for API calls and downloads. ``auto_decompress=False``: the parts are .gz
    files and must be stored exactly as served; API calls ask for decompression themselves."""
    connector = aiohttp.TCPConnector(limit=cfg.downloads + 4, ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        read_bufsize=READ_BUFFER_BYTES,
        trust_env=True,
        headers={"User-Agent": f"gio-downloader/{__version__}"},
    )


@dataclass(frozen=True)
class Wiring:
    """What the engine lends a source's API client: the process's HTTP session, one rate
    budget per API host, and the counters that every API call is reported to."""

    cfg: Config
    session: aiohttp.ClientSession
    budgets: RateBudgets
    stats: Stats


@dataclass(frozen=True)
class Waiting:
    """A partition whose export the API is building, as the status page shows it."""

    since: datetime  # the first "being built" answer of this run
    polls: int  # "being built" answers in a row
    reason: str  # what the last one said, e.g. "export still running"


# Partitions last touched this long before the retention window are forgotten at start.
PRUNE_MARGIN = timedelta(days=1)

# Builds the configured sources; the service layer supplies it (the engine knows no source).
SourceFactory = Callable[[Wiring], list[Source]]


class Runner:
    """Owns the resources of one run and the workers that drain the job queue."""

    def __init__(self, cfg: Config, clock: Callable[[], datetime], make_sources: SourceFactory,
                 keep_summary: bool = True, stopping: asyncio.Event | None = None,
                 running_wait: timedelta | None = None) -> None:
        self.cfg = cfg
        self.clock = clock
        self.make_sources = make_sources
        self.sources: dict[str, Source] = {}
        self.stats = Stats()
        self.summary = Summary()
        self.keep_summary = keep_summary  # a daemon keeps counters only, not growing lists
        # Oldest data first among the jobs that may run now (first asks and re-polls alike).
        self.queue: DelayQueue[Job] = DelayQueue(priority=lambda job: job.start)
        self.states: dict[Job, JobState] = {}
        # Jobs queued or running, by (source, slot): a rescan never queues one twice.
        self.active: dict[tuple[str, str], Job] = {}
        # When a job last failed (monotonic), so a daemon retries it only after a cool-down.
        self.failed_at: dict[tuple[str, str], float] = {}
        self.in_flight = 0
        self.stopping = stopping or asyncio.Event()
        # A backfill gives up on an export still being built after this long; None: the
        # daemon, which never does while the partition is in the retention window.
        self.running_wait = running_wait
        self.idle = asyncio.Event()  # nothing queued, nothing running
        self.quiet = asyncio.Event()  # nothing running
        self.storage: Storage | None = None
        self.checkpoint: Checkpoint | None = None
        self.session: aiohttp.ClientSession | None = None
        self.worker: Worker | None = None
        self._new_checkpoint = False  # this run created the checkpoint file

    async def __aenter__(self) -> Runner:
        self.storage = open_storage(self.cfg.storage, self.cfg.downloads)
        try:
            await self.storage.check()
            self._new_checkpoint = not self.cfg.checkpoint.exists()
            self.checkpoint = Checkpoint(self.cfg.checkpoint)
            self.session = make_session(self.cfg)
            budgets = RateBudgets(self.cfg.instance_rate_per_second)
            wiring = Wiring(self.cfg, self.session, budgets, self.stats)
            self.sources = {s.name: s for s in self.make_sources(wiring)}
            await self._tidy_start()
        except BaseException:
            with anyio.CancelScope(shield=True):
                if self.session is not None:
                    await self.session.close()
                await self.storage.close()
            if self.checkpoint is not None:
                self.checkpoint.close()
            raise
        self.worker = Worker(self.cfg, self.session, self.sources, self.storage,
                             self.checkpoint, self.stats, self.clock, self.stopping,
                             self.running_wait)
        await self._prepare()
        return self

    async def _tidy_start(self) -> None:
        """Before any download: forget partitions older than every window (the checkpoint
        stays bounded), then remove what earlier runs left half-written, but the parts of
        pending partitions, which are resumed or published."""
        assert self.checkpoint is not None and self.storage is not None
        horizon = self.clock() - self.cfg.lags.retention - PRUNE_MARGIN
        pruned = self.checkpoint.prune(horizon)
        if pruned:
            log.info("forgot partitions older than the retention window", partitions=pruned)
        known = self.sources
        keep = {self.storage.location(known[k.source].folder(k), part.name)
                for k, part in self.checkpoint.unsealed_parts() if k.source in known}
        resumable = {known[r.key.source].folder(r.key) for state in ("pending", "failed")
                     for r in self.checkpoint.rows(state) if r.key.source in known}
        only = None
        if self.cfg.sharding.sharded:
            # The storage is shared: touch only the folders of partitions this instance
            # recorded and still owns, never another instance's uploads in flight.
            owns = {name: ownership(s, self.cfg.sharding) for name, s in known.items()}
            only = {known[r.key.source].folder(r.key) for r in self.checkpoint.rows()
                    if r.key.source in known and owns[r.key.source](r.key)}
        await self.storage.sweep(keep, roots={s.root for s in known.values()},
                                 resumable=resumable, only=only)

    async def _prepare(self) -> None:
        """Await each source's optional ``prepare()`` once, retrying transient failures with
        the run's backoff. Credentials refused: the run stops (``summary.fatal``)."""
        retry = self.cfg.retry
        for source in self.sources.values():
            if not isinstance(source, Preparing):
                continue
            attempt = 0
            while not self.stopping.is_set():
                decision = await source.prepare()
                if decision is None:
                    break
                if decision.action is Action.STOP:
                    self.summary.fatal, self.summary.fatal_is_config = decision.reason, True
                    self.stopping.set()
                    return
                attempt += 1
                if decision.unreachable and self.running_wait is not None and \
                        attempt > UNREACHABLE_TRIES:  # a backfill: say it within seconds
                    self.summary.fatal = f"{decision.reason} (check the base_url in the " \
                                         "config and the network)"
                    self.stopping.set()
                    return
                if decision.action is not Action.RETRY or attempt >= retry.max_attempts:
                    log.error("could not prepare the source", source=source.name,
                              reason=decision.reason)
                    break
                self.stats.retries += 1
                delay = 2.0 ** (attempt - 1) if decision.unreachable else backoff(
                    attempt - 1, retry.initial_backoff_seconds, retry.max_backoff_seconds,
                    decision.retry_after)
                with anyio.move_on_after(delay):
                    await self.stopping.wait()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        with anyio.CancelScope(shield=True):
            if self.session is not None:
                await self.session.close()
            if self.storage is not None:
                await self.storage.close()
            if self.checkpoint is not None:
                empty = self._new_checkpoint and self.checkpoint.is_empty()
                self.checkpoint.close()
                if empty:  # the run never started (bad credentials): leave nothing behind
                    self.checkpoint.remove()

    def reconfigure(self, cfg: Config) -> None:
        """Take a reloaded configuration (what a running process can change)."""
        self.cfg = cfg
        if self.worker is not None:
            self.worker.cfg = cfg
            self.worker.transfer.cfg = cfg
        for source in self.sources.values():
            source.reconfigure(cfg)

    def is_done(self, key: PartitionKey) -> bool:
        assert self.checkpoint is not None
        row = self.checkpoint.get(key)
        return row is not None and row.state == "done"

    async def done_snapshot(self) -> DoneSet:
        """One read of the checkpoint for planning, off the event loop."""
        assert self.checkpoint is not None
        return await self.checkpoint.done_set_off_loop()

    def waiting(self) -> dict[PartitionKey, Waiting]:
        """A copy of the partitions whose export is being built right now (their job was asked
        and answered "being built", and is not finished): cheap, for the status page."""
        out: dict[PartitionKey, Waiting] = {}
        for job, state in list(self.states.items()):
            if state.first_running is not None:
                seen = Waiting(state.first_running, state.running_polls, state.running_reason)
                out.update((key, seen) for key in job.keys)
        return out

    def submit(self, job: Job, delay: float = 0.0) -> bool:
        """Queue a job unless the same one is already queued or running."""
        slot = (job.source, job.slot)
        if slot in self.active:
            return False
        self.active[slot] = job
        self.states.setdefault(job, JobState())
        self.stats.jobs_total += 1
        self.stats.partitions_total += len(job.keys)
        self.idle.clear()
        self.queue.put(job, delay)
        return True

    def _record(self, job: Job, outcome: Outcome) -> None:
        assert self.checkpoint is not None
        state = self.states[job]
        if outcome.kind == "retry":
            log.debug("not ready, will retry", job=str(job), reason=outcome.reason,
                      retry_in_seconds=round(outcome.delay, 1))
            self.queue.put(job, outcome.delay)
            return
        self.stats.jobs_finished += 1
        self.states.pop(job, None)
        self.active.pop((job.source, job.slot), None)
        if outcome.failed_keys:
            self.failed_at[(job.source, job.slot)] = time.monotonic()
        for key in job.keys:
            if key in outcome.failed_keys:
                self.checkpoint.failed(key, outcome.reason, state.polls + state.attempts)
                self.stats.partitions_failed += 1
                if outcome.still_running:
                    log.warning("partition still being built; run again later",
                                partition=str(key), reason=outcome.reason)
                else:
                    log.error("partition failed", partition=str(key), reason=outcome.reason)
                if self.keep_summary:
                    self.summary.failed[key] = outcome.reason
                    if outcome.still_running:
                        self.summary.still_running.append(key)
            elif self.keep_summary and self.is_done(key):
                self.summary.done.append(key)

    async def _work(self) -> None:
        assert self.worker is not None
        while not self.stopping.is_set():
            job = await self.queue.get()
            if self.stopping.is_set():
                self.queue.put(job)
                return
            self.in_flight += 1
            self.quiet.clear()
            try:
                outcome = await self.worker.run(job, self.states.setdefault(job, JobState()))
                self._record(job, outcome)
            except (StopRun, CheckpointError) as exc:
                self.summary.fatal = str(exc)
                self.summary.fatal_is_config = isinstance(exc, StopRun) and exc.config_error
                self.stopping.set()
                self.queue.put(job)
            finally:
                self.in_flight -= 1
                if self.in_flight == 0:
                    self.quiet.set()
                    if len(self.queue) == 0:
                        self.idle.set()

    async def drain(self, grace_seconds: float, forever: bool = False) -> None:
        """Run workers until the queue is empty (or, ``forever``, until stopped). When
        ``stopping`` is set, no new job starts and in-flight ones get ``grace_seconds`` to
        finish before they are cancelled (their parts stay resumable)."""
        if len(self.queue) == 0 and not forever:
            return
        async with anyio.create_task_group() as tg:
            for _ in range(self.cfg.partitions):
                tg.start_soon(self._work)
            waits = [asyncio.ensure_future(self.stopping.wait())]
            if not forever:
                waits.append(asyncio.ensure_future(self.idle.wait()))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            if self.stopping.is_set() and (self.in_flight or len(self.queue)):
                # Work was abandoned, running or still queued: the run did not complete.
                self.summary.interrupted = self.summary.fatal is None
            if self.stopping.is_set() and self.in_flight:
                with anyio.move_on_after(grace_seconds):
                    await self.quiet.wait()
            tg.cancel_scope.cancel()


async def backfill(cfg: Config, first_hour: datetime, last_hour: datetime,
                   clock: Callable[[], datetime], make_sources: SourceFactory,
                   stopping: asyncio.Event | None = None,
                   runner_hook: Callable[[Runner], None] | None = None) -> Summary:
    wait = timedelta(minutes=cfg.backfill_running_wait_minutes)
    async with Runner(cfg, clock, make_sources, stopping=stopping, running_wait=wait) as runner:
        runner.summary.running_wait_minutes = cfg.backfill_running_wait_minutes
        if runner_hook is not None:
            runner_hook(runner)
        if runner.summary.fatal is not None:  # a source's prepare() was refused
            return runner.summary
        now = clock()
        plans = plan_all(runner.sources.values(), first_hour, last_hour, now,
                         await runner.done_snapshot(), cfg.sharding)
        summary = runner.summary
        for name, plan in plans.items():
            summary.not_due += plan.not_due
            summary.expired += plan.expired
            summary.already_done += plan.already_done
            if plan.not_due:
                log.info("skipping periods that are not due yet", source=name,
                         count=len(plan.not_due), first=plan.not_due[0], last=plan.not_due[-1])
            if plan.expired:
                log.warning("skipping periods outside the retention window", source=name,
                            count=len(plan.expired), first=plan.expired[0],
                            last=plan.expired[-1])
            for note in plan.notes:
                log.warning(note, source=name)
            summary.notes += plan.notes
            summary.failed.update(plan.failed)
        jobs = jobs_in_order(plans.values())
        log.info("backfill planned", jobs=len(jobs), shard=str(cfg.sharding),
                 already_done=summary.already_done,
                 first_hour=first_hour.strftime("%Y%m%d%H"),
                 last_hour=last_hour.strftime("%Y%m%d%H"))
        for job in jobs:
            runner.submit(job)
        try:
            await runner.drain(cfg.shutdown_grace_seconds)
        finally:
            stats = runner.stats
            summary.parts = stats.parts_done - stats.parts_recovered
            summary.bytes = stats.bytes_done
            summary.seconds = time.monotonic() - stats.started
        return runner.summary
