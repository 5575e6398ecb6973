"""The daemon in a real subprocess against the simulator, under an accelerated fake clock."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, assert_partition_exact, cli_env, write_config

from downloader.core.clock import ScaledClock
from downloader.core.constants import BEIJING, DEFAULT_PARTITION_CONCURRENCY

# The fake "now" when the daemon starts: 10:20 Beijing, so the 10:00 hour is due at 11:30.
START = datetime(2026, 11, 20, 10, 20, tzinfo=BEIJING)
RATE = 600.0  # ten simulated minutes per real second


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon:
    """A ``gio-downloader run`` subprocess whose JSON log lines are collected as they come."""

    def __init__(self, config: Path, **env: str) -> None:
        self.events: list[dict[str, Any]] = []
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "downloader", "run", "-c", str(config)],
            stdout=subprocess.PIPE, stderr=self._stderr, text=True, cwd=REPO,
            env=cli_env(GIO_DOWNLOADER_FAKE_NOW=START.isoformat(),
                        GIO_DOWNLOADER_CLOCK_RATE=str(RATE), **env))
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                try:
                    self.events.append(json.loads(line))
                except json.JSONDecodeError:
                    self.events.append({"event": "non-json", "line": line})

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; exit={self.proc.poll()} "
                             f"events={[e.get('event') for e in self.events][-20:]}")

    def saw(self, event: str) -> bool:
        return any(e.get("event") == event for e in self.events)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return self.proc.returncode

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)
        self._stderr.close()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        d.close()


def sim_clock() -> Callable[[], datetime]:
    return ScaledClock(START, RATE).now


def daemon_config(tmp_path: Path, url: str, **sections: Any) -> Path:
    sections.setdefault("projects", [{"ai": "daemon01", "data_types": ["page", "visit"],
                                      "export_types": ["hour", "day"]}])
    sections.setdefault("schedule", {"retention_days": 2})
    return write_config(tmp_path, url, **sections)


def test_catches_up_then_downloads_each_hour_when_due(tmp_path: Path, start_sim,
                                                      daemons: list[Daemon]) -> None:
    sim = start_sim(clock=sim_clock(), running_polls=1, parts_per_type=1, retention_days=2)
    cfg = daemon_config(tmp_path, sim.url)
    d = Daemon(cfg)
    daemons.append(d)
    hour10 = tmp_path / "data/ai=daemon01/data_type=page/export_type=hour/date=2026-11-20/hour=10"
    d.wait_for(lambda: (hour10 / "_SUCCESS").exists(), "the 10:00 hour, due at 11:30")
    assert d.stop() == 0
    calls = sim.stats.api_calls
    assert calls, "the API was called"
    # Never asked for anything before it was due, nor outside the retention window.
    assert [c for c in calls if c.reason in ("not_due", "retention")] == []
    # Catch-up went oldest first. Four partitions are fetched at once (the default
    # concurrency.partitions), so their first calls reach the server in any order within a
    # millisecond: the hours among the first four calls are the oldest of the window.
    hours = sorted({c.path.rsplit("/", 1)[1][:10] for c in calls if "/hour/" in c.path})
    first = sorted(c.path.rsplit("/", 1)[1][:10] for c in calls[:DEFAULT_PARTITION_CONCURRENCY]
                   if "/hour/" in c.path)
    assert first and first == hours[:len(first)], (first, hours[:8])
    root = tmp_path / "data"
    for t in ("page", "visit"):
        assert_partition_exact(sim.sim, root, "daemon01", t, "hour", "2026112010")
        assert_partition_exact(sim.sim, root, "daemon01", t, "hour", "2026111923")
        assert_partition_exact(sim.sim, root, "daemon01", t, "day", "20261119")
    assert d.saw("daemon started") and d.saw("stopped cleanly")


def test_sigterm_mid_download_exits_0_in_time_and_restart_completes(
        tmp_path: Path, start_sim, daemons: list[Daemon]) -> None:
    sim = start_sim(clock=sim_clock(), parts_per_type=2, part_size=384 * 1024,
                    retention_days=2)
    sim.faults.throttle_bytes_per_second = 256 * 1024
    cfg = daemon_config(tmp_path, sim.url, shutdown_grace_seconds=2,
                        concurrency={"downloads": 4, "partitions": 2})
    d = Daemon(cfg)
    daemons.append(d)
    d.wait_for(lambda: any(x.outcome == "ok" for x in sim.stats.downloads), "a download")
    sent = time.monotonic()
    code = d.stop(signal.SIGTERM, timeout=2 + 10)
    assert code == 0, d.stderr()
    assert time.monotonic() - sent < 2 + 5, "exit within the grace period (plus start-up slack)"
    assert d.saw("stopping: finishing in-flight work")
    # The checkpoint was closed cleanly and the state is resumable: a restart (no throttle)
    # finishes the same partitions byte-exact.
    sim.faults.throttle_bytes_per_second = None
    d2 = Daemon(cfg)
    daemons.append(d2)
    folder = tmp_path / "data/ai=daemon01/data_type=visit/export_type=hour/date=2026-11-20/hour=09"
    d2.wait_for(lambda: (folder / "_SUCCESS").exists(), "the 09:00 hour after restart")
    assert d2.stop() == 0
    for t in ("page", "visit"):
        assert_partition_exact(sim.sim, tmp_path / "data", "daemon01", t, "hour", "2026111912")


def test_second_signal_stops_at_once_leaving_resumable_state(
        tmp_path: Path, start_sim, daemons: list[Daemon]) -> None:
    sim = start_sim(clock=sim_clock(), parts_per_type=2, part_size=384 * 1024,
                    retention_days=2)
    sim.faults.throttle_bytes_per_second = 64 * 1024
    cfg = daemon_config(tmp_path, sim.url, shutdown_grace_seconds=60)
    d = Daemon(cfg)
    daemons.append(d)
    d.wait_for(lambda: bool(list((tmp_path / "data").rglob(".part-*"))), "a partial part")
    d.proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    assert d.stop(signal.SIGINT, timeout=10) == 0
    assert d.saw("stopping now; partial parts stay resumable")
    assert list((tmp_path / "data").rglob(".part-*.partial")), "partial parts are kept"


def test_sighup_reloads_projects_and_keeps_old_config_when_bad(
        tmp_path: Path, start_sim, daemons: list[Daemon]) -> None:
    sim = start_sim(clock=sim_clock(), parts_per_type=1, retention_days=2)
    cfg = daemon_config(tmp_path, sim.url, projects=[
        {"ai": "daemon01", "data_types": ["page"], "export_types": ["day"]}])
    d = Daemon(cfg)
    daemons.append(d)
    d.wait_for(lambda: d.saw("partition done"), "the first project's day")
    good = yaml.safe_load(cfg.read_text())
    cfg.write_text("projects: [oops")
    d.proc.send_signal(signal.SIGHUP)
    d.wait_for(lambda: d.saw("config reload failed; keeping the running config"), "bad reload")
    good["projects"].append({"ai": "daemon02", "data_types": ["visit"], "export_types": ["day"]})
    cfg.write_text(yaml.safe_dump(good))
    d.proc.send_signal(signal.SIGHUP)
    d.wait_for(lambda: (tmp_path / "data/ai=daemon02/data_type=visit/export_type=day/"
                        "date=2026-11-19/_SUCCESS").exists(), "the new project's day")
    assert d.stop() == 0
    assert d.saw("config reloaded")


def test_health_ready_and_metrics_over_http(tmp_path: Path, start_sim,
                                            daemons: list[Daemon]) -> None:
    sim = start_sim(clock=sim_clock(), parts_per_type=1, retention_days=2)
    port = free_port()
    cfg = daemon_config(tmp_path, sim.url, health={"listen": f"127.0.0.1:{port}"})
    d = Daemon(cfg)
    daemons.append(d)
    base = f"http://127.0.0.1:{port}"
    d.wait_for(lambda: d.saw("partition done"), "a finished partition")

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(base + path, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    assert get("/healthz") == (200, "ok\n")
    code, body = get("/readyz")
    assert code == 200 and json.loads(body)["ready"] is True
    d.wait_for(lambda: "gio_downloader_freshness_seconds{" in get("/metrics")[1], "freshness")
    code, metrics = get("/metrics")
    assert code == 200
    assert 'gio_downloader_partitions{ai="daemon01"' in metrics
    assert "gio_downloader_bytes_downloaded_total" in metrics
    assert 'gio_downloader_api_calls_total{source="raw",status="FINISHED"}' in metrics
    assert d.stop() == 0


def test_notify_protocol_ready_watchdog_stopping(tmp_path: Path, start_sim,
                                                 daemons: list[Daemon]) -> None:
    sim = start_sim(clock=sim_clock(), parts_per_type=1, retention_days=2)
    cfg = daemon_config(tmp_path, sim.url)
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(30)
    try:
        d = Daemon(cfg, NOTIFY_SOCKET=str(sock_path), WATCHDOG_USEC="200000")
        daemons.append(d)
        messages: list[str] = []
        while not any("WATCHDOG=1" in m for m in messages):
            messages.append(sock.recv(4096).decode())
        assert "READY=1" in messages[0]
        d.proc.send_signal(signal.SIGTERM)
        while not any("STOPPING=1" in m for m in messages):
            messages.append(sock.recv(4096).decode())
        assert d.stop() == 0
    finally:
        sock.close()


def test_demo_end_to_end(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "downloader", "demo", "--dir",
                             str(tmp_path / "demo"), "--hours", "2"], capture_output=True,
                            text=True, timeout=120, cwd=REPO, env=cli_env())
    assert result.returncode == 0, result.stderr
    lake = tmp_path / "demo" / "lake"
    parts = list(lake.glob("ai=*/**/part-*.csv.gz"))
    assert len(parts) == 2 * 3 * 2
    assert len(list(lake.glob("ai=*/**/_SUCCESS"))) == 6
    # A dashboard's charts (yesterday), the segment's users (today), its CDP export (today).
    charts = list(lake.glob("reports/project_uid=demoPj01/report=chart/id=*/date=*/data.csv"))
    assert charts and all((c.parent / "_SUCCESS").exists() for c in charts)
    assert list(lake.glob("reports/*/report=segment_users/id=demoSg01/date=*/_SUCCESS"))
    assert list(lake.glob("cdp/export=segment_users/id=demoSg01/date=*/part-00000.*"))
    # Results on stdout, what it is doing on stderr.
    assert "zcat" in result.stdout and "read_csv" in result.stdout
    assert "newest hour complete for every type" in result.stdout
    assert "simulators stopped" in result.stderr and "zcat" not in result.stderr
    assert os.path.exists(tmp_path / "demo" / "config.yaml")
