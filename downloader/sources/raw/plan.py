"""Which raw jobs are due, oldest first: pure, ``now`` is a parameter."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from downloader.config.model import ProjectConfig
from downloader.core.model import DoneSet
from downloader.core.partitions import Lags, Period, due_at, periods_in_range, split_due
from downloader.engine.source import Job, Plan
from downloader.sources.raw.keys import SOURCE, item_name, raw_key


def raw_job(ai: str, period: Period, data_types: Iterable[str], lags: Lags) -> Job:
    types = tuple(data_types)
    return Job(SOURCE, f"{ai}/{period}", tuple(raw_key(ai, t, period) for t in types),
               period.start, due_at(period, lags))


def plan_jobs(projects: Iterable[ProjectConfig], first_hour: datetime, last_hour: datetime,
              now: datetime, lags: Lags, done: DoneSet) -> Plan:
    """Jobs for every due period of every project in ``first_hour..last_hour`` whose partitions
    are not all done, oldest first (the oldest are the first to leave the retention window)."""
    plan = Plan()
    not_due: set[Period] = set()
    expired: set[Period] = set()
    # Projects mostly share their export types: split the range once per combination, and
    # index the due periods by partition name so that "what is missing" is a set difference.
    splits: dict[tuple[str, ...], tuple[dict[str, Period], list[Period], list[Period]]] = {}
    jobs: list[tuple[Period, str, Job]] = []
    for project in projects:
        split = splits.get(project.export_types)
        if split is None:
            periods = periods_in_range(first_hour, last_hour, project.export_types)
            due, pending, gone = split_due(periods, now, lags)
            split = splits[project.export_types] = (
                {f"{p.export_type}:{p.label}": p for p in due}, pending, gone)
        by_name, pending, gone = split
        not_due.update(pending)
        expired.update(gone)
        missing: dict[Period, set[str]] = {}
        for data_type in project.data_types:
            todo = by_name.keys() - done.partitions(SOURCE, item_name(project.ai, data_type))
            plan.already_done += len(by_name) - len(todo)
            for name in todo:
                missing.setdefault(by_name[name], set()).add(data_type)
        for period, types in missing.items():
            job = raw_job(project.ai, period, (t for t in project.data_types if t in types),
                          lags)
            jobs.append((period, project.ai, job))
    jobs.sort(key=lambda j: (j[0].start, j[0].export_type, j[1]))
    plan.jobs = [j for _, _, j in jobs]
    plan.not_due = [str(p) for p in sorted(not_due)]
    plan.expired = [str(p) for p in sorted(expired)]
    return plan
