"""The items of every ``reports:`` entry, with ``dashboards`` and ``segments`` resolved through
the v1 lists (exports-spec §3).

Explicit charts, funnels, retentions, frequencies, tags and rules are known from the config. A
dashboard's items are known once ``dashboards/{id}.json`` was read (``dashboards: all`` first
needs ``dashboards.json``), ``segments: all`` once ``segmentations.json`` was read. The catalog
keeps what each list said and which lists are still to be read; reading them is the source's
``prepare()``, retried by the engine. Pure: the calls are made elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from downloader.config.model import ReportConfig
from downloader.core.model import PartitionKey
from downloader.core.policy import Action, Decision
from downloader.sources.stats import dashboards, protocol
from downloader.sources.stats.answers import http_decision
from downloader.sources.stats.client import Reply
from downloader.sources.stats.keys import RULES, SOURCE, Item

log = structlog.get_logger("gio.reports")

# The partition name of a list that could not be read, in the failures a plan reports.
LIST_PARTITION = "list"


@dataclass(frozen=True)
class ListCall:
    """One v1 list to read: ``dashboards`` (all of a project), ``dashboard`` (one, by id) or
    ``segmentations`` (all of a project)."""

    uid: str
    what: str
    ident: str | None = None

    @property
    def request(self) -> protocol.Request:
        if self.what == "dashboards":
            return protocol.dashboards_request(self.uid)
        if self.what == "dashboard":
            assert self.ident is not None
            return protocol.dashboard_request(self.uid, self.ident)
        return protocol.segmentations_request(self.uid)

    @property
    def name(self) -> str:
        """``nxog09md/dashboard/Db01Ab23``, ``nxog09md/dashboards``: the budget and the line."""
        return f"{self.uid}/{self.what}" + (f"/{self.ident}" if self.ident else "")

    def describe(self) -> str:
        if self.what == "dashboard":
            return f"dashboard {self.ident} of project {self.uid}"
        return f"the {self.what} list of project {self.uid}"


class Catalog:
    def __init__(self, reports: Sequence[ReportConfig]) -> None:
        self.reports = tuple(reports)
        self._dashboard_ids: dict[str, tuple[str, ...]] = {}  # uid → listed (dashboards: all)
        self._dashboards: dict[tuple[str, str], bytes] = {}  # (uid, id) → dashboards/{id}.json
        self._segments: dict[str, tuple[str, ...]] = {}  # uid → listed (segments: all)
        self.failed: dict[ListCall, str] = {}  # lists that cannot be read (404, unreadable)
        self.last_error: dict[ListCall, str] = {}  # lists still to read that failed last time

    # -- what is still to read -----------------------------------------------------------------

    def _dashboard_ids_of(self, report: ReportConfig) -> tuple[str, ...] | None:
        if report.dashboards is None:
            return self._dashboard_ids.get(report.project_uid)
        return report.dashboards

    def pending(self) -> list[ListCall]:
        """The lists still to read, in order (a project's dashboard list before its dashboards)."""
        calls: list[ListCall] = []
        for report in self.reports:
            uid = report.project_uid
            ids = self._dashboard_ids_of(report)
            if ids is None:
                calls.append(ListCall(uid, "dashboards"))
            else:
                calls += [ListCall(uid, "dashboard", i) for i in ids
                          if (uid, i) not in self._dashboards]
            if report.segments is None and uid not in self._segments:
                calls.append(ListCall(uid, "segmentations"))
        return [c for c in calls if c not in self.failed]

    # -- taking an answer ------------------------------------------------------------------------

    def take(self, call: ListCall, reply: Reply) -> Decision | None:
        """Keep what a list said. None when the call is settled (read, or failed for good: then
        logged once and in :attr:`failed`); otherwise the decision (retry, stop)."""
        decision = http_decision(reply, call.describe())
        if decision is None:
            try:
                self._keep(call, reply.body)
            except ValueError as exc:
                decision = Decision(Action.FAIL, f"{call.describe()}: unreadable: {exc}")
        if decision is None:
            self.last_error.pop(call, None)
            return None
        if decision.action is Action.FAIL:
            self.failed[call] = decision.reason
            self.last_error.pop(call, None)
            log.error("report list failed", reason=decision.reason)
            return None
        self.last_error[call] = decision.reason
        return decision

    def _keep(self, call: ListCall, body: bytes) -> None:
        if call.what == "dashboards":
            ids = dashboards.dashboard_ids(body)
            if not ids:
                log.warning(f"dashboards: all, but project {call.uid} has no dashboards",
                            project_uid=call.uid)
            self._dashboard_ids[call.uid] = ids
        elif call.what == "dashboard":
            assert call.ident is not None
            dashboards.dashboard_entries(body)  # raises when it cannot be read
            self._dashboards[(call.uid, call.ident)] = body
        else:
            ids = dashboards.segmentation_ids(body)
            if not ids:
                log.warning(f"segments: all, but project {call.uid} has no segments",
                            project_uid=call.uid)
            self._segments[call.uid] = ids

    # -- the items -------------------------------------------------------------------------------

    def items(self) -> list[Item]:
        """Every item known so far, each once: per project the charts (explicit first, then
        those found on dashboards), funnels, retentions, frequencies, segments, tags, rules."""
        out: list[Item] = []
        for report in self.reports:
            uid = report.project_uid
            ids = self._dashboard_ids_of(report) or ()
            bodies = [self._dashboards[(uid, i)] for i in ids if (uid, i) in self._dashboards]
            found = dashboards.expand_dashboards(bodies, report.charts, report.funnels,
                                                 report.retentions)
            segments = report.segments if report.segments is not None \
                else self._segments.get(uid, ())
            for kind, idents in (("chart", found.charts), ("funnel", found.funnels),
                                 ("retention", found.retentions),
                                 ("frequency", report.frequencies),
                                 ("segment_users", segments), ("tag_users", report.tags)):
                out += [Item(uid, kind, i) for i in dict.fromkeys(idents)]
            if report.rules:
                out.append(Item(uid, RULES))
        return out

    def failures(self) -> dict[PartitionKey, str]:
        """Lists that could not be read (for good, or after the engine's retries ran out), as
        the failures of a plan: the run goes on with the other items and exits 1."""
        broken = {**self.last_error, **self.failed}
        return {PartitionKey(SOURCE, call.name, LIST_PARTITION): reason
                for call, reason in broken.items()}

    def expanded(self) -> bool:
        """Nothing left to read (every list read or failed for good)."""
        return not self.pending()
