"""The vendor's public API host as one server, as https://www.growingio.com is: the raw-data
export 2.0 (``/v2/insights`` and its links) and the statistics exporter (V3 + the v1 lists) on
one base URL, one token, one client id. The statistics control routes are under
``/_sim/reports`` (the raw simulator owns ``/_sim``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from downloader.sim.raw.app import Simulator
from downloader.sim.raw.faults import SimConfig
from downloader.sim.stats.app import StatsSimulator
from downloader.sim.stats.config import StatsSimConfig
from downloader.sim.thread import AppThread, start_app_thread

STATS_CONTROL_PREFIX = "/_sim/reports"


def vendor_app(raw: SimConfig, stats: StatsSimConfig
               ) -> tuple[web.Application, Simulator, StatsSimulator]:
    raw_sim, stats_sim = Simulator(raw), StatsSimulator(stats)
    app = raw_sim.make_app()
    stats_sim.add_routes(app, control_prefix=STATS_CONTROL_PREFIX)
    return app, raw_sim, stats_sim


@dataclass
class RunningVendor:
    url: str
    raw: Simulator
    stats: StatsSimulator
    _server: AppThread

    def stop(self) -> None:
        if self._server.stop():
            self.raw.close()


def start_vendor(raw: SimConfig, stats: StatsSimConfig, host: str = "127.0.0.1",
                 port: int = 0) -> RunningVendor:
    """Both simulators on one loopback port, in a daemon thread; returns once it accepts."""
    app, raw_sim, stats_sim = vendor_app(raw, stats)
    try:
        server = start_app_thread(app, host, port, "gio-vendor-simulator")
    except BaseException:
        raw_sim.close()
        raise
    return RunningVendor(server.url, raw_sim, stats_sim, server)


async def serve_vendor(raw: SimConfig, stats: StatsSimConfig, host: str, port: int, *,
                       on_ready: Callable[[str], None] | None = None) -> None:
    """Run both on the current loop until cancelled (the CLI's ``simulate``)."""
    app, raw_sim, _ = vendor_app(raw, stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound_host, bound_port = runner.addresses[0][:2]
        if on_ready is not None:
            shown = f"[{bound_host}]" if ":" in bound_host else bound_host
            on_ready(f"http://{shown}:{bound_port}")
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        raw_sim.close()
