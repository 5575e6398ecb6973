"""``gio-downloader plan``: what this instance would download, and when, without asking any API
or writing anything.

It plans like the daemon (the retention window, the configured lags, the sharding filter of
the engine), against the checkpoint read-only when it exists (an instance planned from another
machine has none there: everything in the window is then listed). Partitions due now are
listed in the order the queue would run them; those that become due within ``LOOKAHEAD`` follow,
by due time. Items that only API calls can list (``dashboards: all``) are not known here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from downloader.config.model import Config
from downloader.core.model import DoneSet, PartitionKey
from downloader.core.partitions import window
from downloader.core.sharding import Shard
from downloader.engine.scheduler import jobs_in_order, plan_all
from downloader.engine.sharding import owner_of
from downloader.engine.source import Source

LOOKAHEAD = timedelta(days=1)


def build_plan(cfg: Config, sources: Sequence[Source], now: datetime, done: DoneSet,
               checkpoint_found: bool) -> dict[str, Any]:
    shard = cfg.sharding
    first, last = window(now, cfg.lags)
    # Every unit of the config, and whose it is: from a plan that ignores the checkpoint.
    units: dict[str, dict[str, bool]] = {}
    everything = plan_all(sources, first, last, now, DoneSet({}), Shard())
    by_name = {s.name: s for s in sources}
    for name, plan in everything.items():
        source = by_name[name]
        found = units.setdefault(name, {})
        for job in plan.jobs:
            for key in job.keys[:1]:
                unit = owner_of(source, key)
                if unit not in found:
                    found[unit] = shard.owns(name, unit)
    plans = plan_all(sources, first, last, now, done, shard)
    due_now: list[tuple[datetime, PartitionKey]] = []
    seen: set[PartitionKey] = set()
    for job in jobs_in_order(plans.values()):
        for key in job.keys:
            due_now.append((job.due, key))
            seen.add(key)
    horizon = now + LOOKAHEAD
    later: list[tuple[datetime, PartitionKey]] = []
    for job in jobs_in_order(plan_all(sources, first, window(horizon, cfg.lags)[1], horizon,
                                      done, shard).values()):
        if job.due > now:
            later += [(job.due, k) for k in job.keys if k not in seen]
    later.sort(key=lambda e: (e[0], e[1]))
    return {
        "shard": {"index": shard.index, "count": shard.count},
        "now": now.isoformat(timespec="seconds"),
        "window_first_hour": first.strftime("%Y%m%d%H"),
        "rate_limit_per_second": cfg.rate_limit_per_second,
        "instance_rate_per_second": round(cfg.instance_rate_per_second, 4),
        "checkpoint": str(cfg.checkpoint) if checkpoint_found else None,
        "already_done": sum(p.already_done for p in plans.values()),
        "owned": {name: sorted(u for u, mine in found.items() if mine)
                  for name, found in units.items()},
        "others": {name: sum(1 for mine in found.values() if not mine)
                   for name, found in units.items()},
        "partitions": [{"source": k.source, "item": k.item, "partition": k.partition,
                        "due": d.isoformat(timespec="minutes"), "due_now": d <= now}
                       for d, k in due_now + later],
        "notes": [n for p in plans.values() for n in p.notes],
        "not_planned": {f"{k.source}:{k}": reason for p in plans.values()
                        for k, reason in p.failed.items()},
    }


def format_plan(report: dict[str, Any]) -> str:
    shard = report["shard"]
    parts = report["partitions"]
    now_count = sum(1 for p in parts if p["due_now"])
    lines = [f"shard {shard['index']}/{shard['count']}   now {report['now']} (Beijing)   "
             f"window from {report['window_first_hour']}",
             f"API budget: {report['instance_rate_per_second']:g} calls/s per host for this "
             f"instance (the token's {report['rate_limit_per_second']:g}/s)",
             f"checkpoint: {report['checkpoint'] or 'none here: nothing counted as done'}"
             f" ({report['already_done']} partitions already done)"]
    for name, owned in report["owned"].items():
        lines.append(f"{name}: owns {len(owned)} of {len(owned) + report['others'][name]} "
                     f"items: {', '.join(owned) if owned else '-'}")
    lines.append(f"{now_count} partitions due now, {len(parts) - now_count} more within "
                 f"{LOOKAHEAD.days} day:")
    for p in parts:
        when = "now  " if p["due_now"] else "later"
        lines.append(f"  {p['due']}  {when}  {p['source']:<8} {p['item']}/{p['partition']}")
    lines += [f"note: {n}" for n in report["notes"]]
    lines += [f"not planned: {k}: {why}" for k, why in report["not_planned"].items()]
    return "\n".join(lines)
