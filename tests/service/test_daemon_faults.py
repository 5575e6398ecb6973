"""The daemon under faults (#12.1, #12.2): it never gives up on an export being built inside the
retention window, and it keeps trying an API it cannot reach, saying so in the log and /readyz,
until the API answers. A real subprocess under the accelerated fake clock of test_daemon."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from conftest import TOKEN, assert_partition_exact
from test_daemon import Daemon, daemon_config, daemons, free_port, sim_clock  # noqa: F401

from downloader.sim.raw.app import start_simulator
from downloader.sim.raw.faults import SimConfig

DAY_ONLY = [{"ai": "daemon01", "data_types": ["page", "visit"], "export_types": ["day"]}]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _events(d: Daemon, name: str) -> list[dict[str, Any]]:
    return [e for e in d.events if e.get("event") == name]


def test_daemon_never_gives_up_on_running_exports(tmp_path: Path, start_sim,
                                                  daemons: list[Daemon]) -> None:  # noqa: F811
    sim = start_sim(clock=sim_clock(), running_polls=12, parts_per_type=1, retention_days=2)
    cfg = daemon_config(tmp_path, sim.url, projects=DAY_ONLY,
                        retry={"not_ready_grace_minutes": 0, "max_attempts": 2,
                               "initial_backoff_seconds": 0.05, "max_backoff_seconds": 0.5},
                        schedule={"retention_days": 2, "running_poll_max_seconds": 0.05})
    d = Daemon(cfg)
    daemons.append(d)
    folder = tmp_path / "data/ai=daemon01/data_type=visit/export_type=day/date=2026-11-19"
    d.wait_for(lambda: (folder / "_SUCCESS").exists(), "yesterday after 12 RUNNING answers",
               timeout=20)
    assert d.stop() == 0, d.stderr()
    for t in ("page", "visit"):
        assert_partition_exact(sim.sim, tmp_path / "data", "daemon01", t, "day", "20261119")
    running = [c for c in sim.stats.api_calls if c.status == "RUNNING"]
    assert len(running) >= 12
    assert not _events(d, "partition failed"), _events(d, "partition failed")
    assert not _events(d, "partition still being built; run again later")


def test_daemon_keeps_trying_an_unreachable_api_until_it_answers(
        tmp_path: Path, part_cache: Path, daemons: list[Daemon]) -> None:  # noqa: F811
    port, health = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    cfg = daemon_config(tmp_path, url, projects=DAY_ONLY,
                        health={"listen": f"127.0.0.1:{health}"},
                        retry={"max_attempts": 40, "initial_backoff_seconds": 0.05,
                               "max_backoff_seconds": 0.3})
    d = Daemon(cfg)
    daemons.append(d)
    d.wait_for(lambda: len(_events(d, "API not reachable")) >= 3, "several tries", timeout=20)
    assert d.proc.poll() is None, "the daemon does not give up"
    warned = _events(d, "API not reachable")
    assert all(e["level"] == "warning" and f"127.0.0.1:{port}" in e["reason"]
               and "connection refused" in e["reason"] for e in warned), warned[:2]
    code, body = _get(f"http://127.0.0.1:{health}/readyz")
    assert code == 503, body
    (api,) = [c for c in json.loads(body)["checks"] if c["name"] == "api"]
    assert not api["ok"] and "connection refused" in api["detail"], api

    running = start_simulator(SimConfig(token=TOKEN, cache_dir=part_cache, clock=sim_clock(),
                                        running_polls=0, parts_per_type=1, retention_days=2,
                                        part_size=32 * 1024), port=port)
    try:
        folder = tmp_path / "data/ai=daemon01/data_type=page/export_type=day/date=2026-11-19"
        d.wait_for(lambda: (folder / "_SUCCESS").exists(), "the API answering at last")
        d.wait_for(lambda: _get(f"http://127.0.0.1:{health}/readyz")[0] == 200, "ready")
        assert d.stop() == 0, d.stderr()
        assert "Traceback" not in d.stderr()
        assert_partition_exact(running.sim, tmp_path / "data", "daemon01", "page", "day",
                               "20261119")
    finally:
        running.stop()


def test_daemon_keeps_trying_an_unreachable_api_past_max_attempts(
        tmp_path: Path, daemons: list[Daemon]) -> None:  # noqa: F811
    cfg = daemon_config(tmp_path, f"http://127.0.0.1:{free_port()}", projects=[
        {"ai": "daemon01", "data_types": ["page"], "export_types": ["day"]}],
        retry={"max_attempts": 4, "initial_backoff_seconds": 0.05, "max_backoff_seconds": 0.1})
    d = Daemon(cfg)
    daemons.append(d)
    d.wait_for(lambda: len(_events(d, "API not reachable")) >= 7, "seven tries")
    tries = _events(d, "API not reachable")
    # Each try counted once, and more tries than retry.max_attempts: the daemon never gives
    # up on a host that does not answer (issue #12: it keeps retrying with capped backoff).
    assert [e.get("attempt") for e in tries[:7]] == list(range(1, 8))
    assert _events(d, "partition failed") == []
