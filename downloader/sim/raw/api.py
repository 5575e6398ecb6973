"""The `/v2/insights` answers' vocabulary: due times, parameter checks, JSON bodies (§2.2–§2.9).

Plain functions over explicit inputs; the handler in `raw` strings them together.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from downloader.sim.raw.faults import Faults, SimConfig
from downloader.sim.raw.schema import ALL_DATA_TYPES, BEIJING, COLUMNS, EXPORT_TYPES, Partition

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


def bend_links(
    body: dict[str, Any], take: Callable[[str], bool], faults: Faults, *, all_types: bool
) -> str:
    """Apply the link knobs to a FINISHED answer; the reason word for the stats.

    `take(name)` consumes one count of a fault counter; at most one knob fires per answer.
    """
    if take("finished_without_links"):
        del body["downloadLinks"]
        return "fault_without_links"
    if take("links_wrong_shape"):
        kind = faults.links_wrong_shape_kind
        body["downloadLinks"] = wrong_shape(body["downloadLinks"], kind)
        return f"fault_links_{kind}"
    if all_types and take("type_missing"):
        del body["downloadLinks"][ALL_DATA_TYPES[0]]  # the first type the request covers
        return "fault_type_missing"
    return "ok"


def wrong_shape(links: list[str] | dict[str, list[str]], kind: str) -> object:
    """`downloadLinks` in a shape the docs do not allow (§2.3: a list, or an object of lists).

    "string": the first link as a bare string ("" when there is none); "object": an object whose
    values are comma-joined strings instead of lists.
    """
    groups = {"0": links} if isinstance(links, list) else links
    if kind == "string":
        return next((group[0] for group in groups.values() if group), "")
    return {name: ",".join(group) for name, group in groups.items()}


def garbage(response: web.Response, kind: str) -> web.Response:
    """A 200 answer mangled on its way, as a broken gateway or proxy would pass it on.

    "html": an HTML error page with status 200; "truncated": the first half of the JSON text;
    "no_status": the JSON object without its `status` key.
    """
    if kind == "html":
        page = (
            "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad "
            "Gateway</h1></center><hr><center>nginx</center></body></html>\n"
        )
        return web.Response(text=page, content_type="text/html")
    assert isinstance(response.body, bytes)
    text = response.body.decode()
    if kind == "truncated":
        return web.Response(text=text[: len(text) // 2], content_type="application/json")
    body = json.loads(text)
    body.pop("status", None)
    return json_response(body)


def base_body(
    export_type: str,
    data_type: str | None,
    partition: Partition | None,
    raw_date: str,
    now: datetime,
) -> dict[str, Any]:
    """An answer with every documented field (§2.3) in the documented order, status still empty.

    The all-types answer has no `dataType` and an object of link lists instead of a list.
    """
    body: dict[str, Any] = {
        "status": "",
        "downloadLinks": [] if data_type else {},
        "exportType": export_type,
    }
    if data_type is not None:
        body["dataType"] = data_type
    return body | {
        "exportDate": partition.export_date if partition else raw_date,
        "exportVersion": "v2",
        "requestTime": now.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M"),
        "errorMsg": "",
    }
