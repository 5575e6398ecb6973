"""The command line: ``gio-downloader backfill|run|plan|status|checkpoint|demo|simulate``.

Exit codes: 0 all done; 1 some partitions failed (a summary says which and why); 2 usage or
configuration error (one line on stderr, nothing written).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import NoReturn

import structlog

from downloader import __version__
from downloader.config.load import check_writable, load_config
from downloader.config.model import Config, ConfigError
from downloader.core.clock import Clock, clock_from_env
from downloader.core.partitions import parse_hour, window
from downloader.core.sharding import parse_shard
from downloader.engine.checkpoint import Checkpoint, CheckpointError
from downloader.service.logs import setup_logging
from downloader.service.oneshot import (
    EXIT_OK,
    EXIT_USAGE,
    backfill_and_report,
    run_async,
)
from downloader.storage.base import StorageError

log = structlog.get_logger("gio.cli")


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gio-downloader",
                     description="Download GrowingIO raw-data exports (/v2/insights).")
    parser.add_argument("--version", action="version", version=f"gio-downloader {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    bf = sub.add_parser("backfill", help="download every due partition in a range, then exit")
    bf.add_argument("-c", "--config", required=True, help="YAML configuration file")
    bf.add_argument("--days", type=float, help="the last N days (default: the retention, 15)")
    bf.add_argument("--from", dest="first", metavar="YYYYMMDDHH",
                    help="first Beijing hour (inclusive)")
    bf.add_argument("--to", dest="last", metavar="YYYYMMDDHH",
                    help="last Beijing hour (inclusive; default: now)")
    bf.add_argument("--log-format", choices=("auto", "json", "console"),
                    help="override log.format")

    rn = sub.add_parser("run", help="the daemon: catch up, then download each partition as it "
                                    "becomes due")
    rn.add_argument("-c", "--config", required=True, help="YAML configuration file")
    rn.add_argument("--log-format", choices=("auto", "json", "console"),
                    help="override log.format")

    dm = sub.add_parser("demo", help="backfill a few hours from the bundled simulator into "
                                     "./gio-demo-data (no credentials needed)")
    dm.add_argument("--dir", default="gio-demo-data", help="where to put data and checkpoint")
    dm.add_argument("--hours", type=int, default=3, help="how many hours to download")
    dm.add_argument("--serve", type=float, nargs="?", const=600.0, default=None,
                    metavar="SECONDS",
                    help="then serve the status page on loopback for this long (default "
                         "600 s; Ctrl-C stops it)")

    st = sub.add_parser("status", help="show done / pending / failed partitions")
    st.add_argument("-c", "--config", required=True, help="YAML configuration file")
    shown = st.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true", help="machine-readable output")
    shown.add_argument("--grid", action="store_true",
                       help="one letter per partition (an hour, or a day), coloured on a "
                            "terminal; days fold to fit the width")
    st.add_argument("--item", metavar="GLOB",
                    help="with --grid: only the items matching this shell pattern, e.g. "
                         "'ai01/*' or 'reports:*'")
    st.add_argument("--width", type=int, metavar="COLUMNS",
                    help="with --grid: the line width (default: the terminal's, else 80)")
    st.add_argument("--shard", metavar="I/N", help="as instance I of N (overrides sharding:)")

    pl = sub.add_parser("plan", help="list the partitions this instance owns and when each is "
                                     "due; calls no API, writes nothing")
    pl.add_argument("-c", "--config", required=True, help="YAML configuration file")
    pl.add_argument("--shard", metavar="I/N", help="as instance I of N (overrides sharding:)")
    pl.add_argument("--json", action="store_true", help="machine-readable output")

    cp = sub.add_parser("checkpoint", help="maintain the checkpoint")
    cp_sub = cp.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    cp_sub.required = True
    rb = cp_sub.add_parser("rebuild", help="rebuild the checkpoint from the _SUCCESS manifests "
                                           "in the storage (the old file is moved aside)")
    rb.add_argument("-c", "--config", required=True, help="YAML configuration file")

    sim = sub.add_parser("simulate", help="serve the bundled simulator of the export API")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8080)
    sim.add_argument("--token", default="sim-token",
                     help="token the simulator expects (Authorization: Token <token>)")
    sim.add_argument("--client-id", default="sim-client",
                     help="X-Client-Id the statistics endpoints expect")
    sim.add_argument("--part-size", type=int, default=256 * 1024, help="bytes per part")
    sim.add_argument("--parts", type=int, default=2, help="parts per data type and period")
    sim.add_argument("--running-polls", type=int, default=1,
                     help="answer RUNNING to the first N polls of each partition")
    sim.add_argument("--link-ttl", type=float, default=None,
                     help="link lifetime in seconds (default: the request's expire minutes)")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--cache-dir", default=None, help="where generated parts are kept")
    return parser


def _range(args: argparse.Namespace, cfg: Config, now: datetime) -> tuple[datetime, datetime]:
    if args.days is not None and (args.first or args.last):
        raise UsageError("gio-downloader backfill: use either --days or --from/--to")
    if args.first or args.last:
        if not args.first:
            raise UsageError("gio-downloader backfill: --to needs --from")
        try:
            first = parse_hour(args.first)
            last = parse_hour(args.last) if args.last else window(now, cfg.lags)[1]
        except ValueError as exc:
            raise UsageError(f"gio-downloader backfill: {exc}") from None
        if last < first:
            raise UsageError("gio-downloader backfill: --to is before --from")
        return first, last
    if args.days is not None and args.days <= 0:
        raise UsageError("gio-downloader backfill: --days must be positive")
    return window(now, cfg.lags, args.days)


def preflight(cfg: Config) -> None:
    """Checks that need the file system but write nothing; a failure names the config file."""
    try:
        check_writable(cfg.checkpoint, "checkpoint", is_dir=False)
        if cfg.storage.scheme == "file":
            check_writable(cfg.storage.local_root, "storage.url", is_dir=True)
    except ConfigError as exc:
        raise ConfigError(f"{cfg.path}: {exc}") from None


def cmd_backfill(args: argparse.Namespace, clock: Clock) -> int:
    cfg = load_config(args.config)
    first, last = _range(args, cfg, clock.now())
    preflight(cfg)
    setup_logging(args.log_format or cfg.log_format, cfg.log_level, cfg.secrets)
    return run_async(backfill_and_report(cfg, first, last, clock))


def cmd_run(args: argparse.Namespace, clock: Clock) -> int:
    from downloader.service.daemon import Daemon

    cfg = load_config(args.config)
    preflight(cfg)
    setup_logging(args.log_format or cfg.log_format, cfg.log_level, cfg.secrets)

    async def daemon() -> int:
        return await Daemon(cfg, clock).run()

    return run_async(daemon())


def cmd_demo(args: argparse.Namespace, clock: Clock) -> int:
    from downloader.demo import run_demo

    if args.hours < 1 or args.hours > 48:
        raise UsageError("gio-downloader demo: --hours must be between 1 and 48")
    if args.serve is not None and not 0 < args.serve <= 86400:
        raise UsageError("gio-downloader demo: --serve takes 1 to 86400 seconds")
    return run_demo(args.dir, args.hours, clock, serve_seconds=args.serve)


def _shard(args: argparse.Namespace) -> tuple[int, int] | None:
    if args.shard is None:
        return None
    try:
        return parse_shard(args.shard)
    except ValueError as exc:
        raise UsageError(f"gio-downloader {args.command}: {exc}") from None


def cmd_plan(args: argparse.Namespace, clock: Clock) -> int:
    from downloader.service.plan import build_plan, format_plan
    from downloader.service.sources import planning_sources

    cfg = load_config(args.config, _shard(args))
    with Checkpoint(cfg.checkpoint, readonly=True) as checkpoint:
        done = checkpoint.done_set()
    report = build_plan(cfg, planning_sources(cfg), clock.now(), done,
                        checkpoint_found=cfg.checkpoint.exists())
    if args.json:
        print(json.dumps(report, indent=1, ensure_ascii=False))
    else:
        print(format_plan(report))
    return EXIT_OK


def cmd_status(args: argparse.Namespace, clock: Clock) -> int:
    import os
    import shutil

    from downloader.service.grid import render_terminal, sections
    from downloader.service.sources import planning_sources
    from downloader.service.status import build_status, format_status

    if (args.item or args.width is not None) and not args.grid:
        raise UsageError("gio-downloader status: --item and --width go with --grid")
    if args.width is not None and not 40 <= args.width <= 1000:
        raise UsageError("gio-downloader status: --width must be between 40 and 1000")
    cfg = load_config(args.config, _shard(args))
    with Checkpoint(cfg.checkpoint, readonly=True) as checkpoint:
        report = build_status(cfg, checkpoint, clock.now(), planning_sources(cfg))
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    elif args.grid:
        if args.item and not any(s.rows for s in sections(report, args.item)):
            raise UsageError(f"gio-downloader status: no item matches {args.item!r} (items "
                             "look like 'ai/data_type', 'uid/chart/id', 'kind/id')")
        tty = sys.stdout.isatty()
        width = args.width or (shutil.get_terminal_size((80, 24)).columns if tty else 80)
        color = tty and not os.environ.get("NO_COLOR")
        print(render_terminal(report, width, color, args.item))
    else:
        print(format_status(report))
    return EXIT_OK


def cmd_checkpoint(args: argparse.Namespace) -> int:
    from downloader.service.rebuild import rebuild_checkpoint
    from downloader.service.sources import planning_sources

    cfg = load_config(args.config)
    preflight(cfg)
    result = run_async(rebuild_checkpoint(cfg, planning_sources(cfg)))
    if result.moved_to is not None:
        print(f"the old checkpoint was moved to {result.moved_to}")
    print(f"checkpoint {cfg.checkpoint} rebuilt: {result.partitions} complete partitions from "
          f"{result.manifests} _SUCCESS manifests")
    if result.not_owned:
        print(f"  {result.not_owned} partitions belong to other shards than "
              f"{cfg.sharding} and were left out")
    for folder in result.ignored:
        print(f"  ignored (not a manifest this version can read): {folder}", file=sys.stderr)
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace, clock: Clock) -> int:
    from pathlib import Path

    from downloader.sim.raw.faults import SimConfig
    from downloader.sim.stats.config import StatsSimConfig
    from downloader.sim.vendor import serve_vendor

    setup_logging("auto", "info")
    # The same clock as the downloader's (GIO_DOWNLOADER_FAKE_NOW / _CLOCK_RATE), so that a
    # rehearsal at 600x sees the same due hours on both sides; links live real seconds.
    raw = SimConfig(token=args.token or None, part_size=args.part_size,
                    parts_per_type=args.parts, running_polls=args.running_polls,
                    link_ttl_seconds=args.link_ttl, seed=args.seed,
                    cache_dir=Path(args.cache_dir) if args.cache_dir else None,
                    clock=clock.now)
    stats = StatsSimConfig(token=args.token or "", client_id=args.client_id, seed=args.seed,
                           clock=clock.now)
    print(f"simulator: http://{args.host}:{args.port}  (token {args.token!r}, client id "
          f"{args.client_id!r}; raw exports and statistics; now "
          f"{clock.now():%Y-%m-%d %H:%M} Beijing)", file=sys.stderr)
    # The plain asyncio loop on purpose: FileResponse uses sendfile there.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_vendor(raw, stats, args.host, args.port))
    return EXIT_OK


def main(argv: Sequence[str] | None = None, clock: Clock | None = None) -> int:
    try:
        code = _main(argv, clock)
        sys.stdout.flush()  # inside the try: a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:
        # The reader went away (`status | head`): not an error of ours. Point stdout at
        # /dev/null so that the interpreter's final flush does not complain either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


def _main(argv: Sequence[str] | None, clock: Clock | None) -> int:
    try:
        args = build_parser().parse_args(argv)
        try:
            clock = clock or clock_from_env()
        except ValueError as exc:
            raise UsageError(f"gio-downloader: {exc}") from None
        if args.command == "backfill":
            return cmd_backfill(args, clock)
        if args.command == "run":
            return cmd_run(args, clock)
        if args.command == "demo":
            return cmd_demo(args, clock)
        if args.command == "status":
            return cmd_status(args, clock)
        if args.command == "plan":
            return cmd_plan(args, clock)
        if args.command == "checkpoint":
            return cmd_checkpoint(args)
        if args.command == "simulate":
            return cmd_simulate(args, clock)
        raise UsageError(f"gio-downloader: unknown command {args.command}")
    except (UsageError, ConfigError, CheckpointError, StorageError) as exc:
        print(f"gio-downloader: error: {exc}" if not str(exc).startswith("gio-downloader")
              else f"{exc}", file=sys.stderr)
        return EXIT_USAGE


