"""``gio-downloader status``: what the checkpoint says against what is due, per raw project and
type, and per item of the other sources (statistics reports, CDP exports)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from downloader.config.model import Config
from downloader.core.model import DoneSet, PartitionKey
from downloader.core.partitions import Period, periods_in_range, split_due, window
from downloader.engine.checkpoint import Checkpoint, PartitionRow
from downloader.engine.sharding import owned_jobs
from downloader.engine.source import Source
from downloader.sources.raw.keys import SOURCE, item_name, parse_key


def build_status(cfg: Config, checkpoint: Checkpoint, now: datetime,
                 sources: Sequence[Source] = ()) -> dict[str, Any]:
    """Counts come from label sets (the metrics endpoint calls this too, so it must stay cheap
    for hundreds of thousands of partitions); only failed partitions are read row by row.
    ``sources``: the configured sources (planning only); every one but raw gets an item table
    in ``sources``."""
    done = checkpoint.done_set()
    failed_rows: dict[PartitionKey, PartitionRow] = {
        r.key: r for r in checkpoint.rows("failed") if r.key.source == SOURCE}
    first, last = window(now, cfg.lags)
    due_labels: dict[str, set[str]] = {}
    for export_type in ("hour", "day"):
        due, _, _ = split_due(periods_in_range(first, last, [export_type]), now, cfg.lags)
        due_labels[export_type] = {p.label for p in due}
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
                failed.extend({"partition": str(r.key), "error": r.last_error,
                               "attempts": r.attempts, "updated_at": r.updated_at}
                              for r in failed_here)
                if export_type == "hour":
                    complete_hours = done_labels if complete_hours is None \
                        else complete_hours & done_labels
                types.append({"data_type": data_type, "export_type": export_type,
                              "done": len(done_labels), "failed": len(failed_here),
                              "pending": len(labels) - len(done_labels) - len(failed_here),
                              "newest_done": max(done_labels) if done_labels else None})
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
    failed.extend({"partition": f"{r.key.source}:{r.key}", "error": r.last_error,
                   "attempts": r.attempts, "updated_at": r.updated_at} for r in all_failed)
    return {"checkpoint": str(cfg.checkpoint), "now": now.isoformat(timespec="seconds"),
            "window_first_hour": first.strftime("%Y%m%d%H"), "projects": projects,
            "shard": {"index": cfg.sharding.index, "count": cfg.sharding.count},
            "sources": {s.name: source_items(s, first, last, now, done, all_failed, cfg)
                        for s in others},
            "failed": failed}


def source_items(source: Source, first: datetime, last: datetime, now: datetime,
                 done: DoneSet, failed: list[PartitionRow],
                 cfg: Config | None = None) -> list[dict[str, Any]]:
    """Per item of a source (this shard's, given ``cfg``): due partitions in the window by
    state, and the newest done."""
    due: dict[str, set[str]] = {}
    jobs = source.plan(first, last, now, DoneSet({})).jobs
    for job in owned_jobs(source, cfg.sharding, jobs) if cfg is not None else jobs:
        for key in job.keys:
            due.setdefault(key.item, set()).add(key.partition)
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
                      "newest_done": max(got) if got else None})
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
