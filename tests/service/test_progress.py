"""The progress line (downloader/service/progress.py): it knows the totals it can know, never
shows done above total, shows an ETA only once the rate is steady, and fits the terminal."""

from __future__ import annotations

import pytest

from downloader.core.stats import Stats
from downloader.service.progress import RateMeter, progress_text

MiB = 1024 * 1024


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_partitions_are_known_before_any_byte() -> None:
    stats = Stats()
    stats.partitions_total = 21
    assert progress_text(stats).startswith("0/21 partitions")


def test_done_never_exceeds_total() -> None:
    stats = Stats()
    stats.bytes_done, stats.bytes_expected = 6 * MiB, 2 * MiB  # a part finished before sized
    stats.parts_done, stats.parts_total = 3, 1
    text = progress_text(stats)
    assert "6.0 MiB/6.0 MiB" in text and "parts 3/3" in text


def test_no_eta_until_the_rate_is_steady_then_a_right_one() -> None:
    clock = Clock()
    meter = RateMeter(window=10, clock=clock)
    stats = Stats()
    stats.bytes_expected, stats.parts_total = 100 * MiB, 10
    meter.sample(0)
    clock.t = 1
    stats.bytes_done = 1 * MiB
    meter.sample(stats.bytes_done)
    assert "ETA" not in progress_text(stats, meter)  # one second says nothing yet
    for second in range(2, 11):
        clock.t = second
        stats.bytes_done = second * MiB
        meter.sample(stats.bytes_done)
    text = progress_text(stats, meter, width=200)
    assert "1.0 MiB/s" in text and "ETA 1m30s" in text  # 90 MiB left at 1 MiB/s


def test_rate_is_of_the_last_seconds_not_since_start() -> None:
    clock = Clock()
    meter = RateMeter(window=10, clock=clock)
    meter.sample(0)
    clock.t = 600  # ten minutes waiting for exports, nothing downloaded
    meter.sample(0)
    for second in range(601, 612):
        clock.t = second
        meter.sample((second - 600) * 4 * MiB)
    rate = meter.rate()
    assert rate is not None and rate == pytest.approx(4 * MiB, rel=0.01)


@pytest.mark.parametrize("width", [40, 60, 80, 120])
def test_fits_the_terminal(width: int) -> None:
    stats = Stats()
    stats.partitions_total, stats.partitions_done, stats.partitions_failed = 1080, 517, 3
    stats.bytes_expected, stats.bytes_done = 73 * 1024 * MiB, 35 * 1024 * MiB
    stats.parts_total, stats.parts_done = 2160, 1034
    text = progress_text(stats, width=width)
    assert 0 < len(text) < width
    assert text.startswith("517/1080 partitions")
