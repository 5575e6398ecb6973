"""``gio-downloader demo``: the whole tool on a laptop, with no credentials.

Starts the bundled simulator on a free loopback port, writes a config for it, backfills a few
hours of three data types into ``./gio-demo-data`` and shows what landed where.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any, TextIO

import yaml

from downloader.config.model import Config
from downloader.core.clock import Clock
from downloader.core.partitions import HOUR, floor_hour
from downloader.core.stats import Stats

DEMO_TYPES = ["visit", "page", "custom_event"]
DEMO_AI = "demo0001"
DEMO_TOKEN = "demo-token"  # the simulator's, not a real credential


def demo_config(out: Path, url: str) -> dict[str, object]:
    return {
        "api": {"base_url": url, "token": DEMO_TOKEN, "rate_limit_per_second": 2},
        "projects": [{"ai": DEMO_AI, "data_types": DEMO_TYPES, "export_types": ["hour"]}],
        "storage": {"url": (out / "raw").as_uri()},
        "checkpoint": str(out / "checkpoint.db"),
        "concurrency": {"downloads": 8, "partitions": 4},
        "retry": {"initial_backoff_seconds": 1, "max_backoff_seconds": 10},
    }


class CheckpointStatus:
    """What the health listener serves after the demo: the checkpoint, read-only (nothing is
    downloading any more, so there are no live counters and the heartbeat is always fresh)."""

    def __init__(self, cfg: Config, clock: Clock) -> None:
        self.cfg = cfg
        self.clock = clock

    def stats(self) -> Stats:
        return Stats()

    def status_report(self) -> dict[str, Any]:
        from downloader.engine.checkpoint import Checkpoint
        from downloader.service.sources import planning_sources
        from downloader.service.status import build_status

        with Checkpoint(self.cfg.checkpoint, readonly=True) as cp:
            return build_status(self.cfg, cp, self.clock.now(), planning_sources(self.cfg))

    async def readiness(self) -> list[tuple[str, bool, str]]:
        return [("demo", True, "the demo is over; nothing is downloading")]

    def heartbeat_age(self) -> float:
        return 0.0


async def serve_status(cfg: Config, clock: Clock, seconds: float, stream: TextIO) -> None:
    """The status page of the demo's checkpoint on a free loopback port, for ``seconds``."""
    from downloader.service.health import HealthServer

    server = HealthServer("127.0.0.1:0", CheckpointStatus(cfg, clock))
    await server.start()
    try:
        print(f"\ndemo: the status page is at {server.url}/ (its data: {server.url}/status.json)"
              f"\ndemo: serving it for {seconds:g} s; Ctrl-C stops it", file=stream, flush=True)
        await asyncio.sleep(seconds)
    finally:
        await server.stop()


def run_demo(out_dir: str, hours: int, clock: Clock, stream: TextIO = sys.stderr,
             serve_seconds: float | None = None) -> int:
    from downloader.config.load import load_config
    from downloader.service.logs import setup_logging
    from downloader.service.oneshot import backfill_and_report, run_async
    from downloader.sim.raw.app import SimConfig, start_simulator

    out = Path(out_dir).absolute()
    out.mkdir(parents=True, exist_ok=True)
    print("demo: starting the bundled export-API simulator on loopback ...", file=stream)
    running = start_simulator(SimConfig(token=DEMO_TOKEN, part_size=512 * 1024,
                                        parts_per_type=2, running_polls=1,
                                        cache_dir=out / ".simulator-cache"))
    try:
        config_file = out / "config.yaml"
        config_file.write_text(yaml.safe_dump(demo_config(out, running.url), sort_keys=False))
        cfg = load_config(config_file)
        # The newest hours that are surely due (the hours around midnight are 60 min late).
        last = floor_hour(clock.now()) - 2 * HOUR
        first = last - (hours - 1) * HOUR
        print(f"demo: simulator at {running.url}; config written to {config_file}", file=stream)
        print(f"demo: backfilling {hours} hours ({first:%Y-%m-%d %H}:00 to "
              f"{last + HOUR:%H}:00 Beijing) of {', '.join(DEMO_TYPES)} ...", file=stream)
        setup_logging("console" if stream.isatty() else "auto", "warning", cfg.secrets)
        code = run_async(backfill_and_report(cfg, first, last, clock))
        files = sorted((out / "raw").rglob("part-*.csv.gz"))
        total = sum(f.stat().st_size for f in files)
        print(f"\ndemo: {len(files)} parts, {total / 1048576:.1f} MiB under {out / 'raw'}",
              file=stream)
        for f in files[:3]:
            print(f"  {f.relative_to(out)}", file=stream)
        if len(files) > 3:
            print(f"  ... and {len(files) - 3} more, each folder with its _SUCCESS manifest",
                  file=stream)
        from downloader.engine.checkpoint import Checkpoint
        from downloader.service.sources import planning_sources
        from downloader.service.status import build_status, format_status

        with Checkpoint(cfg.checkpoint, readonly=True) as cp:
            report = build_status(cfg, cp, clock.now(), planning_sources(cfg))
            print("\n" + format_status(report), file=stream)
        sample = next((f for f in files if "data_type=page" in str(f)), None)
        print("\nLook at the data:", file=stream)
        if sample is not None:
            print(f"  zcat '{sample}' | head -3", file=stream)
        print(f"  duckdb -c \"SELECT count(*) FROM read_csv('{out}/raw/ai=*/data_type=page/"
              f"export_type=hour/date=*/hour=*/*.csv.gz', header=true, escape='\\\\', "
              f"hive_partitioning=true)\"", file=stream)
        print(f"  gio-downloader status -c {config_file}", file=stream)
        print(f"  gio-downloader status -c {config_file} --grid --item '{DEMO_AI}/*'",
              file=stream)
    finally:
        running.stop()
        print("demo: simulator stopped", file=stream)
    if serve_seconds is not None:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_status(cfg, clock, serve_seconds, stream))
        print("demo: status page stopped", file=stream)
    return code


