"""Deterministic content for the statistics simulator: report results, user lists, rules, lists.

Every byte depends only on the seed and the names of what is asked (project, kind, item id,
Beijing day, chart interval, user variables, part index), never on when or how often it is asked,
so tests can compare stored files byte for byte with the functions here.

Result cells deliberately include what a CSV conversion gets wrong: commas, quotes, CR, LF,
backslashes, non-ASCII text, empty strings, nulls, booleans, nested objects, floats.
Shapes follow growingio-api.md §4/§5 (v1 chart, funnel and retention bodies; the frequency body
is not documented, so it gets the same `meta` + `data` layout).
"""

from __future__ import annotations

import csv
import io
import json
import random
import string
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from downloader.core.constants import BEIJING

# V3 path words (growingio-api.md §4).
WINDOWED_KINDS: tuple[str, ...] = ("charts", "funnels", "retentions", "frequencies")
USER_KINDS: tuple[str, ...] = ("segmentations", "tags")
# v1 dashboard entries name the V3 endpoint through `resource_type` (§5, old docs).
RESOURCE_TYPES: tuple[str, ...] = ("chart", "funnel", "retention")
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
_ID_ALPHABET = string.ascii_letters + string.digits

# Text cells that break naive CSV writers, plus ordinary ones so rows look real.
TRICKY_TEXT: tuple[str, ...] = (
    "北京, 朝阳区",
    'say "hi"',
    "line1\nline2",
    "carriage\rreturn",
    "crlf\r\nend",
    "C:\\temp\\new",
    "Ünïcödé ✓ 😀",
    "",
    " padded ",
    "上海",
    "plain",
)


@dataclass(frozen=True)
class DashboardChart:
    id: str
    name: str
    resource_type: str


@dataclass(frozen=True)
class Dashboard:
    id: str
    name: str
    charts: tuple[DashboardChart, ...]


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON with non-ASCII kept, as the simulator serves all JSON."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _rng(seed: int, *parts: object) -> random.Random:
    # A str seed goes through SHA-512 in random.seed: stable across runs and PYTHONHASHSEED.
    return random.Random("|".join(map(str, (seed, *parts))))


def seeded_int(seed: int, upto: int, *parts: object) -> int:
    """An integer in 0..upto that depends only on the inputs."""
    return _rng(seed, "int", *parts).randint(0, upto) if upto > 0 else 0


def derived_id(seed: int, *parts: object) -> str:
    """A HashId (8 letters or digits) that depends only on the inputs."""
    rng = _rng(seed, "id", *parts)
    return "".join(rng.choice(_ID_ALPHABET) for _ in range(8))


def day_start_ms(day: date) -> int:
    """Epoch ms of the day's 00:00 in Beijing time."""
    return int(datetime.combine(day, time(), BEIJING).timestamp()) * 1000


# -- windowed results -----------------------------------------------------------------------------

# Per kind: (column name, "dimension" | "metric", cell type). Cell types drive _cell below.
_COLUMNS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "charts": (
        ("目标用户", "dimension", "who"),
        ("时间", "dimension", "time"),
        ("城市", "dimension", "text"),
        ("新用户", "dimension", "flag"),
        ("属性", "dimension", "nested"),
        ("访问量", "metric", "int"),
        ("人均访问, 次", "metric", "float"),
    ),
    "funnels": (
        ("目标用户", "dimension", "who"),
        ("时间", "dimension", "time"),
        ("总体转化率", "metric", "float"),
        ("第1步 用户数", "metric", "int"),
        ("第1步 转化率", "metric", "float"),
        ("第2步 用户数", "metric", "int"),
        ('第2步 "转化率"', "metric", "float"),
    ),
    "retentions": (
        ("目标用户", "dimension", "who"),
        ("对比值", "dimension", "text"),
        ("行为", "dimension", "nested"),
        ("时间", "dimension", "time"),
        ("留存用户", "metric", "int"),
        ("第0天", "metric", "int"),
        ("第0天 留存率", "metric", "float"),
        ("第1天", "metric", "int"),
        ("第1天 留存率", "metric", "float"),
    ),
    "frequencies": (
        ("目标用户", "dimension", "who"),
        ("区间", "dimension", "text"),
        ("活跃", "dimension", "flag"),
        ("用户数", "metric", "int"),
        ("占比", "metric", "float"),
    ),
}
_TARGET_USERS: tuple[str, ...] = ("全部用户", "新访问用户, 首次")
_EXTRAS: dict[str, dict[str, Any]] = {
    "funnels": {"conversionWindow": 7},
    "retentions": {"range": "day"},
}


def _cell(rng: random.Random, kind: str, who: str, at_ms: int) -> Any:
    if kind == "who":
        return who
    if kind == "time":
        return at_ms
    if kind == "text":
        return rng.choice((*TRICKY_TEXT, None))
    if kind == "flag":
        return rng.choice((True, False, None))
    if kind == "nested":
        return {"名称": rng.choice(TRICKY_TEXT), "值": [rng.randint(0, 9), 2.5, None, True]}
    if kind == "int":
        return rng.choice((rng.randint(0, 100_000), 0, None))
    return rng.choice((round(rng.random(), 4), 1e-07, 0.5))  # "float"


