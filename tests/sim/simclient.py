"""Shared pieces of the simulator tests: simulators frozen at NOW, a raw aiohttp client.

Test modules bind the fixtures to module names (`start, sim, http = simclient.start, ...`)
so that pytest finds them there.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from downloader.sim.raw.app import RunningSimulator, start_simulator
from downloader.sim.raw.faults import SimConfig
from downloader.sim.raw.schema import BEIJING

NOW = datetime(2024, 6, 10, 12, 0, tzinfo=BEIJING)
AI = "0a1b2c3d4e5f6a7b"
HEADERS = {"Authorization": "Token sim-token", "X-Client-Id": "public-key"}
SMALL_PART = 20 * 1024  # small parts keep the tests fast; the pool members shrink with them
HOUR = "2024061008"  # ready at 09:30 Beijing, well before NOW


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., RunningSimulator]]:
    """Start simulators (frozen at NOW, no RUNNING polls, small parts); stop them afterwards."""
    started: list[RunningSimulator] = []

    def _start(**overrides: Any) -> RunningSimulator:
        options: dict[str, Any] = {
            "part_size": SMALL_PART,
            "running_polls": 0,
            "cache_dir": tmp_path / f"cache{len(started)}",
        }
        running = start_simulator(SimConfig(**(options | overrides)))
        running.sim.set_now(NOW)
        started.append(running)
        return running

    yield _start
    for running in started:
        running.stop()


@pytest.fixture
def sim(start: Callable[..., RunningSimulator]) -> RunningSimulator:
    return start()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


async def insights(
    http: aiohttp.ClientSession,
    sim: RunningSimulator,
    path: str,
    expire: str | int = 5,
    headers: dict[str, str] = HEADERS,
) -> tuple[int, Any, dict[str, str]]:
    url = f"{sim.url}/v2/insights/{path}.json?expire={expire}"
    async with http.get(url, headers=headers) as resp:
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, body, dict(resp.headers)


async def fetch(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, CIMultiDict[str], bytes]:
    """Status, headers (case-insensitive, as HTTP's are) and body of one GET."""
    async with http.get(url, headers=headers or {}) as resp:
        return resp.status, CIMultiDict(resp.headers), await resp.read()


async def links_for(
    http: aiohttp.ClientSession, sim: RunningSimulator, data_type: str = "page", expire: int = 5
) -> list[str]:
    status, body, _ = await insights(http, sim, f"hour/{data_type}/{AI}/{HOUR}00", expire)
    assert (status, body["status"]) == (200, "FINISHED"), body
    links: list[str] = body["downloadLinks"]
    return links


def part_bytes(sim: RunningSimulator, index: int = 0, data_type: str = "page") -> bytes:
    return sim.sim.expected_parts(AI, "hour", data_type, HOUR)[index].path.read_bytes()


def read_rows(data: bytes) -> list[list[str]]:
    """The rows of a gzip CSV part, read as RFC 4180 (Python's default dialect)."""
    text = gzip.decompress(data).decode("utf-8")
    return list(csv.reader(io.StringIO(text, newline="")))


class Ticker:
    """A monotonic clock the test moves by hand (SimConfig.monotonic)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds
