"""Running the statistics simulator on loopback in a daemon thread (tests, the demo)."""

from __future__ import annotations

from dataclasses import dataclass

from downloader.sim.stats.app import StatsSimulator
from downloader.sim.stats.config import StatsSimConfig
from downloader.sim.thread import AppThread, start_app_thread


@dataclass
class RunningStatsSimulator:
    url: str
    sim: StatsSimulator
    _server: AppThread

    def stop(self) -> None:
        """Stop the server, its thread and its loop."""
        self._server.stop()


def start_stats_simulator(
    config: StatsSimConfig, host: str = "127.0.0.1", port: int = 0
) -> RunningStatsSimulator:
    """Run a statistics simulator in a daemon thread on its own loop; return once it accepts."""
    sim = StatsSimulator(config)
    server = start_app_thread(sim.make_app(), host, port, "gio-stats-simulator")
    return RunningStatsSimulator(server.url, sim, server)
