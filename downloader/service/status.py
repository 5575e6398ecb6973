"""``gio-downloader status``: what the checkpoint says against what is due, per raw project and
type, and per item of the other sources (statistics reports, CDP exports)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from downloader.config.model import Config
from downloader.core.model import DoneSet, PartitionKey
from downloader.core.partitions import Period, periods_in_range, split_due, window
from downloader.engine.checkpoint import Checkpoint, PartitionRow
from downloader.engine.runner import Waiting
from downloader.engine.sharding import owned_jobs
from downloader.engine.source import Source
from downloader.service.grid import Axis, base_row, fill
from downloader.sources.raw.keys import SOURCE, item_name, parse_key


def build_status(cfg: Config, checkpoint: Checkpoint, now: datetime,
                 sources: Sequence[Source] = (),
                 waiting: Mapping[PartitionKey, Waiting] | None = None) -> dict[str, Any]:
    """Counts come from label sets (the metrics endpoint calls this too, so it must stay cheap
    for hundreds of thousands of partitions); only failed partitions are read row by row.
    ``sources``: the configured sources (planning only); every one but raw gets an item table
    in ``sources``. ``waiting``: what the running engine knows of exports being built (the
    daemon's; a separate ``status`` process cannot know it). Every row also gets its grid
    ``cells`` (see :mod:`downloader.service.grid`)."""
    waiting = waiting or {}
    waiting_at: dict[tuple[str, str], list[str]] = {}
    for key in waiting:
        waiting_at.setdefault((key.source, key.item), []).append(key.partition)
    done = checkpoint.done_set()
    failed_rows: dict[PartitionKey, PartitionRow] = {
        r.key: r for r in checkpoint.rows("failed") if r.key.source == SOURCE}
    first, last = window(now, cfg.lags)
    due_labels: dict[str, set[str]] = {}
    for export_type in ("hour", "day"):
        due, _, _ = split_due(periods_in_range(first, last, [export_type]), now, cfg.lags)
        due_labels[export_type] = {p.label for p in due}
    axis = Axis.for_window(first, last)
    first_label = first.strftime("%Y%m%d%H")
    cells_base: dict[str, str] = {}
    cells_index: dict[str, dict[str, int]] = {}
    for export_type in ("hour", "day"):
        names = axis.partitions(export_type)
        cells_index[export_type] = {name: i for i, name in enumerate(names)}
        due_names = {f"{export_type}:{label}" for label in due_labels[export_type]}
        # Not due: starts inside the window (a day's label is its first hour, 00).
        later = {n for n in names if n.split(":", 1)[1].ljust(10, "0") >= first_label}
        cells_base[export_type] = base_row(names, due_names, later - due_names)
    projects: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    # Sharding: this instance's projects only (the raw source's unit is the project).
    for project in [p for p in cfg.projects if cfg.sharding.owns(SOURCE, p.ai)]:
        types: list[dict[str, Any]] = []
        complete_hours: set[str] | None = None
        for export_type in project.export_types:
            labels = due_labels[export_type]
            for data_type in project.data_types:
                item = item_name(project.ai, data_type)
                prefix = f"{export_type}:"
                done_labels = labels & {p.removeprefix(prefix)
                                        for p in done.partitions(SOURCE, item)
                                        if p.startswith(prefix)}
                failed_here = [r for k, r in failed_rows.items()
                               if k.item == item and k.partition.startswith(prefix)
                               and parse_key(k)[2].label in labels]
                failed.extend(_failure(str(r.key), r) for r in failed_here)
                if export_type == "hour":
                    complete_hours = done_labels if complete_hours is None \
                        else complete_hours & done_labels
                types.append({"data_type": data_type, "export_type": export_type,
                              "done": len(done_labels), "failed": len(failed_here),
                              "pending": len(labels) - len(done_labels) - len(failed_here),
                              "newest_done": max(done_labels) if done_labels else None,
                              "cells": fill(cells_base[export_type], cells_index[export_type],
                                            done.partitions(SOURCE, item),
                                            [r.key.partition for r in failed_here],
                                            waiting_at.get((SOURCE, item), ()))})
        newest_hour = Period.from_label("hour", max(complete_hours)) if complete_hours else None
        projects.append({
            "ai": project.ai,
            "types": types,
            "newest_complete_hour": newest_hour.label if newest_hour else None,
            "freshness_seconds": round((now - newest_hour.end).total_seconds())
            if newest_hour else None,
        })
    others = [s for s in sources if s.name != SOURCE]
    all_failed = [r for r in checkpoint.rows("failed") if r.key.source != SOURCE]
    failed.extend(_failure(f"{r.key.source}:{r.key}", r) for r in all_failed)
    return {"checkpoint": str(cfg.checkpoint), "now": now.isoformat(timespec="seconds"),
            "window_first_hour": first.strftime("%Y%m%d%H"), "grid": axis.to_json(),
            "projects": projects,
            "shard": {"index": cfg.sharding.index, "count": cfg.sharding.count},
            "sources": {s.name: source_items(s, first, last, now, done, all_failed, waiting_at,
                                             cfg)
                        for s in others},
            "failed": failed,
            "waiting": [{"partition": str(k) if k.source == SOURCE else f"{k.source}:{k}",
                         "source": k.source, "item": k.item, "partition_name": k.partition,
                         "since": w.since.isoformat(timespec="seconds"),
                         "seconds": round((now - w.since).total_seconds()),
                         "polls": w.polls, "reason": w.reason}
                        for k, w in sorted(waiting.items()) if k not in done]}


def _failure(shown: str, row: PartitionRow) -> dict[str, Any]:
    return {"partition": shown, "error": row.last_error, "attempts": row.attempts,
            "updated_at": row.updated_at, "source": row.key.source, "item": row.key.item,
            "partition_name": row.key.partition}


def source_items(source: Source, first: datetime, last: datetime, now: datetime,
                 done: DoneSet, failed: list[PartitionRow],
                 waiting_at: Mapping[tuple[str, str], Sequence[str]] | None = None,
                 cfg: Config | None = None) -> list[dict[str, Any]]:
    """Per item of a source (this shard's, given ``cfg``): due partitions in the window by
    state, the newest done, and its grid ``cells`` (one per Beijing day of the window)."""
    due: dict[str, set[str]] = {}
    plan = source.plan(first, last, now, DoneSet({}))
    for job in owned_jobs(source, cfg.sharding, plan.jobs) if cfg is not None else plan.jobs:
        for key in job.keys:
            due.setdefault(key.item, set()).add(key.partition)
    names = Axis.for_window(first, last).partitions("day")
    index = {name: i for i, name in enumerate(names)}
    not_due = set(plan.not_due)
    failed_here: dict[str, set[str]] = {}
    for row in failed:
        if row.key.source == source.name:
            failed_here.setdefault(row.key.item, set()).add(row.key.partition)
    items = []
    for item in sorted(due.keys() | failed_here.keys()):
        wanted = due.get(item, set())
        got = done.partitions(source.name, item)
        ok = wanted & got
        bad = (failed_here.get(item, set()) & wanted) - ok
        items.append({"item": item, "done": len(ok), "failed": len(bad),
                      "pending": len(wanted) - len(ok) - len(bad),
                      "newest_done": max(got) if got else None,
                      "cells": fill(base_row(names, wanted, not_due), index, got, bad,
                                    (waiting_at or {}).get((source.name, item), ()))})
    return items


def format_status(report: dict[str, Any]) -> str:
    from downloader.service.progress import human_duration

    lines = [f"checkpoint {report['checkpoint']}   now {report['now']} (Beijing)",
             f"window from {report['window_first_hour']}"]
    shard = report.get("shard") or {"count": 1}
    if shard["count"] > 1:
        lines.append(f"shard {shard['index']}/{shard['count']}: this instance's items only")
    for project in report["projects"]:
        lines.append("")
        lines.append(f"project {project['ai']}")
        lines.append(f"  {'data_type':<22}{'export':<8}{'done':>6}{'pending':>9}{'failed':>8}"
                     f"  newest done")
        for t in project["types"]:
            lines.append(f"  {t['data_type']:<22}{t['export_type']:<8}{t['done']:>6}"
                         f"{t['pending']:>9}{t['failed']:>8}  {t['newest_done'] or '-'}")
        newest = project["newest_complete_hour"]
        if newest:
            lines.append(f"  newest hour complete for every type: {newest} "
                         f"(freshness {human_duration(project['freshness_seconds'])})")
        else:
            lines.append("  newest hour complete for every type: none yet")
    for name, items in report.get("sources", {}).items():
        lines.append("")
        lines.append(f"{name}")
        lines.append(f"  {'item':<40}{'done':>6}{'pending':>9}{'failed':>8}  newest done")
        for t in items:
            lines.append(f"  {t['item']:<40}{t['done']:>6}{t['pending']:>9}{t['failed']:>8}"
                         f"  {t['newest_done'] or '-'}")
        if not items:
            lines.append("  nothing due in the window")
    if report["failed"]:
        lines.append("")
        lines.append("failed partitions (last error):")
        for f in report["failed"]:
            lines.append(f"  {f['partition']}: {f['error']}")
    return "\n".join(lines)
