"""Sharding without a coordinator: the ownership function, the index defaults, the config, and
the engine's plan filter over every source (no network: planning only)."""

from __future__ import annotations

import socket
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from downloader.config.load import parse_config
from downloader.config.model import Config, ConfigError
from downloader.core.constants import BEIJING
from downloader.core.model import DoneSet
from downloader.core.partitions import window
from downloader.core.sharding import (
    Shard,
    index_from_environment,
    parse_shard,
    shard_of,
)
from downloader.engine.scheduler import plan_all
from downloader.engine.sharding import owner_of
from downloader.service.plan import build_plan, format_plan
from downloader.service.sources import planning_sources

# Pinned: the function decides which instance downloads what. Changing it (another hash,
# separator or byte order) moves items between running instances, whose checkpoints then
# no longer match: it must never change silently.
OWNERSHIP_TABLE = [
    # source, unit, shard for N = 1, 2, 3, 5
    ("raw", "testai01", (0, 1, 1, 2)),
    ("raw", "testai02", (0, 1, 2, 1)),
    ("raw", "a1b2c3d4", (0, 0, 1, 2)),
    ("reports", "nxog09md/chart/YoX28w7R", (0, 1, 0, 3)),
    ("reports", "nxog09md/rules", (0, 0, 1, 0)),
    ("cdp", "tag_users/tag_vip", (0, 0, 0, 2)),
    ("cdp", "segment_users/seg00001", (0, 1, 0, 0)),
]


@pytest.mark.parametrize(("source", "unit", "expected"), OWNERSHIP_TABLE)
def test_ownership_table(source: str, unit: str, expected: tuple[int, ...]) -> None:
    assert tuple(shard_of(source, unit, n) for n in (1, 2, 3, 5)) == expected
    for n, index in zip((1, 2, 3, 5), expected, strict=True):
        owners = [i for i in range(n) if Shard(n, i).owns(source, unit)]
        assert owners == [index], "exactly one instance owns each unit"


def test_source_name_is_part_of_the_hash() -> None:
    # The same string under two sources is two units: they need not land together.
    assert any(shard_of("raw", f"x{i}", 7) != shard_of("cdp", f"x{i}", 7) for i in range(20))


def test_units_spread_over_the_shards() -> None:
    counts = Counter(shard_of("raw", f"proj{i:04d}", 3) for i in range(300))
    assert set(counts) == {0, 1, 2} and min(counts.values()) > 60


@pytest.mark.parametrize(("env", "hostname", "expected"), [
    ({"JOB_COMPLETION_INDEX": "2"}, "backfill-2-xk7qz", 2),  # Indexed Job pod
    ({"JOB_COMPLETION_INDEX": "0"}, "gio-downloader-4", 0),  # the Job's index wins
    ({}, "gio-downloader-3", 3),                             # StatefulSet pod
    ({}, "gio-downloader-12.gio.default.svc", 12),           # a FQDN: the first label
    ({"JOB_COMPLETION_INDEX": ""}, "gio-downloader-1", 1),   # empty: not set
    ({"JOB_COMPLETION_INDEX": "x"}, "web-7", 7),
    ({}, "laptop", None),
    ({}, "gio-downloader-x", None),
])
def test_index_from_environment(env: dict[str, str], hostname: str,
                                expected: int | None) -> None:
    assert index_from_environment(env, hostname) == expected


@pytest.mark.parametrize(("text", "expected"), [("0/3", (0, 3)), ("2/3", (2, 3)),
                                                 ("0/1", (0, 1))])
def test_parse_shard(text: str, expected: tuple[int, int]) -> None:
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["3/3", "1", "a/3", "1/0", "-1/3", ""])
def test_parse_shard_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="--shard"):
        parse_shard(text)


CONFIG = """\
api: {token: t, rate_limit_per_second: 2}
projects:
  - {ai: testai01, data_types: [visit, page], export_types: [hour, day]}
  - {ai: testai02, data_types: [visit], export_types: [hour]}
  - {ai: testai03, data_types: [visit], export_types: [day]}
  - {ai: testai04, data_types: [page], export_types: [day]}
reports:
  - {project_uid: nxog09md, charts: [YoX28w7R, chart002, chart003], funnels: [funnel01],
     tags: [tag00001], rules: true}
cdp:
  base_url: https://cdp.example
  api_key: k
  exports:
    - {segment_users: {project_id: prj00001, segment_id: seg00001}}
    - {segment_users: {project_id: prj00001, segment_id: seg00002}}
    - {tag_users: {tag_id: tagvip01}}
storage: {url: /tmp/gio-shard-test/data}
checkpoint: /tmp/gio-shard-test/checkpoint.db
"""


def config(sharding: str = "", shard: tuple[int, int] | None = None) -> Config:
    return parse_config(CONFIG + sharding, Path("c.yaml"), shard)


def test_config_default_is_one_instance_with_the_whole_budget() -> None:
    cfg = config()
    assert cfg.sharding == Shard(1, 0, 1.0)
    assert cfg.instance_rate_per_second == 2


def test_config_budget_is_split_unless_rate_share_says_otherwise() -> None:
    cfg = config("sharding: {count: 4, index: 3}\n")
    assert (cfg.sharding.count, cfg.sharding.index) == (4, 3)
    assert cfg.instance_rate_per_second == pytest.approx(0.5)
    cfg = config("sharding: {count: 4, index: 1, rate_share: 0.5}\n")
    assert cfg.instance_rate_per_second == pytest.approx(1.0)