def result_body(
    seed: int,
    uid: str,
    kind: str,
    item_id: str,
    day: date,
    interval_ms: int = DAY_MS,
    *,
    empty: bool = False,
) -> bytes:
    """The finished V3 body of a windowed item for one Beijing day (no `status` key)."""
    if kind not in WINDOWED_KINDS:
        raise ValueError(f"not a windowed kind: {kind}")
    start = day_start_ms(day)
    columns = _COLUMNS[kind]
    step = interval_ms if kind == "charts" else DAY_MS
    rng = _rng(seed, "result", uid, kind, item_id, day.isoformat(), interval_ms)
    rows = [
        [_cell(rng, cell, who, at) for _, _, cell in columns]
        for at in range(start, start + DAY_MS, step)
        for who in _TARGET_USERS
    ]
    body: dict[str, Any] = {
        "id": item_id,
        "name": f"{kind[:-1]} {item_id}",
        "startTime": start,
        "endTime": start + DAY_MS,
        "interval": step,
        **_EXTRAS.get(kind, {}),
        "meta": [{"name": name, role: True} for name, role, _ in columns],
        "data": [] if empty else rows,
    }
    return dumps(body)


# -- user lists, rules ----------------------------------------------------------------------------


def _csv(rows: Sequence[Sequence[object]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode()


def user_part(
    seed: int,
    uid: str,
    kind: str,
    item_id: str,
    day: date,
    index: int,
    parameters: Sequence[str] = (),
    rows: int = 40,
) -> bytes:
    """The CSV bytes behind the index-th download link of a segment or tag user list."""
    if kind not in USER_KINDS:
        raise ValueError(f"not a user-list kind: {kind}")
    rng = _rng(seed, "users", uid, kind, item_id, day.isoformat(), index, ",".join(parameters))
    header = ["登录用户ID", "首次访问时间", *parameters]
    first = datetime.combine(day, time(), BEIJING) - timedelta(days=30)
    body = [
        [
            f"u{index:02d}{n:05d}-{derived_id(seed, uid, item_id, index, n)}",
            (first + timedelta(seconds=rng.randrange(30 * 86400))).strftime("%Y-%m-%d %H:%M:%S"),
            *(rng.choice(TRICKY_TEXT) for _ in parameters),
        ]
        for n in range(rows)
    ]
    return _csv([header, *body])


_RULE_NAMES: tuple[str, ...] = (
    "元素_注册按钮",
    "按钮, 立即购买",
    '链接 "更多"',
    "banner\n第二行",
    "search_box",
)
_RULE_TYPES: tuple[str, ...] = ("clck", "chng", "sbmt", "page")


def rules_csv(seed: int, uid: str, rows: int = 12) -> bytes:
    """`/projects/{uid}/rules.csv`: `ruleId,eventName,eventType` (growingio-api.md §5)."""
    rng = _rng(seed, "rules", uid)
    body = [
        [f"{rng.getrandbits(32):08x}", f"{rng.choice(_RULE_NAMES)}{n}", rng.choice(_RULE_TYPES)]
        for n in range(rows)
    ]
    return _csv([["ruleId", "eventName", "eventType"], *body])


# -- v1 lists -------------------------------------------------------------------------------------


def derived_dashboard(seed: int, uid: str, dashboard_id: str) -> Dashboard:
    """A dashboard holding one chart, one funnel and one retention, ids derived from its id."""
    charts = tuple(
        DashboardChart(derived_id(seed, uid, dashboard_id, rt), f"{rt} {n}", rt)
        for n, rt in enumerate(RESOURCE_TYPES)
    )
    return Dashboard(dashboard_id, f"看板 {dashboard_id}", charts)


def default_dashboards(seed: int, uid: str) -> tuple[Dashboard, ...]:
    return (derived_dashboard(seed, uid, derived_id(seed, uid, "dashboard")),)


def default_segmentations(seed: int, uid: str) -> tuple[str, ...]:
    return tuple(derived_id(seed, uid, "segmentation", n) for n in range(2))


def dashboards_body(dashboards: Sequence[Dashboard]) -> bytes:
    """`dashboards.json`: a list of dashboard summaries (§5)."""
    return dumps(
        [
            {
                "id": d.id,
                "name": d.name,
                "type": "normal",
                "createdAt": "2019-01-01",
                "updatedAt": "2019-02-01",
                "scope": "project",
                "updater": "模拟器",
                "creator": "模拟器",
            }
            for d in dashboards
        ]
    )


def dashboard_body(dashboard: Dashboard) -> bytes:
    """`dashboards/{id}.json`: the dashboard and its charts, with `resource_type` (§5)."""
    charts = [
        {
            "id": c.id,
            "name": c.name,
            "createor": "模拟器",  # sic, the vendor's spelling
            "createdAt": "2019-01-01",
            "resource_type": c.resource_type,
        }
        for c in dashboard.charts
    ]
    return dumps({"id": dashboard.id, "name": dashboard.name, "charts": charts})


def segmentations_body(ids: Sequence[str]) -> bytes:
    """`segmentations.json`: a list of segment summaries (§5)."""
    return dumps(
        [
            {
                "id": i,
                "name": f"分群 {i}",
                "userType": "u",
                "userNum": 1230 + n,
                "updatedAt": "2016-08-03",
            }
            for n, i in enumerate(ids)
        ]
    )
