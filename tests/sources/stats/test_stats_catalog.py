"""Expanding dashboards and segments through the v1 lists, and what fails alone."""

from __future__ import annotations

import json

from downloader.config.model import ReportConfig
from downloader.core.policy import Action
from downloader.sources.stats.catalog import Catalog, ListCall
from downloader.sources.stats.client import Reply

UID = "nxog09md"


def dashboard(*entries: tuple[str, str]) -> bytes:
    return json.dumps({"id": "Db01Ab23", "name": "d", "charts": [
        {"id": i, "name": i, "resource_type": t} for t, i in entries]}).encode()


def test_dashboards_all_then_each_dashboard_then_items_deduplicated() -> None:
    cat = Catalog([ReportConfig(UID, charts=("YoX28w7R",), dashboards=None, segments=None,
                                rules=True)])
    assert cat.pending() == [ListCall(UID, "dashboards"), ListCall(UID, "segmentations")]
    assert cat.take(ListCall(UID, "dashboards"), Reply(200, b'[{"id":"Db01Ab23"}]')) is None
    assert cat.pending() == [ListCall(UID, "dashboard", "Db01Ab23"),
                             ListCall(UID, "segmentations")]
    body = dashboard(("chart", "YoX28w7R"), ("funnel", "Fn01Ab23"), ("chart", "Ch02Ab23"))
    assert cat.take(ListCall(UID, "dashboard", "Db01Ab23"), Reply(200, body)) is None
    assert cat.take(ListCall(UID, "segmentations"), Reply(200, b'[{"id":"Sg01Ab23"}]')) is None
    assert cat.pending() == []
    assert [str(i) for i in cat.items()] == [
        "nxog09md/chart/YoX28w7R", "nxog09md/chart/Ch02Ab23", "nxog09md/funnel/Fn01Ab23",
        "nxog09md/segment_users/Sg01Ab23", "nxog09md/rules"]
    assert cat.failures() == {}


def test_a_missing_dashboard_fails_alone_and_retries_are_remembered() -> None:
    cat = Catalog([ReportConfig(UID, funnels=("Fn01Ab23",), dashboards=("Db09Ab23", "Db01Ab23"))])
    gone, there = ListCall(UID, "dashboard", "Db09Ab23"), ListCall(UID, "dashboard", "Db01Ab23")
    assert cat.take(gone, Reply(404)) is None
    retry = cat.take(there, Reply(503))
    assert retry is not None and retry.action is Action.RETRY
    assert cat.pending() == [there]
    failures = {str(k): r for k, r in cat.failures().items()}
    assert set(failures) == {"nxog09md/dashboard/Db09Ab23/list", "nxog09md/dashboard/Db01Ab23/list"}
    assert "404" in failures["nxog09md/dashboard/Db09Ab23/list"]
    assert cat.take(there, Reply(200, dashboard(("retention", "Rt01Ab23")))) is None
    assert list(map(str, cat.failures())) == ["nxog09md/dashboard/Db09Ab23/list"]
    assert [str(i) for i in cat.items()] == ["nxog09md/funnel/Fn01Ab23",
                                             "nxog09md/retention/Rt01Ab23"]


def test_a_refused_token_stops_and_an_unreadable_list_fails() -> None:
    cat = Catalog([ReportConfig(UID, dashboards=None)])
    stop = cat.take(ListCall(UID, "dashboards"), Reply(401))
    assert stop is not None and stop.action is Action.STOP and "api.token" in stop.reason
    assert cat.take(ListCall(UID, "dashboards"), Reply(200, b"{}")) is None
    assert "unreadable" in next(iter(cat.failures().values()))
    assert cat.pending() == []
