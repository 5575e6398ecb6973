"""``gio-downloader run``: catch up, then download each partition as it becomes due, forever.

Signals: SIGTERM/SIGINT stop taking new work and give in-flight parts the grace period
(a second signal stops at once; partial parts stay resumable); SIGHUP reloads the config.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import time
from datetime import timedelta
from typing import Any

import anyio
import structlog

from downloader.config.load import load_config
from downloader.config.model import Config, ConfigError
from downloader.core.clock import Clock, sleep_until
from downloader.core.partitions import window
from downloader.core.stats import Stats
from downloader.engine.runner import Runner
from downloader.engine.scheduler import jobs_in_order, plan_all
from downloader.service.logs import REDACTOR, set_level
from downloader.service.progress import progress_text, report_progress
from downloader.service.sdnotify import Notifier, watchdog_loop
from downloader.service.sources import build_sources
from downloader.service.status import build_status

log = structlog.get_logger("gio.daemon")

# Look at the plan again at least this often (real seconds), even when nothing is due: failed
# partitions come back after their cool-down, and a stepped system clock is noticed.
RESCAN_SECONDS = 60.0
HEARTBEAT_SECONDS = 1.0
# /healthz and the systemd watchdog call the daemon wedged after this long without a heartbeat.
STALE_HEARTBEAT_SECONDS = 30.0
# /readyz checks the storage at most this often (an S3 check writes and deletes a probe object).
STORAGE_CHECK_SECONDS = 60.0
# Settings a reload cannot change in a running process: the Config field, and its YAML key.
_RESTART_ONLY = {"api": "api", "storage": "storage", "checkpoint": "checkpoint",
                 "downloads": "concurrency.downloads", "partitions": "concurrency.partitions",
                 "health_listen": "health.listen", "log_format": "log.format",
                 "shutdown_grace_seconds": "shutdown_grace_seconds", "reports": "reports",
                 "cdp": "cdp", "read_timeout_seconds": "download.read_timeout_seconds",
                 "sharding": "sharding"}


class Daemon:
    def __init__(self, cfg: Config, clock: Clock, notifier: Notifier | None = None) -> None:
        self.cfg = cfg
        self.clock = clock
        self.notifier = notifier or Notifier()
        self.runner = Runner(cfg, clock.now, build_sources, keep_summary=False)
        self.wake = asyncio.Event()
        self.last_beat = time.monotonic()
        self._signals = 0
        self._storage_check: tuple[float, bool, str] | None = None

    # --- HealthSource --------------------------------------------------------------------------

    def stats(self) -> Stats:
        return self.runner.stats

    def status_report(self) -> dict[str, Any]:
        assert self.runner.checkpoint is not None
        return build_status(self.cfg, self.runner.checkpoint, self.clock.now(),
                            list(self.runner.sources.values()), self.runner.waiting())

    def heartbeat_age(self) -> float:
        return time.monotonic() - self.last_beat

    async def readiness(self) -> list[tuple[str, bool, str]]:
        """Config, storage (checked at most every STORAGE_CHECK_SECONDS: an S3 check writes a
        probe object) and the APIs as the downloads see them: no extra call, no probe."""
        checks: list[tuple[str, bool, str]] = [("config", True, f"loaded from {self.cfg.path}")]
        now = time.monotonic()
        if self._storage_check is None or now - self._storage_check[0] >= STORAGE_CHECK_SECONDS:
            try:
                assert self.runner.storage is not None
                await self.runner.storage.check()
                self._storage_check = (now, True, "writable")
            except Exception as exc:  # any failure means not ready; the detail says which
                self._storage_check = (now, False, str(exc))
        checks.append(("storage", *self._storage_check[1:]))
        problem = self.runner.stats.api_problem
        checks.append(("api", problem is None, problem or "answering (or not asked yet)"))
        return checks

    # --- loops ---------------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        while True:
            self.last_beat = time.monotonic()
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def scan(self) -> int:
        """Queue every due partition in the retention window that is not done (oldest first),
        skipping jobs already queued and failed ones still cooling down."""
        now = self.clock.now()
        first, last = window(now, self.cfg.lags)
        plans = plan_all(self.runner.sources.values(), first, last, now,
                         await self.runner.done_snapshot(), self.cfg.sharding)
        jobs = jobs_in_order(plans.values())
        cooldown = 2 * self.cfg.retry.max_backoff_seconds
        mono = time.monotonic()
        # Forget failures whose cool-down is over, so the map stays small in a long-lived daemon.
        cooling = {k: t for k, t in self.runner.failed_at.items() if mono - t < cooldown}
        self.runner.failed_at = cooling
        queued = 0
        for job in jobs:
            if (job.source, job.slot) in cooling:
                continue
            queued += self.runner.submit(job)
        if queued:
            log.info("partitions due", jobs=queued, oldest=str(jobs[0]), newest=str(jobs[-1]))
        return queued

    def next_wake(self) -> Any:
        now = self.clock.now()
        due = [d for s in self.runner.sources.values() if (d := s.next_due(now)) is not None]
        return min(due) if due else now + timedelta(hours=1)

    async def _schedule(self) -> None:
        while not self.runner.stopping.is_set():
            await self.scan()
            self.wake.clear()
            moment = self.next_wake()
            log.debug("sleeping until the next partition is due", until=moment.isoformat())
            await sleep_until(self.clock, moment, self.wake, RESCAN_SECONDS)

    async def _status_to_systemd(self) -> None:
        while True:
            await asyncio.sleep(10)
            self.notifier.status(progress_text(self.runner.stats))

    # --- signals -------------------------------------------------------------------------------

    def on_stop_signal(self, signame: str, main: asyncio.Task[Any]) -> None:
        self._signals += 1
        if self._signals == 1:
            log.warning("stopping: finishing in-flight work", signal=signame,
                        grace_seconds=self.cfg.shutdown_grace_seconds)
            self.notifier.stopping()
            self.runner.stopping.set()
        else:
            log.warning("stopping now; partial parts stay resumable", signal=signame)
            main.cancel()

    def reload(self) -> None:
        self.notifier.reloading()
        try:
            new = load_config(self.cfg.path)
        except ConfigError as exc:
            log.error("config reload failed; keeping the running config", error=str(exc))
            self.notifier.ready()
            return
        ignored = [key for field, key in _RESTART_ONLY.items()
                   if getattr(new, field) != getattr(self.cfg, field)]
        merged = dataclasses.replace(
            self.cfg, projects=new.projects, lags=new.lags, retry=new.retry, verify=new.verify,
            log_level=new.log_level, report_lag_minutes=new.report_lag_minutes,
            running_poll_max_seconds=new.running_poll_max_seconds,
            backfill_running_wait_minutes=new.backfill_running_wait_minutes)
        if new.log_level != self.cfg.log_level:
            set_level(new.log_level)
        REDACTOR.set_secrets((*self.cfg.secrets, *new.secrets))
        self.cfg = merged
        self.runner.reconfigure(merged)
        log.info("config reloaded", projects=[p.ai for p in merged.projects],
                 restart_needed_for=ignored or None)
        self.wake.set()
        self.notifier.ready()

    # --- main ----------------------------------------------------------------------------------

    async def run(self) -> int:
        from downloader.service.health import HealthServer

        main = asyncio.current_task()
        assert main is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.on_stop_signal, sig.name, main)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        health: HealthServer | None = None
        try:
            async with self.runner:
                if self.cfg.health_listen:
                    health = HealthServer(self.cfg.health_listen, self,
                                          stale_after=STALE_HEARTBEAT_SECONDS)
                    await health.start()
                    log.info("health listener", url=health.url)
                log.info("daemon started", projects=[p.ai for p in self.cfg.projects],
                         shard=str(self.cfg.sharding),
                         checkpoint=str(self.cfg.checkpoint))
                self.notifier.ready("catching up")
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._heartbeat)
                    tg.start_soon(self._schedule)
                    tg.start_soon(report_progress, self.runner.stats, 0.5, 60.0)
                    tg.start_soon(self._status_to_systemd)
                    tg.start_soon(watchdog_loop, self.notifier,
                                  lambda: self.heartbeat_age() < STALE_HEARTBEAT_SECONDS)
                    await self.runner.drain(self.cfg.shutdown_grace_seconds, forever=True)
                    tg.cancel_scope.cancel()
        except asyncio.CancelledError:
            if self._signals < 2:
                raise
            log.warning("stopped at once")
        finally:
            if health is not None:
                with anyio.CancelScope(shield=True):
                    await health.stop()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        summary = self.runner.summary
        if summary.fatal:
            log.error("stopped", reason=summary.fatal)
            return 2 if summary.fatal_is_config else 1
        log.info("stopped cleanly")
        return 0


