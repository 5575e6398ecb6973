"""Progress a person can follow: a live line on a terminal, periodic log events elsewhere."""

from __future__ import annotations

import asyncio
import sys
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


def progress_text(stats: Stats) -> str:
    done = stats.bytes_done + stats.bytes_resumed - stats.bytes_discarded
    return (f"partitions {stats.partitions_done} done, {stats.partitions_failed} failed | "
            f"parts {stats.parts_done}/{stats.parts_total} | "
            f"{human_bytes(done)} of {human_bytes(stats.bytes_expected)} | "
            f"{human_bytes(stats.rate())}/s | ETA {human_duration(stats.eta_seconds())}")


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
    if tty:
        PROGRESS_LINE.enable(out)
    try:
        while True:
            await asyncio.sleep(interval_tty if tty else interval_log)
            if tty:
                PROGRESS_LINE.show(progress_text(stats))
            else:
                log.info("progress", **stats.snapshot())
    finally:
        if tty:
            PROGRESS_LINE.disable()