def test_config_index_from_job_completion_index(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    assert config("sharding: {count: 3}\n").sharding.index == 1


def test_config_index_from_statefulset_hostname(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    monkeypatch.setattr(socket, "gethostname", lambda: "gio-downloader-2")
    assert config("sharding: {count: 3}\n").sharding.index == 2


def test_config_index_from_an_expanded_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_INDEX", "2")
    assert config("sharding: {count: 3, index: '${MY_INDEX}'}\n").sharding.index == 2


def test_config_without_any_index_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    monkeypatch.setattr(socket, "gethostname", lambda: "laptop")
    with pytest.raises(ConfigError) as err:
        config("sharding: {count: 3}\n")
    message = str(err.value)
    assert "\n" not in message and "sharding.index" in message
    assert "JOB_COMPLETION_INDEX" in message and "0..2" in message
    # One instance needs no index, and --shard supplies one.
    assert config("sharding: {count: 1}\n").sharding.index == 0
    assert config("sharding: {count: 3}\n", shard=(1, 3)).sharding.index == 1


@pytest.mark.parametrize(("text", "needle"), [
    ("sharding: {count: 3, index: 3}\n", "sharding.index: 3 is not below"),
    ("sharding: {count: 0}\n", "sharding.count: must be between"),
    ("sharding: {count: 2, index: 0, rate_share: 0}\n", "sharding.rate_share: must be"),
    ("sharding: {count: 2, index: 0, rate_share: 1.5}\n", "sharding.rate_share: must be"),
    ("sharding: {count: 2, index: 0, shards: 1}\n", "sharding.shards: unknown key"),
])
def test_config_sharding_mistakes(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        config(text)


NOW = datetime(2026, 3, 10, 12, 30, tzinfo=BEIJING)


def test_every_partition_of_every_source_has_exactly_one_owner() -> None:
    """Planning every source (raw, reports, cdp) as 3 instances: the union of their jobs is
    the whole plan, no job is in two, and a raw job stays whole (one project's call)."""
    whole = config()
    first, last = window(NOW, whole.lags)
    full = plan_all(planning_sources(whole), first, last, NOW, DoneSet({}))
    everything = {(j.source, j.slot): j for p in full.values() for j in p.jobs}
    assert {name for name, p in full.items() if p.jobs} == {"raw", "reports", "cdp"}
    seen: dict[tuple[str, str], int] = {}
    for index in range(3):
        cfg = config("sharding: {count: 3}\n", shard=(index, 3))
        sources = planning_sources(cfg)
        plans = plan_all(sources, first, last, NOW, DoneSet({}), cfg.sharding)
        for name, plan in plans.items():
            source = next(s for s in sources if s.name == name)
            for job in plan.jobs:
                assert (job.source, job.slot) not in seen, f"{job} planned by two shards"
                seen[(job.source, job.slot)] = index
                assert len({owner_of(source, k) for k in job.keys}) == 1
    assert seen.keys() == everything.keys()
    assert set(seen.values()) == {0, 1, 2}, "every shard got work"
    # Raw jobs follow their project: testai01 is shard 1's in the table above.
    assert {seen[k] for k in seen if k[0] == "raw" and "testai01" in k[1]} == {1}


def test_plan_command_report_lists_owned_partitions_with_due_times() -> None:
    cfg = config("sharding: {count: 3}\n", shard=(1, 3))
    report = build_plan(cfg, planning_sources(cfg), NOW, DoneSet({}), checkpoint_found=False)
    assert report["shard"] == {"index": 1, "count": 3}
    assert report["owned"]["raw"] == ["testai01"]
    assert report["others"]["raw"] == 3
    assert report["instance_rate_per_second"] == pytest.approx(2 / 3, abs=1e-3)
    parts = report["partitions"]
    assert parts and all(p["source"] != "raw" or p["item"].startswith("testai01/")
                         for p in parts)
    assert any(p["due_now"] for p in parts) and any(not p["due_now"] for p in parts)
    assert all(datetime.fromisoformat(p["due"]) > NOW for p in parts if not p["due_now"])
    text = format_plan(report)
    assert text.startswith("shard 1/3") and "raw: owns 1 of 4 items: testai01" in text


async def test_a_sharded_sweep_leaves_other_instances_temporary_files(tmp_path: Path) -> None:
    """On a shared local root, the start-up sweep of one instance removes only leftovers in
    the folders it owns; another instance's file being written stays."""
    from downloader.storage.base import temp_name
    from downloader.storage.local import LocalStorage

    mine, theirs = "ai=a/data_type=page/x", "ai=b/data_type=page/x"
    for folder in (mine, theirs):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / temp_name("part-00000.csv.gz")).write_bytes(b"x")
    storage = LocalStorage(tmp_path, threads=1)
    try:
        assert await storage.sweep(set(), roots=["ai="], only={mine}) == 1
    finally:
        await storage.close()
    assert not (tmp_path / mine / temp_name("part-00000.csv.gz")).exists()
    assert (tmp_path / theirs / temp_name("part-00000.csv.gz")).exists()
