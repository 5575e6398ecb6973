"""Progress a person can follow: a live line on a terminal, periodic log events elsewhere."""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import TextIO

import structlog

from downloader.core.stats import Stats

log = structlog.get_logger("gio.progress")


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--"
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class RateMeter:
    """Bytes per second over the last ``window`` seconds (not since start: a run that waited
    for exports must not look slow once it downloads), and an ETA once that is steady."""

    def __init__(self, window: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque()

    def sample(self, done: int) -> None:
        now = self._clock()
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()

    def rate(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        if t1 - t0 < min(3.0, self.window):  # too early to tell
            return None
        return max(0.0, (b1 - b0) / (t1 - t0))


def progress_text(stats: Stats, meter: RateMeter | None = None, width: int = 80) -> str:
    """The live line: the fields that fit ``width``, most important first. Totals are what is
    known so far (partitions at once; bytes from each part's Content-Length as it starts), and
    done is never shown above total."""
    done = stats.bytes_done + stats.bytes_resumed - stats.bytes_discarded
    total = max(stats.bytes_expected, done)
    parts_total = max(stats.parts_total, stats.parts_done)
    rate = meter.rate() if meter is not None else None
    eta: float | None = None
    if rate and stats.bytes_expected > done and stats.parts_done < stats.parts_total:
        eta = (stats.bytes_expected - done) / rate
    fields = [
        f"{stats.partitions_done}/{max(stats.partitions_total, stats.partitions_done)} "
        "partitions",
        f"{human_bytes(done)}/{human_bytes(total)}",
        f"{human_bytes(rate)}/s" if rate is not None else "",
        f"ETA {human_duration(eta)}" if eta is not None else "",
        f"{stats.partitions_failed} failed" if stats.partitions_failed else "",
        f"parts {stats.parts_done}/{parts_total}",
    ]
    line = ""
    for field in filter(None, fields):
        candidate = f"{line} | {field}" if line else field
        if len(candidate) > width - 1:
            break
        line = candidate
    return line


class ProgressLine:
    """A single terminal line redrawn in place; logging clears it before printing a line."""

    def __init__(self) -> None:
        self.stream: TextIO | None = None
        self.text = ""

    def enable(self, stream: TextIO) -> None:
        self.stream = stream

    def disable(self) -> None:
        self.clear()
        self.stream = None
        self.text = ""

    def show(self, text: str) -> None:
        self.text = text
        self.redraw()

    def clear(self) -> None:
        if self.stream is not None and self.text:
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def redraw(self) -> None:
        if self.stream is not None and self.text:
            self.stream.write("\r\x1b[K" + self.text)
            self.stream.flush()


PROGRESS_LINE = ProgressLine()


async def report_progress(stats: Stats, interval_tty: float = 0.5,
                          interval_log: float = 30.0, stream: TextIO | None = None) -> None:
    """Runs until cancelled."""
    out = stream or sys.stderr
    tty = hasattr(out, "isatty") and out.isatty()
    meter = RateMeter()
    if tty:
        PROGRESS_LINE.enable(out)
    try:
        while True:
            await asyncio.sleep(interval_tty if tty else interval_log)
            meter.sample(stats.bytes_done)
            if tty:
                width = shutil.get_terminal_size((80, 24)).columns
                PROGRESS_LINE.show(progress_text(stats, meter, width))
            else:
                log.info("progress", **stats.snapshot())
    finally:
        if tty:
            PROGRESS_LINE.disable()
