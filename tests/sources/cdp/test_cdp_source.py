"""The CDP source's ask/download_headers against the simulator on loopback (no engine)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from downloader.config.model import CdpConfig, CdpExport, Config, StorageConfig
from downloader.core.partitions import Lags
from downloader.core.policy import Action
from downloader.core.ratelimit import RateLimiter
from downloader.engine.source import Job
from downloader.engine.transfer import StopRun
from downloader.sim.cdp.app import CdpSimConfig, start_cdp_simulator
from downloader.sources.cdp.client import CdpClient
from downloader.sources.cdp.keys import cdp_key
from downloader.sources.cdp.source import CdpSource

KEY = "unit-key-1"
EXPORT = CdpExport("tag_users", "tag_vip", tag_key="tag_vip")
PKEY = cdp_key("tag_users", "tag_vip", datetime(2026, 3, 5).date())
JOB = Job("cdp", "slot", (PKEY,), datetime(2026, 3, 5), datetime(2026, 3, 5))


def config(url: str, api_key: str = KEY) -> Config:
    return Config(path=Path("x.yaml"), api=None, projects=(), lags=Lags(),
                  storage=StorageConfig("file:///tmp/x"), checkpoint=Path("/tmp/x.db"),
                  cdp=CdpConfig(url, api_key, None, (EXPORT,)))


@pytest.fixture
async def setup(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Any, CdpSource]]:
    overrides = getattr(request, "param", {})
    running = start_cdp_simulator(CdpSimConfig(**{"api_key": KEY, **overrides}))
    session = aiohttp.ClientSession(auto_decompress=False)
    cfg = config(running.url)
    assert cfg.cdp is not None
    source = CdpSource(cfg, CdpClient(session, cfg.cdp, RateLimiter(50)))
    try:
        yield running, source
    finally:
        await session.close()
        running.stop()


@pytest.mark.parametrize("setup", [{"polls_to_finish": 2, "special_names": True}],
                         indirect=True)
async def test_submit_poll_finish_with_encoded_urls(setup: Any) -> None:
    running, source = setup
    first = await source.ask(JOB, [PKEY], None)
    assert first.decision.action is Action.POLL and first.job_ref
    job_id = first.job_ref
    second = await source.ask(JOB, [PKEY], job_id)
    assert second.decision.action is Action.POLL and second.job_ref == job_id
    done = await source.ask(JOB, [PKEY], job_id)
    assert done.decision.action is Action.DOWNLOAD and done.job_ref == job_id
    (spec,) = done.files[PKEY]
    assert isinstance(spec.url, URL) and spec.auth and not spec.ranged
    (expected,) = running.sim.expected_files(job_id)
    assert spec.url.query["file"] == expected.uri  # decodes, once, to the raw uri
    assert spec.extra == {"original_name": expected.uri.rsplit("/", 1)[-1]}
    headers = await source.download_headers(False)
    async with aiohttp.ClientSession() as s, s.get(spec.url, headers=headers) as resp:
        assert resp.status == 200 and await resp.read() == expected.data
    assert running.sim.stats.client_faults() == []


async def test_unknown_recorded_job_submits_a_new_one(setup: Any) -> None:
    _, source = setup
    answer = await source.ask(JOB, [PKEY], "VGFnVXNlckV4cG9ydEpvYkR0bzpub3Bl")
    assert answer.decision.action is Action.RESUBMIT and answer.job_ref is None


async def test_download_headers_refresh_once_for_concurrent_refusals(setup: Any) -> None:
    running, source = setup
    first = await source.download_headers(False)
    running.sim.expire_tokens()

    barrier = asyncio.Barrier(5)

    async def refused() -> Any:
        await source.download_headers(False)  # every task holds the old token...
        await barrier.wait()
        return await source.download_headers(True)  # ... and is refused with it

    got = await asyncio.gather(*(refused() for _ in range(5)))
    assert all(h == got[0] for h in got) and got[0] != first
    assert running.sim.stats.count("ok", "/accounts/oauth/access_token") == 2


async def test_wrong_api_key_stops_with_exit_1(setup: Any) -> None:
    running, _ = setup
    async with aiohttp.ClientSession() as session:
        cfg = config(running.url, "not-the-key")
        assert cfg.cdp is not None
        source = CdpSource(cfg, CdpClient(session, cfg.cdp, RateLimiter(50)))
        with pytest.raises(StopRun) as caught:
            await source.ask(JOB, [PKEY], None)
        assert not caught.value.config_error and "cdp.api_key" in str(caught.value)
        assert "not-the-key" not in str(caught.value)
        with pytest.raises(StopRun):
            await source.download_headers(False)
