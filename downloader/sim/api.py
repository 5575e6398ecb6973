"""The `/v2/insights` answers' vocabulary: due times, parameter checks, JSON bodies (§2.2–§2.9).

Plain functions over explicit inputs; the handler in `raw` strings them together.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from downloader.sim.faults import SimConfig
from downloader.sim.schema import COLUMNS, EXPORT_TYPES, Partition

# §2.2: `expire` is in minutes, default 5, at most 7 days.
DEFAULT_EXPIRE_MINUTES = 5
MAX_EXPIRE_MINUTES = 7 * 24 * 60
# §2.6 (new docs): hours starting 23:00, 00:00 and 01:00 take the longer night lag.
NIGHT_HOURS = frozenset({23, 0, 1})
# Error texts; the first is the vendor's wording for bad parameters, the second for failed jobs.
BAD_PARAM_MSG = "请求参数不合法，"
EXPORT_FAILED_MSG = "下载出错，请您稍后重试"
# §1.6: the only documented auth-error body (from rules.csv); reused for /v2/insights.
UNAUTHORIZED_BODY = {"message": "Unauthorized", "errors": []}
# Rate-limit window (§2.9: "at most 2 calls per second").
RATE_WINDOW_SECONDS = 1.0


def ready_at(partition: Partition, config: SimConfig) -> datetime:
    """When the vendor would have finished exporting `partition` (§2.6)."""
    if partition.export_type == "hour":
        night = partition.start.hour in NIGHT_HOURS
        lag = config.night_hour_lag_minutes if night else config.hour_lag_minutes
        return partition.end + timedelta(minutes=lag)
    return partition.end + timedelta(minutes=config.day_lag_minutes)


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(body, status=status, headers=headers, dumps=dumps)


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def too_many(retry_after: float) -> web.Response:
    # §2.9 documents no over-limit response; an HTTP 429 with Retry-After (seconds, "%g" so a
    # fractional test value stays readable) is the common convention.
    body = {"message": "Too Many Requests", "errors": []}
    return json_response(body, 429, {"Retry-After": f"{retry_after:g}"})


def bad_param(
    export_type: str,
    data_type: str | None,
    ai: str,
    raw_date: str,
    partition: Partition | None,
    expire: str,
) -> str | None:
    """The first request value that is not valid, or None when all are."""
    if export_type not in EXPORT_TYPES:
        return export_type
    if data_type is not None and data_type not in COLUMNS:
        return data_type
    if not (ai.isascii() and ai.replace("-", "").replace("_", "").isalnum()):
        return ai
    if partition is None:
        return raw_date
    if not (expire.isascii() and expire.isdigit() and 0 < int(expire) <= MAX_EXPIRE_MINUTES):
        return expire
    return None
