"""The simulator's part content: documented columns, RFC 4180 CSV, sizes, caching."""

from __future__ import annotations

import gzip
import json
import logging
import re
import time
from pathlib import Path

import pytest
from simclient import AI, HOUR, SMALL_PART, read_rows

from downloader.sim.raw.app import Simulator
from downloader.sim.raw.faults import SimConfig
from downloader.sim.raw.schema import ALL_DATA_TYPES, COLUMNS, parse_partition

log = logging.getLogger(__name__)


# -- part content -------------------------------------------------------------------------------


@pytest.mark.parametrize("data_type", ALL_DATA_TYPES)
@pytest.mark.parametrize("export_type", ["hour", "day"])
def test_part_content_is_documented_csv(tmp_path: Path, data_type: str, export_type: str):
    sim = Simulator(SimConfig(part_size=SMALL_PART, cache_dir=tmp_path))
    date = HOUR if export_type == "hour" else HOUR[:8]
    partition = parse_partition(export_type, date)
    assert partition is not None
    lo, hi = partition.start.timestamp() * 1000, partition.end.timestamp() * 1000
    parts = sim.expected_parts(AI, export_type, data_type, date)
    assert [p.index for p in parts] == [0, 1]
    for part in parts:
        header, *rows = read_rows(part.path.read_bytes())
        assert tuple(header) == COLUMNS[data_type]
        assert rows and all(len(row) == len(header) for row in rows)
        for name in ("time", "sendTime", "eventTime"):
            if name in header:
                i = header.index(name)
                assert all(lo <= int(row[i]) < hi for row in rows)


def test_columns_match_documented_counts():
    counts = {"visit": 29, "page": 36, "action": 13, "action_tag": 3, "custom_event": 13,
              "ads_track_activation": 18, "ads_track_click": 18, "pvar": 9, "evar": 6,
              "vstr": 5}  # fmt: skip
    assert {t: len(c) for t, c in COLUMNS.items()} == counts
    assert tuple(COLUMNS) == ALL_DATA_TYPES


def _rfc4180(rows: list[list[str]]) -> str:
    """The text RFC 4180 quoting gives these rows (written independently of the simulator)."""

    def field(v: str) -> str:
        return '"' + v.replace('"', '""') + '"' if re.search(r'[",\\\r\n]', v) else v

    return "".join(",".join(field(v) for v in row) + "\n" for row in rows)


@pytest.mark.parametrize("data_type", ["page", "custom_event"])
def test_values_round_trip_as_rfc4180(tmp_path: Path, data_type: str):
    sim = Simulator(SimConfig(part_size=SMALL_PART, cache_dir=tmp_path))
    data = sim.expected_parts(AI, "hour", data_type, HOUR)[0].path.read_bytes()
    text = gzip.decompress(data).decode()
    rows = read_rows(data)  # Python's csv module, default (RFC 4180) dialect
    assert _rfc4180(rows) == text  # every special field quoted, quotes doubled, nothing else
    fields = {f for row in rows[1:] for f in row}
    specials = ['"', ",", "\\"] + (["\r\n"] if data_type == "page" else [])  # page: titles
    assert all(any(c in f for f in fields) for c in specials)
    map_column = "appVariable" if data_type == "page" else "eventVariable"
    maps = [json.loads(v) for row in rows[1:] if (v := row[COLUMNS[data_type].index(map_column)])]
    assert maps and all(isinstance(m, dict) for m in maps)
    values = {v for m in maps for v in m.values()}
    assert {'say "hi"', "A,B", "北京", "D:\\docs"} <= values


def test_duckdb_reads_the_same_values(tmp_path: Path):
    duckdb = pytest.importorskip(
        "duckdb", reason="duckdb is not installed in this venv; Python's csv half still runs"
    )
    sim = Simulator(SimConfig(part_size=SMALL_PART, cache_dir=tmp_path))
    part = sim.expected_parts(AI, "hour", "page", HOUR)[0]
    header, *rows = read_rows(part.path.read_bytes())
    got = duckdb.sql(
        f"SELECT * FROM read_csv('{part.path}', header=true, all_varchar=true, quote='\"', "
        "escape='\"', delim=',')"
    ).fetchall()
    assert [[v or "" for v in row] for row in got] == rows


def test_part_sizes(tmp_path: Path):
    sim = Simulator(SimConfig(part_size=SMALL_PART, parts_per_type=3, cache_dir=tmp_path))
    for data_type in ("page", "action_tag"):
        first, middle, last = sim.expected_parts(AI, "hour", data_type, HOUR)
        for part in (first, middle):
            assert abs(part.size - SMALL_PART) <= SMALL_PART * 0.05
        assert SMALL_PART / 3 - 1024 <= last.size <= SMALL_PART


def test_content_is_deterministic(tmp_path: Path):
    def shas(seed: int, cache: str) -> list[str]:
        sim = Simulator(SimConfig(part_size=SMALL_PART, seed=seed, cache_dir=tmp_path / cache))
        return [p.sha256 for p in sim.expected_parts(AI, "hour", "visit", HOUR)]

    first = shas(0, "a")
    assert shas(0, "b") == first
    assert (tmp_path / "a").is_dir() and (tmp_path / "b").is_dir()  # two separate caches
    assert shas(1, "c") != first
    assert len(set(first)) == 2  # the two parts differ


def test_cached_part_is_reused(tmp_path: Path):
    config = SimConfig(part_size=SMALL_PART, cache_dir=tmp_path)
    part = Simulator(config).expected_parts(AI, "hour", "evar", HOUR)[0]
    mtime = part.path.stat().st_mtime_ns
    again = Simulator(config).expected_parts(AI, "hour", "evar", HOUR)[0]
    assert again == part and again.path.stat().st_mtime_ns == mtime
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".")]  # no temp leftovers


@pytest.mark.timeout(60)
def test_64mb_part(tmp_path: Path):
    size = 64 * 1024 * 1024
    sim = Simulator(SimConfig(part_size=size, cache_dir=tmp_path))
    began = time.perf_counter()
    part = sim.part(AI, "hour", "page", HOUR, 0)
    log.info("generated a %d-byte part in %.2f s", part.size, time.perf_counter() - began)
    assert abs(part.size - size) <= size * 0.01
    with gzip.open(part.path, "rb") as f:
        assert f.readline().decode().rstrip("\n").split(",") == list(COLUMNS["page"])
        while f.read(8 * 1024 * 1024):  # reads every member; a bad CRC or length would raise
            pass
