"""The raw-data export 2.0 (/v2/insights) as a source of the engine."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from downloader.config.model import Config
from downloader.core.constants import RUNNING_POLL_FIRST_SECONDS
from downloader.core.model import DoneSet, PartitionKey
from downloader.core.partitions import DAY, HOUR, Period, floor_day, floor_hour, next_due
from downloader.engine.source import Answer, FileSpec, Job, Plan
from downloader.sources.raw.client import InsightsClient
from downloader.sources.raw.keys import (
    SOURCE,
    RawJob,
    parse_key,
    part_name,
    partition_dir,
    raw_key,
)
from downloader.sources.raw.plan import plan_jobs


class RawSource:
    name = SOURCE
    root = "ai="  # every folder starts ai=<project>/...
    poll_first_seconds = RUNNING_POLL_FIRST_SECONDS

    def __init__(self, cfg: Config, client: InsightsClient | None) -> None:
        self.cfg = cfg
        self.client = client  # None: planning only (status, plan)

    @property
    def poll_max_seconds(self) -> float:
        return self.cfg.running_poll_max_seconds

    def plan(self, first_hour: datetime, last_hour: datetime, now: datetime,
             done: DoneSet) -> Plan:
        return plan_jobs(self.cfg.projects, first_hour, last_hour, now, self.cfg.lags, done)

    def next_due(self, now: datetime) -> datetime | None:
        hour, day = floor_hour(now), floor_day(now)
        candidates = [Period(hour + i * HOUR, "hour") for i in range(-3, 2)]
        candidates += [Period(day + i * DAY, "day") for i in range(-2, 1)]
        types = {t for p in self.cfg.projects for t in p.export_types}
        if not types:
            return None
        due = next_due([p for p in candidates if p.export_type in types], now, self.cfg.lags)
        return due or now + timedelta(hours=1)

    def reconfigure(self, cfg: Config) -> None:
        self.cfg = cfg

    def folder(self, key: PartitionKey) -> str:
        return partition_dir(*parse_key(key))

    def owner(self, key: PartitionKey) -> str:
        """Sharding's unit is the project: one call serves all its data types of a period."""
        return key.item.split("/", 1)[0]

    def key_of(self, folder: str, manifest: Mapping[str, Any]
               ) -> tuple[PartitionKey, dict[str, str]] | None:
        try:
            export_type = str(manifest["export_type"])
            start = datetime.fromisoformat(str(manifest["period_start"]))
            period = Period(start, export_type)
            key = raw_key(str(manifest["ai"]), str(manifest["data_type"]), period)
        except (KeyError, ValueError, TypeError):
            return None
        if partition_dir(*parse_key(key)) != folder:
            return None  # a manifest that does not describe its own folder is not trusted
        return key, {"export_date": str(manifest.get("export_date") or "")}

    def manifest(self, key: PartitionKey, info: Mapping[str, str]) -> dict[str, Any]:
        ai, data_type, period = parse_key(key)
        return {
            "ai": ai,
            "data_type": data_type,
            "export_type": period.export_type,
            "export_date": info.get("export_date") or period.label,
            "period_start": period.start.isoformat(),
            "period_end": period.end.isoformat(),
        }

    async def download_headers(self, stale: bool) -> Mapping[str, str]:
        return {}  # the links are signed and need no header (API §2.5)

    async def ask(self, job: Job, keys: Sequence[PartitionKey], job_ref: str | None) -> Answer:
        assert self.client is not None
        parsed = [parse_key(k) for k in keys]
        ai, _, period = parsed[0]
        raw = RawJob(ai, period, tuple(t for _, t, _ in parsed))
        outcome = await self.client.fetch(raw)
        insights = outcome.insights
        if insights is None or insights.status != "FINISHED":
            return Answer(outcome.decision)
        files = {key: tuple(FileSpec(part_name(i), url=url, gzip=True)
                            for i, url in enumerate(insights.links.get(t, ())))
                 for key, (_, t, _) in zip(keys, parsed, strict=True)}
        info = {key: {"export_date": insights.export_date} for key in keys}
        return Answer(outcome.decision, files, info)
