"""``gio-downloader demo``: the whole tool on a laptop, with no credentials.

Starts the bundled simulators on free loopback ports (the vendor's API host: raw exports and
statistics; a CDP platform), writes a config for them, and backfills into ``./gio-demo-data``:
a few hours of three raw data types, today's user list of a segment, today's CDP export of it,
and then yesterday's charts of a dashboard. Results (what landed where, the status, the next
commands) go to stdout; what it is doing goes to stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import yaml

from downloader.config.model import Config
from downloader.core.clock import Clock
from downloader.core.partitions import DAY, HOUR, floor_day, floor_hour
from downloader.core.stats import Stats

DEMO_TYPES = ["visit", "page", "custom_event"]
DEMO_AI = "demo0001"
DEMO_UID = "demoPj01"  # a statistics project: 8 letters or digits
DEMO_SEGMENT = "demoSg01"
# The simulators' own credentials, not real ones.
DEMO_TOKEN = "demo-token"
DEMO_CLIENT_ID = "demo-client"
DEMO_CDP_KEY = "demo-cdp-key"


def demo_config(out: Path, url: str, cdp_url: str, reports_only: bool = False) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "api": {"base_url": url, "token": DEMO_TOKEN, "client_id": DEMO_CLIENT_ID,
                "rate_limit_per_second": 2},
        "projects": [{"ai": DEMO_AI, "data_types": DEMO_TYPES, "export_types": ["hour"]}],
        "reports": [{"project_uid": DEMO_UID, "segments": [DEMO_SEGMENT]}],
        "cdp": {"base_url": cdp_url, "api_key": DEMO_CDP_KEY, "exports": [
            {"segment_users": {"project_id": DEMO_UID, "segment_id": DEMO_SEGMENT}}]},
        "storage": {"url": (out / "lake").as_uri()},
        "checkpoint": str(out / "checkpoint.db"),
        "concurrency": {"downloads": 8, "partitions": 4},
        # The simulators' days are complete at midnight (the vendor's, at 06:00).
        "schedule": {"report_lag_minutes": 0, "running_poll_max_seconds": 2},
        "retry": {"initial_backoff_seconds": 1, "max_backoff_seconds": 10},
    }
    if reports_only:  # yesterday's charts of the project's dashboards
        cfg = {k: v for k, v in cfg.items() if k not in ("projects", "cdp")}
        cfg["reports"] = [{"project_uid": DEMO_UID, "dashboards": "all"}]
    return cfg


def _write(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


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
             results: TextIO = sys.stdout, serve_seconds: float | None = None) -> int:
    from downloader.config.load import load_config
    from downloader.service.logs import setup_logging
    from downloader.service.oneshot import backfill_and_report, run_async
    from downloader.sim.cdp.app import start_cdp_simulator
    from downloader.sim.cdp.state import CdpSimConfig
    from downloader.sim.raw.faults import SimConfig
    from downloader.sim.stats.config import StatsSimConfig
    from downloader.sim.vendor import start_vendor

    out = Path(out_dir).absolute()
    out.mkdir(parents=True, exist_ok=True)
    print("demo: starting the bundled simulators on loopback ...", file=stream)
    vendor = start_vendor(
        SimConfig(token=DEMO_TOKEN, part_size=512 * 1024, parts_per_type=2, running_polls=1,
                  cache_dir=out / ".simulator-cache", clock=clock.now),
        StatsSimConfig(token=DEMO_TOKEN, client_id=DEMO_CLIENT_ID, report_lag_minutes=0,
                       clock=clock.now))
    cdp = start_cdp_simulator(CdpSimConfig(api_key=DEMO_CDP_KEY, polls_to_finish=2,
                                           clock=clock.now))
    try:
        config_file = _write(out / "config.yaml", demo_config(out, vendor.url, cdp.url))
        reports_file = _write(out / "reports.yaml",
                              demo_config(out, vendor.url, cdp.url, reports_only=True))
        cfg = load_config(config_file)
        setup_logging("console" if stream.isatty() else "auto", "warning", cfg.secrets)
        # The newest hours that are surely due (the hours around midnight are 60 min late).
        now = clock.now()
        last = floor_hour(now) - 2 * HOUR
        first = last - (hours - 1) * HOUR
        print(f"demo: vendor API at {vendor.url}, CDP platform at {cdp.url}; configs in {out}",
              file=stream)
        print(f"demo: backfilling {hours} hours ({first:%Y-%m-%d %H}:00 to {last + HOUR:%H}:00 "
              f"Beijing) of {', '.join(DEMO_TYPES)}, today's users of segment {DEMO_SEGMENT} "
              "(statistics and CDP) ...", file=stream)
        code = run_async(backfill_and_report(cfg, first, last, clock))
        yesterday = floor_day(now) - DAY
        print(f"demo: backfilling the charts of project {DEMO_UID}'s dashboards for "
              f"{yesterday:%Y-%m-%d} ...", file=stream)
        code = max(code, run_async(backfill_and_report(
            load_config(reports_file), yesterday, yesterday + DAY - HOUR, clock)))
        _show(out, cfg, config_file, now, results)
    finally:
        vendor.stop()
        cdp.stop()
        print("demo: simulators stopped", file=stream)
    if serve_seconds is not None:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_status(cfg, clock, serve_seconds, results))
        print("demo: status page stopped", file=stream)
    return code


def _show(out: Path, cfg: Any, config_file: Path, now: datetime, results: TextIO) -> None:
    from downloader.engine.checkpoint import Checkpoint
    from downloader.service.sources import planning_sources
    from downloader.service.status import build_status, format_status

    lake = out / "lake"
    files = sorted(p for p in lake.rglob("*") if p.is_file() and not p.name.startswith("."))
    total = sum(f.stat().st_size for f in files)
    print(f"demo: {len(files)} files, {total / 1048576:.1f} MiB under {lake}", file=results)
    for top in ("ai=", "reports", "cdp"):
        some = [f for f in files if f.relative_to(lake).parts[0].startswith(top)]
        for f in some[:2]:
            print(f"  {f.relative_to(out)}", file=results)
        if len(some) > 2:
            print(f"  ... and {len(some) - 2} more under {top}", file=results)
    with Checkpoint(cfg.checkpoint, readonly=True) as cp:
        print("\n" + format_status(build_status(cfg, cp, now, planning_sources(cfg))),
              file=results)
    sample = next((f for f in files if "data_type=page" in str(f) and f.suffix == ".gz"), None)
    chart = next((f for f in files if f.name == "data.csv"), None)
    print("\nLook at the data:", file=results)
    if sample is not None:
        print(f"  zcat '{sample}' | head -3", file=results)
    if chart is not None:
        print(f"  python3 -c \"import csv; print(*csv.reader(open('{chart}')), sep='\\n')\"",
              file=results)
    pages = f"{lake}/ai=*/data_type=page/export_type=hour/date=*/hour=*/part-*.csv.gz"
    print("  with DuckDB (pip install duckdb):", file=results)
    print(f"  python3 -c \"import duckdb; print(duckdb.sql(\\\"SELECT count(*) FROM "
          f"read_csv('{pages}', header=true, hive_partitioning=true)\\\"))\"", file=results)
    print(f"  gio-downloader status -c {config_file}", file=results)
    print(f"  gio-downloader status -c {config_file} --grid --item '{DEMO_AI}/*'", file=results)
