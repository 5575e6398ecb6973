"""deploy/grafana/gio-downloader.json and deploy/prometheus/alerts.yaml: every metric they use is
one /metrics serves, and the files have the shape Grafana and Prometheus load (promtool checks
and unit-tests the rules when it is installed; CI installs it from Debian's prometheus)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from downloader.core.stats import Stats
from downloader.service.health import metric_families

DASHBOARD = REPO / "deploy/grafana/gio-downloader.json"
ALERTS = REPO / "deploy/prometheus/alerts.yaml"
ALERT_TESTS = REPO / "deploy/prometheus/alerts.test.yaml"
METRIC = re.compile(r"\b(gio_downloader_[a-z_]+)\b")
# What Prometheus adds to every target itself; not served by /metrics.
SCRAPE_METRICS = {"up"}


def served_names() -> set[str]:
    """Every sample name a scrape of /metrics can hold, from a report with every part."""
    stats = Stats()
    stats.api_calls[("raw", "FINISHED")] = 1
    report = {"projects": [{"ai": "a", "freshness_seconds": 60, "types": [
        {"data_type": "page", "export_type": "hour", "done": 1, "pending": 0, "failed": 0}]}],
        "sources": {"reports": [{"item": "u/chart/x", "done": 1, "pending": 0, "failed": 0}]}}

    class One(Collector):
        def collect(self) -> Any:
            return metric_families(stats, report, 0.5)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(One())
    text = generate_latest(registry).decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dash["templating"]["list"] if "definition" in v]
    return exprs


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_every_metric_in_the_dashboard_and_alerts_is_served() -> None:
    served = served_names()
    used = {m for expr in dashboard_exprs() + [r["expr"] for r in alert_rules()]
            for m in METRIC.findall(expr)}
    assert used, "no metric found: the regex or the files are wrong"
    assert used - served == set(), f"not in /metrics: {sorted(used - served)}"
    # The only other series the rules use is the scrape's own `up`.
    others = {name for r in alert_rules()
              for name in re.findall(r"\b([a-z_]+)\{", r["expr"]) if not name.startswith("gio_")}
    assert others <= SCRAPE_METRICS


def test_dashboard_shape_and_contents() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "gio-downloader" and dash["title"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        assert panel["type"] in ("timeseries", "stat") and panel["title"] and panel["description"]
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"] and all(t["expr"] and t["refId"] for t in panel["targets"])
    text = json.dumps(dash)
    for wanted in ("gio_downloader_freshness_seconds{", "gio_downloader_partitions{",
                   "gio_downloader_api_calls_total{", "gio_downloader_bytes_downloaded_total{",
                   "gio_downloader_retries_total{", "gio_downloader_link_refreshes_total{"):
        assert wanted in text, wanted
    fresh = next(p for p in dash["panels"] if p["title"] == "Freshness per project")
    steps = fresh["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1]["value"] == 3 * 3600  # the alert threshold, drawn on the panel


def test_alert_rules_shape() -> None:
    """The schema promtool would check, for machines without it."""
    doc = yaml.safe_load(ALERTS.read_text())
    assert set(doc) == {"groups"}
    rules = alert_rules()
    assert {r["alert"] for r in rules} >= {"GioDownloaderDown", "GioDownloaderHeartbeatStale",
                                           "GioDownloaderFreshnessHigh",
                                           "GioDownloaderFailedPartitionsRising"}
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"])
        assert isinstance(rule["expr"], str) and rule["expr"].strip()
        assert re.fullmatch(r"\d+[smh]", rule["for"])
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert rule["expr"].count("(") == rule["expr"].count(")")
    fresh = next(r for r in rules if r["alert"] == "GioDownloaderFreshnessHigh")
    assert "3 * 3600" in fresh["expr"]


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool is not installed (Debian package 'prometheus'; .ci/run "
                           "installs it when the package registry answers)")
def test_promtool_checks_and_unit_tests_the_rules(tmp_path: Path) -> None:
    check = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run(["promtool", "test", "rules", ALERT_TESTS.name], capture_output=True,
                          text=True, timeout=60, cwd=ALERT_TESTS.parent)
    assert unit.returncode == 0, unit.stdout + unit.stderr
