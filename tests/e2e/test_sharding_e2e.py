"""Scale-out end to end: three instances of the real CLI, one config, one storage root, one
simulator, running at the same time as a Kubernetes Indexed Job runs them. Together they must
land exactly the store one instance would, with no partition asked for or downloaded twice,
and each within its share of the token's rate budget."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from datetime import timedelta
from pathlib import Path

from conftest import (
    assert_partition_exact,
    hour_label,
    partition_folder,
    past_days,
    run_cli,
    start_cli,
    write_config,
)

from downloader.core.sharding import shard_of
from downloader.sim.raw.records import SimStats

N = 3
BUDGET = 6.0  # the token's calls per second, shared by the N instances: 2/s each
PROJECTS = [f"testai0{i}" for i in range(1, 7)]  # shards 1, 2, 0, 0, 2, 0
TYPES = ["visit", "page"]
HOURS = 4


def shard_config(tmp_path: Path, sim_url: str, index: int) -> Path:
    """Instance ``index``'s config: the shared file, but its own checkpoint (own volume)."""
    home = tmp_path / f"shard-{index}"
    home.mkdir()
    path = write_config(
        home, sim_url,
        api={"rate_limit_per_second": BUDGET},
        projects=[{"ai": ai, "data_types": TYPES, "export_types": ["hour"]}
                  for ai in PROJECTS],
        storage={"url": (tmp_path / "lake").as_uri()},  # one storage root for all
        sharding={"count": N},  # the index comes from JOB_COMPLETION_INDEX
    )
    return path


def test_three_shards_land_the_whole_store_once_each_within_its_budget(
        tmp_path: Path, start_sim) -> None:
    assert {shard_of("raw", ai, N) for ai in PROJECTS} == set(range(N))
    sim = start_sim(parts_per_type=2)
    first = past_days(2) + timedelta(hours=5)
    labels = [hour_label(first + timedelta(hours=h)) for h in range(HOURS)]
    configs = [shard_config(tmp_path, sim.url, i) for i in range(N)]

    # What each instance says it would do, before anything runs (no API call, nothing written).
    planned: dict[int, set[str]] = {}
    for i, cfg in enumerate(configs):
        out = run_cli("plan", "-c", str(cfg), "--json", JOB_COMPLETION_INDEX=str(i))
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        assert report["shard"] == {"index": i, "count": N}
        assert report["owned"]["raw"] == sorted(a for a in PROJECTS if shard_of("raw", a, N) == i)
        planned[i] = {f"{p['item']}/{p['partition']}" for p in report["partitions"]
                      if p["due_now"] and p["partition"].removeprefix("hour:") in labels}
    assert not sim.stats.api_calls and not (tmp_path / "lake").exists()
    assert not any((tmp_path / f"shard-{i}" / "state").exists() for i in range(N))

    procs = [start_cli("backfill", "-c", str(cfg), "--from", labels[0], "--to", labels[-1],
                       JOB_COMPLETION_INDEX=str(i)) for i, cfg in enumerate(configs)]
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err

    # The union is exactly the full store: every partition byte-exact, nothing else.
    lake = tmp_path / "lake"
    expected = {partition_folder(lake, ai, t, "hour", label)
                for ai in PROJECTS for t in TYPES for label in labels}
    for ai in PROJECTS:
        for t in TYPES:
            for label in labels:
                assert_partition_exact(sim.sim, lake, ai, t, "hour", label)
    assert {p.parent for p in lake.rglob("_SUCCESS")} == expected
    assert not list(lake.rglob(".*")), "temporary files left behind"

    # Nothing asked for or downloaded twice.
    finished = Counter(c.path for c in sim.stats.api_calls if c.status == "FINISHED")
    assert len(finished) == len(PROJECTS) * HOURS and set(finished.values()) == {1}
    fetched = Counter((d.part_key, d.index) for d in sim.stats.downloads
                      if d.status_code == 200)
    assert len(fetched) == len(PROJECTS) * len(TYPES) * HOURS * 2
    assert set(fetched.values()) == {1}, "a part was downloaded twice"

    # Each instance recorded only what it owns, and what `plan` said it would do.
    for i in range(N):
        db = sqlite3.connect(tmp_path / f"shard-{i}" / "state" / "checkpoint.db")
        rows = db.execute("SELECT item, partition, state FROM partitions").fetchall()
        db.close()
        assert {state for *_, state in rows} == {"done"}
        assert {f"{item}/{part}" for item, part, _ in rows} == planned[i]
        assert all(shard_of("raw", item.split("/")[0], N) == i for item, _, _ in rows)

    # Each instance's calls within its share (2/s), hence the token's 6/s all together.
    for i in range(N):
        mine = [c for c in sim.stats.api_calls
                if shard_of("raw", next(a for a in PROJECTS if a in c.path), N) == i]
        assert mine
        assert SimStats(api_calls=mine).max_calls_in_any_window(1.0) <= BUDGET / N
    assert sim.stats.max_calls_in_any_window(1.0) <= BUDGET

    # Done: every instance now plans nothing due in that range.
    again = run_cli("plan", "-c", str(configs[0]), "--shard", f"0/{N}", "--json")
    done_now = json.loads(again.stdout)
    assert done_now["already_done"] == len(planned[0])
    assert not [p for p in done_now["partitions"]
                if p["partition"].removeprefix("hour:") in labels]

    # A lost checkpoint comes back from the shared store with this instance's items only.
    state = tmp_path / "shard-1" / "state" / "checkpoint.db"
    state.unlink()
    rebuilt = run_cli("checkpoint", "rebuild", "-c", str(configs[1]), JOB_COMPLETION_INDEX="1")
    assert rebuilt.returncode == 0, rebuilt.stderr
    others = len(PROJECTS) * len(TYPES) * HOURS - len(planned[1])
    assert f"{others} partitions belong to other shards" in rebuilt.stdout
    db = sqlite3.connect(state)
    items = db.execute("SELECT item, partition FROM partitions WHERE state = 'done'").fetchall()
    db.close()
    assert {f"{item}/{part}" for item, part in items} == planned[1]
