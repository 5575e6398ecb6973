"""Shared fixtures: a real simulator on loopback, configs pointing at it, and CLI runners."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from downloader.core.constants import BEIJING
from downloader.sim.raw.app import Simulator, start_simulator
from downloader.sim.raw.faults import SimConfig

TOKEN = "test-token-5f1d2c9a8b7e"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def part_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sim-cache")


class SimHandle:
    def __init__(self, running: Any) -> None:
        self.running = running
        self.url: str = running.url
        self.sim: Simulator = running.sim

    @property
    def stats(self) -> Any:
        return self.sim.stats

    @property
    def faults(self) -> Any:
        return self.sim.config.faults


@pytest.fixture
def start_sim(part_cache: Path) -> Iterator[Any]:
    started: list[Any] = []

    def start(**overrides: Any) -> SimHandle:
        overrides.setdefault("token", TOKEN)
        overrides.setdefault("cache_dir", part_cache)
        overrides.setdefault("part_size", 48 * 1024)
        overrides.setdefault("running_polls", 0)
        running = start_simulator(SimConfig(**overrides))
        started.append(running)
        return SimHandle(running)

    yield start
    for running in started:
        running.stop()


def beijing_now() -> datetime:
    return datetime.now(BEIJING)


def hour_label(moment: datetime) -> str:
    return moment.astimezone(BEIJING).strftime("%Y%m%d%H")


def past_days(days_ago: int) -> datetime:
    """Midnight (Beijing) ``days_ago`` days before today."""
    today = beijing_now().replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days_ago)


PAGE_ONLY = [{"ai": "testai01", "data_types": ["page"], "export_types": ["hour"]}]


def past_hours(count: int, day: int = 2, start: int = 4) -> list[str]:
    """``count`` consecutive hour labels from ``start`` o'clock ``day`` days ago."""
    base = past_days(day) + timedelta(hours=start)
    return [hour_label(base + timedelta(hours=i)) for i in range(count)]


def backfill_args(cfg: Path, labels: list[str]) -> tuple[str, ...]:
    return ("backfill", "-c", str(cfg), "--from", labels[0], "--to", labels[-1])


def write_config(tmp_path: Path, sim_url: str, **sections: Any) -> Path:
    """A config file for the simulator; keyword arguments replace or extend sections."""
    cfg: dict[str, Any] = {
        "api": {"base_url": sim_url, "token": "${GIO_TEST_TOKEN}", "client_id": "test-client",
                "rate_limit_per_second": 50, "link_expire_minutes": 5},
        "projects": [{"ai": "testai01", "data_types": ["visit", "page", "custom_event"],
                      "export_types": ["hour"]}],
        "storage": {"url": (tmp_path / "data").as_uri()},
        "checkpoint": str(tmp_path / "state" / "checkpoint.db"),
        "concurrency": {"downloads": 4, "partitions": 4},
        "retry": {"initial_backoff_seconds": 0.05, "max_backoff_seconds": 0.5,
                  "max_attempts": 8},
        "schedule": {"running_poll_max_seconds": 0.1},
        "log": {"format": "json", "level": "debug"},
    }
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(name), dict):
            cfg[name] = {**cfg[name], **value}
        else:
            cfg[name] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIO_")}
    env["GIO_TEST_TOKEN"] = TOKEN
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run_cli(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "downloader", *args], capture_output=True,
                          text=True, timeout=timeout, env=cli_env(**env), cwd=REPO)


def start_cli(*args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "downloader", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env(**env), cwd=REPO)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def partition_folder(root: Path, ai: str, data_type: str, export_type: str,
                     label: str) -> Path:
    date = f"{label[:4]}-{label[4:6]}-{label[6:8]}"
    folder = root / f"ai={ai}" / f"data_type={data_type}" / f"export_type={export_type}" / \
        f"date={date}"
    if export_type == "hour":
        folder = folder / f"hour={label[8:10]}"
    return folder


def assert_partition_exact(sim: Simulator, root: Path, ai: str, data_type: str,
                           export_type: str, label: str) -> int:
    """Every part byte-exact against the simulator, a correct _SUCCESS, nothing else there.
    Returns the number of parts."""
    import json

    folder = partition_folder(root, ai, data_type, export_type, label)
    expected = sim.expected_parts(ai, export_type, data_type, label)
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted([f"part-{e.index:05d}.csv.gz" for e in expected] + ["_SUCCESS"]), \
        f"{folder}: {names}"
    for e in expected:
        got = folder / f"part-{e.index:05d}.csv.gz"
        assert got.stat().st_size == e.size
        assert sha256_file(got) == e.sha256, f"{got} differs from the simulator's part"
    manifest = json.loads((folder / "_SUCCESS").read_text())
    assert manifest["export_date"] == label
    assert [(p["name"], p["bytes"], p["sha256"]) for p in manifest["parts"]] == \
        [(f"part-{e.index:05d}.csv.gz", e.size, e.sha256) for e in expected]
    return len(expected)


@pytest.fixture
def start_cdp_sim() -> Iterator[Any]:
    """A CDP platform simulator on loopback (``downloader.sim.cdp``); keyword arguments are
    ``CdpSimConfig`` fields. Returns the running simulator (``.url``, ``.sim``)."""
    from downloader.sim.cdp.app import CdpSimConfig, start_cdp_simulator

    started: list[Any] = []

    def start(**overrides: Any) -> Any:
        running = start_cdp_simulator(CdpSimConfig(**overrides))
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()
