"""The one-shot backfill as a service: signals, the progress reporter, the closing summary,
and the event loop it runs on."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Coroutine
from datetime import datetime
from typing import Any, TypeVar

import structlog

from downloader.config.model import Config
from downloader.core.clock import Clock
from downloader.engine.runner import Summary, backfill
from downloader.service.progress import human_bytes, human_duration, report_progress
from downloader.service.sources import build_sources

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
T = TypeVar("T")
log = structlog.get_logger("gio.cli")


def _install_signals(stopping: asyncio.Event, main: asyncio.Task[Any]) -> list[int]:
    """First SIGINT/SIGTERM: stop taking work, let in-flight parts finish. Second: at once."""
    loop = asyncio.get_running_loop()
    hits = {"n": 0}

    def on_signal(signame: str) -> None:
        hits["n"] += 1
        if hits["n"] == 1:
            log.warning("stopping: finishing in-flight work (signal again to stop at once)",
                        signal=signame)
            stopping.set()
        else:
            log.warning("stopping now; partial parts stay resumable", signal=signame)
            main.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig.name)
    return [signal.SIGINT, signal.SIGTERM]


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def summary_line(summary: Summary) -> str:
    """``backfill: 150 partitions, 304 parts, 50.6 MiB in 27 s; 6 already done; 0 failed;
    12 not due yet; 4 outside retention``."""
    line = (f"backfill: {plural(len(summary.done), 'partition')}, "
            f"{plural(summary.parts, 'part')}, {human_bytes(summary.bytes)} in "
            f"{human_duration(summary.seconds)}; {summary.already_done} already done; "
            f"{len(summary.failed)} failed")
    if summary.not_due:
        line += f"; {len(summary.not_due)} not due yet"
    if summary.expired:
        line += f"; {len(summary.expired)} outside retention"
    return line


def _print_summary(summary: Summary) -> None:
    failed = summary.failed
    print(summary_line(summary), file=sys.stderr)
    running = set(summary.still_running)
    for key, reason in sorted(failed.items(), key=lambda kv: str(kv[0])):
        if key not in running:
            print(f"  failed {key}: {reason}", file=sys.stderr)
    if running:
        names = ", ".join(sorted(map(str, running)))
        print(f"{len(running)} partition{'s' if len(running) != 1 else ''} still being built "
              f"after {summary.running_wait_minutes:g} min: {names}; run again later",
              file=sys.stderr)
    if summary.fatal:
        print(f"gio-downloader: stopped: {summary.fatal}", file=sys.stderr)
    elif summary.interrupted:
        print("gio-downloader: interrupted; run the same command again to resume",
              file=sys.stderr)


async def backfill_and_report(cfg: Config, first: datetime, last: datetime,
                              clock: Clock) -> int:
    """Run a backfill with signals, a progress reporter and the closing summary."""
    stopping = asyncio.Event()
    main = asyncio.current_task()
    assert main is not None
    signals = _install_signals(stopping, main)
    progress_holder: list[asyncio.Task[None]] = []

    def hook(runner: Any) -> None:
        progress_holder.append(asyncio.create_task(report_progress(runner.stats)))

    try:
        summary = await backfill(cfg, first, last, clock.now, build_sources, stopping,
                                 runner_hook=hook)
    except asyncio.CancelledError:
        summary = Summary(interrupted=True)
    finally:
        for task in progress_holder:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sig in signals:
            asyncio.get_running_loop().remove_signal_handler(sig)
    _print_summary(summary)
    if summary.fatal:
        return EXIT_USAGE if summary.fatal_is_config else EXIT_FAILED
    if summary.failed or summary.interrupted:
        return EXIT_FAILED
    return EXIT_OK


# glibc gives each thread that allocates its own malloc arena (up to 8 per core); with a
# download per thread pool worker, freed 1 MiB blocks then stay spread over many arenas and the
# peak RSS grows by tens of MB. Two arenas keep it flat at no measurable cost.
_M_ARENA_MAX = -8
MALLOC_ARENAS = 2


def limit_malloc_arenas() -> None:
    if "MALLOC_ARENA_MAX" in os.environ:  # the user chose
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_ARENA_MAX, MALLOC_ARENAS)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop where it is installed (the downloader's hot path is the event loop)."""
    limit_malloc_arenas()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
