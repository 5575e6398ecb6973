"""Scheduling micro-benchmark, in one process (``time.perf_counter``, medians):
100 projects x 10 data types x hour+day over the 15-day window, every due partition done.

- ``plan``: the raw source's ``plan_jobs`` with a ready-made set of done keys (must plan 0 jobs);
- ``done_set``: ``Checkpoint.done_set()`` reading that set back from a real SQLite checkpoint
  (what ``backfill`` and the daemon do before planning), then once both together;
- ``plan_empty`` / ``plan_empty_sharded``: the first plan of a new instance (nothing done: every
  job planned), alone and then as shard 0 of 3 (the engine's ownership filter included).

Prints one JSON object. Run from the repository root: ``python bench/sched.py [--projects N]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from downloader.config.model import Config, ProjectConfig, StorageConfig  # noqa: E402
from downloader.core.constants import ALL_DATA_TYPES, BEIJING  # noqa: E402
from downloader.core.model import DoneSet, PartitionKey  # noqa: E402
from downloader.core.partitions import (  # noqa: E402
    Lags,
    periods_in_range,
    split_due,
    window,
)
from downloader.core.sharding import Shard  # noqa: E402
from downloader.engine.checkpoint import Checkpoint  # noqa: E402
from downloader.engine.sharding import owned_jobs  # noqa: E402
from downloader.sources.raw.keys import raw_key  # noqa: E402
from downloader.sources.raw.plan import plan_jobs  # noqa: E402
from downloader.sources.raw.source import RawSource  # noqa: E402

# A fixed "now" (minutes past the hour, like a real daemon wake-up) keeps the count stable.
NOW = datetime(2026, 11, 20, 10, 47, tzinfo=BEIJING)


def _median(values: list[float]) -> float:
    s = sorted(values)
    return s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2


def _times(fn: object, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append(time.perf_counter() - t0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--projects", type=int, default=100)
    ap.add_argument("--days", type=float, default=15)
    ap.add_argument("--repeat", type=int, default=5, help="runs of plan_jobs")
    ap.add_argument("--repeat-db", type=int, default=3,
                    help="runs of Checkpoint.done_set() ")
    args = ap.parse_args()

    lags = Lags()
    projects = [ProjectConfig(f"bench{i:04d}", ALL_DATA_TYPES, ("hour", "day"))
                for i in range(args.projects)]
    first, last = window(NOW, lags, args.days)
    done: set[PartitionKey] = set()
    for p in projects:
        due, _, _ = split_due(periods_in_range(first, last, p.export_types), NOW, lags)
        done.update(raw_key(p.ai, t, period) for period in due for t in p.data_types)

    done_set = DoneSet.from_keys(done)
    result: dict[str, object] = {
        "projects": len(projects), "data_types": len(ALL_DATA_TYPES),
        "export_types": ["hour", "day"], "days": args.days, "now": NOW.isoformat(),
        "first_hour": first.isoformat(), "last_hour": last.isoformat(),
        "done_partitions": len(done), "repeat": args.repeat, "repeat_db": args.repeat_db,
    }

    plans = []
    t_plan = _times(lambda: plans.append(
        plan_jobs(projects, first, last, NOW, lags, done_set)), args.repeat)
    plan = plans[-1]
    result["plan_jobs_s"] = {"median": round(_median(t_plan), 4), "all": [round(t, 4)
                                                                         for t in t_plan]}
    result["plan_jobs_planned"] = len(plan.jobs)
    result["plan_already_done"] = plan.already_done

    cfg = Config(path=Path("bench.yaml"), api=None, projects=tuple(projects), lags=lags,
                 storage=StorageConfig("file:///tmp/gio-bench"), checkpoint=Path("/tmp/x.db"))
    source = RawSource(cfg, None)
    empty = DoneSet({})
    counts: list[int] = []
    t_empty = _times(lambda: counts.append(len(source.plan(first, last, NOW, empty).jobs)),
                     args.repeat)
    t_shard = _times(lambda: counts.append(len(owned_jobs(
        source, Shard(3, 0), source.plan(first, last, NOW, empty).jobs))), args.repeat)
    result["plan_empty_s"] = {"median": round(_median(t_empty), 4), "jobs": counts[0]}
    result["plan_empty_sharded_s"] = {"median": round(_median(t_shard), 4), "jobs": counts[-1],
                                      "shard": "0/3"}

    with tempfile.TemporaryDirectory(prefix="gio-bench-ckpt-") as tmp:
        path = Path(tmp) / "checkpoint.db"
        with Checkpoint(path) as cp:
            t0 = time.perf_counter()
            db = getattr(cp, "_db", None)  # one transaction when the connection is reachable
            if db is not None:
                db.execute("BEGIN")
            for key in done:
                cp.done(key)
            if db is not None:
                db.execute("COMMIT")
            result["checkpoint_insert_s"] = round(time.perf_counter() - t0, 3)
            result["checkpoint_insert_one_transaction"] = db is not None
            result["checkpoint_bytes"] = path.stat().st_size
        with Checkpoint(path, readonly=True) as cp:
            sets: list[DoneSet] = []
            t_done = _times(lambda: sets.append(cp.done_set()), args.repeat_db)
            from_db = sets[-1]
            result["done_set_s"] = {"median": round(_median(t_done), 4),
                                     "all": [round(t, 4) for t in t_done]}
            result["done_set_rows"] = len(from_db)
            result["done_set_matches"] = len(from_db) == len(done) and all(
                k in from_db for k in done)
            t_both = _times(lambda: plan_jobs(projects, first, last, NOW, lags,
                                              cp.done_set()), 1)
            result["done_set_plus_plan_s"] = {"median": round(_median(t_both), 4),
                                               "all": [round(t, 4) for t in t_both]}
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
