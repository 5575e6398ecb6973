"""The configured sources, built for the engine: the one place that knows every source."""

from __future__ import annotations

from downloader.config.model import Config
from downloader.engine.runner import Wiring
from downloader.engine.source import Source
from downloader.sources.cdp.client import CdpClient
from downloader.sources.cdp.source import CdpSource
from downloader.sources.raw.client import InsightsClient
from downloader.sources.raw.source import RawSource
from downloader.sources.stats.client import StatsClient
from downloader.sources.stats.source import StatsSource


def build_sources(wiring: Wiring) -> list[Source]:
    cfg = wiring.cfg
    sources: list[Source] = []
    if cfg.projects:
        assert cfg.api is not None  # the config requires api: with projects:
        limiter = wiring.budgets.for_host(cfg.api.base_url)
        client = InsightsClient(wiring.session, cfg.api, limiter,
                                wiring.stats.api_caller(RawSource.name))
        sources.append(RawSource(cfg, client))
    if cfg.reports:
        assert cfg.api is not None  # the config requires api: with reports:
        limiter = wiring.budgets.for_host(cfg.api.base_url)  # shared with the raw exports
        stats_client = StatsClient(wiring.session, cfg.api, limiter,
                                   wiring.stats.api_caller(StatsSource.name))
        sources.append(StatsSource(cfg, stats_client))
    if cfg.cdp is not None and cfg.cdp.exports:
        # The platform is its own host with its own 2 calls/s (exports-spec §0).
        limiter = wiring.budgets.for_host(cfg.cdp.base_url)
        sources.append(CdpSource(cfg, CdpClient(wiring.session, cfg.cdp, limiter,
                                                wiring.stats.api_call)))
    return sources


def planning_sources(cfg: Config) -> list[Source]:
    """The configured sources without clients: for planning and status, which call no API."""
    sources: list[Source] = []
    if cfg.projects:
        sources.append(RawSource(cfg, None))
    if cfg.reports:
        sources.append(StatsSource(cfg, None))
    if cfg.cdp is not None and cfg.cdp.exports:
        sources.append(CdpSource(cfg, None))
    return sources
