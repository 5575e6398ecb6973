"""The statistics exports (V3 exporter + v1 lists, exports-spec §3) as a source of the engine.

Every partition is its own job: one item of one project on one Beijing day. ``ask()`` repeats
the same GET for a partition until the vendor's job is done (the engine polls, backs off,
resubmits and refreshes links); a windowed result comes back inline as ``response.json`` and
``data.csv``, a user list as links the engine streams, rules as ``rules.csv``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from downloader.config.model import Config
from downloader.core.constants import JOB_POLL_FIRST_SECONDS, JOB_POLL_MAX_SECONDS
from downloader.core.model import DoneSet, PartitionKey
from downloader.core.policy import Decision
from downloader.engine.source import Answer, Job, Plan
from downloader.sources.stats import protocol
from downloader.sources.stats.answers import rules_answer, user_list_answer, windowed_answer
from downloader.sources.stats.catalog import Catalog
from downloader.sources.stats.client import StatsClient
from downloader.sources.stats.keys import ROOT, SOURCE, Item, folder, parse_key
from downloader.sources.stats.plan import next_due, plan_reports, snapshot_due, windowed_due


class StatsSource:
    name = SOURCE
    root = ROOT
    poll_first_seconds = JOB_POLL_FIRST_SECONDS
    poll_max_seconds = JOB_POLL_MAX_SECONDS

    def __init__(self, cfg: Config, client: StatsClient | None) -> None:
        self.cfg = cfg
        self.client = client  # None: planning only (status, plan): no list is read
        self.catalog = Catalog(cfg.reports)
        self._intervals = {r.project_uid: r.interval for r in cfg.reports}
        self._variables = {r.project_uid: r.user_variables for r in cfg.reports}

    @property
    def lag(self) -> timedelta:
        return timedelta(minutes=self.cfg.report_lag_minutes)

    # -- planning --------------------------------------------------------------------------------

    async def prepare(self) -> Decision | None:
        """Read the v1 lists that ``dashboards`` and ``segments: all`` need, once per process;
        a retry reads only what is still missing."""
        if self.client is None:
            return None
        # Each settled call leaves pending(); a dashboard list adds its dashboards to it.
        while calls := self.catalog.pending():
            for call in calls:
                reply = await self.client.get(call.request, call.name)
                decision = self.catalog.take(call, reply)
                if decision is not None:
                    return decision
        return None

    def plan(self, first_hour: datetime, last_hour: datetime, now: datetime,
             done: DoneSet) -> Plan:
        plan = plan_reports(self.catalog.items(), first_hour, last_hour, now, self.lag, done)
        plan.failed.update(self.catalog.failures())
        return plan

    def next_due(self, now: datetime) -> datetime | None:
        if not self.cfg.reports:
            return None
        return next_due(now, self.lag)

    def reconfigure(self, cfg: Config) -> None:
        # Items stay as expanded at start: a changed reports: block needs a restart.
        self.cfg = cfg

    # -- layout ----------------------------------------------------------------------------------

    def folder(self, key: PartitionKey) -> str:
        return folder(*parse_key(key))

    def manifest(self, key: PartitionKey, info: Mapping[str, str]) -> dict[str, Any]:
        item, day = parse_key(key)
        head: dict[str, Any] = {"project_uid": item.uid, "report": item.report}
        if item.ident is not None:
            head["id"] = item.ident
        head["date"] = f"{day:%Y-%m-%d}"
        if item.windowed:
            start, end = protocol.day_window_ms(day)
            head.update(kind="windowed", start_time_ms=start, end_time_ms=end,
                        due_at=windowed_due(day, self.lag).isoformat())
            if item.report == "chart":
                head["interval"] = self._intervals.get(item.uid, "day")
        else:
            head.update(kind="snapshot", due_at=snapshot_due(day, self.lag).isoformat())
        return head

    async def download_headers(self, stale: bool) -> Mapping[str, str]:
        return {}  # the links are signed and need no header (exports-spec §3)

    # -- asking ----------------------------------------------------------------------------------

    def _request(self, item: Item, day: Any) -> protocol.Request:
        if item.windowed:
            interval = self._intervals.get(item.uid, "day")
            assert item.ident is not None and interval in ("hour", "day")
            return protocol.windowed_request(item.uid, item.report,  # type: ignore[arg-type]
                                             item.ident, day, interval)  # type: ignore[arg-type]
        if item.ident is None:
            return protocol.rules_request(item.uid)
        return protocol.user_list_request(item.uid, item.report,  # type: ignore[arg-type]
                                          item.ident, self._variables.get(item.uid, ()))

    async def ask(self, job: Job, keys: Sequence[PartitionKey], job_ref: str | None) -> Answer:
        """One GET for the job's one partition. The V3 job is the GET itself (the same query
        polls it), so ``job_ref`` only records the vendor's job id for the checkpoint."""
        assert self.client is not None
        key = keys[0]
        item, day = parse_key(key)
        reply = await self.client.get(self._request(item, day), item.name)
        if item.windowed:
            answer = windowed_answer(key, item, day, reply)
        elif item.ident is None:
            answer = rules_answer(key, item, day, reply)
        else:
            answer = user_list_answer(key, item, day, reply)
        if answer.job_ref is None and job_ref is not None:
            return Answer(answer.decision, answer.files, answer.info, job_ref)
        return answer
