"""Requests and answers of the statistics APIs (exports-spec.md §3), as pure functions.

Builders turn an item and a Beijing day into the exact path and query our contract allows;
classifiers turn one answer body into a closed set of outcomes. No I/O here: the adapter sends
the requests and the engine decides what to do with each outcome.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from urllib.parse import urlencode

from downloader.core.constants import BEIJING

WindowedKind = Literal["chart", "funnel", "retention", "frequency"]
UserListKind = Literal["segment_users", "tag_users"]
Interval = Literal["hour", "day"]

# Report names (the `report=` of the output layout, §5) → V3 path words (growingio-api.md §4).
WINDOWED_PATHS: dict[str, str] = {
    "chart": "charts",
    "funnel": "funnels",
    "retention": "retentions",
    "frequency": "frequencies",
}
USER_LIST_PATHS: dict[str, str] = {"segment_users": "segmentations", "tag_users": "tags"}
# Charts send `interval` in milliseconds (§3): one hour or one day.
INTERVAL_MS: dict[str, int] = {"hour": 3_600_000, "day": 86_400_000}
# `expire` of user-list links, in minutes: 1..7 days (growingio-api.md §4). An hour covers the
# downloads; links may die sooner anyway and are then asked for again.
DEFAULT_EXPIRE_MINUTES = 60
MAX_EXPIRE_MINUTES = 7 * 24 * 60
HASH_ID = re.compile(r"[A-Za-z0-9]{8}")
USER_VARIABLE = re.compile(r"[A-Za-z0-9_]+")


@dataclass(frozen=True)
class Request:
    """A GET on `api.base_url`: the path and the query pairs, in order."""

    path: str
    query: tuple[tuple[str, str], ...] = ()

    @property
    def target(self) -> str:
        """Path and query as sent (commas of `parameters` left as they are)."""
        return f"{self.path}?{urlencode(self.query, safe=',')}" if self.query else self.path


def _hash_id(what: str, value: str) -> str:
    if not HASH_ID.fullmatch(value):
        raise ValueError(f"{what} must be 8 letters or digits: {value!r}")
    return value


def day_window_ms(day: date) -> tuple[int, int]:
    """Epoch ms of the Beijing day's 00:00 and of the next day's 00:00."""
    start = datetime.combine(day, time(), BEIJING)
    end = start + timedelta(days=1)
    return int(start.timestamp()) * 1000, int(end.timestamp()) * 1000


def windowed_request(
    uid: str, kind: WindowedKind, item_id: str, day: date, interval: Interval = "day"
) -> Request:
    """The V3 GET of a chart, funnel, retention or frequency for one Beijing day."""
    if kind not in WINDOWED_PATHS:
        raise ValueError(f"not a windowed report: {kind!r}")
    path = f"/v3/exporter/projects/{_hash_id('project_uid', uid)}/{WINDOWED_PATHS[kind]}/"
    path += _hash_id(kind, item_id)
    start, end = day_window_ms(day)
    query = [("startTime", str(start)), ("endTime", str(end))]
    if kind == "chart":
        if interval not in INTERVAL_MS:
            raise ValueError(f"interval must be hour or day: {interval!r}")
        query.append(("interval", str(INTERVAL_MS[interval])))
    return Request(path, tuple(query))


def user_list_request(
    uid: str,
    kind: UserListKind,
    item_id: str,
    user_variables: Sequence[str] = (),
    expire_minutes: int = DEFAULT_EXPIRE_MINUTES,
) -> Request:
    """The V3 GET of a segment's or tag's user list; user variables in config order."""
    if kind not in USER_LIST_PATHS:
        raise ValueError(f"not a user-list report: {kind!r}")
    if not 1 <= expire_minutes <= MAX_EXPIRE_MINUTES:
        raise ValueError(f"expire must be 1..{MAX_EXPIRE_MINUTES} minutes: {expire_minutes}")
    bad = [v for v in user_variables if not USER_VARIABLE.fullmatch(v)]
    if bad:
        raise ValueError(f"user variables must be [A-Za-z0-9_] names: {bad}")
    if len(set(user_variables)) != len(user_variables):
        raise ValueError(f"user variables repeat: {list(user_variables)}")
    path = f"/v3/exporter/projects/{_hash_id('project_uid', uid)}/{USER_LIST_PATHS[kind]}/"
    path += f"{_hash_id(kind, item_id)}/users"
    query = [("expire", str(expire_minutes))]
    if user_variables:
        query.append(("parameters", ",".join(user_variables)))
    return Request(path, tuple(query))


def dashboards_request(uid: str) -> Request:
    return Request(f"/projects/{_hash_id('project_uid', uid)}/dashboards.json")


def dashboard_request(uid: str, dashboard_id: str) -> Request:
    uid = _hash_id("project_uid", uid)
    return Request(f"/projects/{uid}/dashboards/{_hash_id('dashboard', dashboard_id)}.json")


def segmentations_request(uid: str) -> Request:
    return Request(f"/projects/{_hash_id('project_uid', uid)}/segmentations.json")


def rules_request(uid: str) -> Request:
    return Request(f"/projects/{_hash_id('project_uid', uid)}/rules.csv")


# -- answers --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Doing:
    """The job runs: ask the same GET again later. The id is the job to checkpoint."""

    job_id: str


@dataclass(frozen=True)
class Done:
    """A user list is ready: download every link, in order (part-00000, part-00001, ...)."""

    links: tuple[str, ...]


@dataclass(frozen=True)
class Result:
    """A windowed item is ready: the body itself is the result (stored as response.json)."""

    body: bytes


@dataclass(frozen=True)
class Failed:
    """The job failed; the next identical GET starts a new one."""

    message: str


@dataclass(frozen=True)
class Unreadable:
    """Not JSON, or not a shape we know (an unknown status word included)."""

    reason: str


Answer = Doing | Done | Result | Failed | Unreadable


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _object(body: bytes) -> dict[str, Any] | Unreadable:
    try:
        value = json.loads(body, parse_constant=_reject_constant)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return Unreadable(f"not JSON: {exc}")
    if not isinstance(value, dict):
        return Unreadable(f"not a JSON object but {type(value).__name__}")
    return value


def _status(obj: dict[str, Any]) -> Doing | Failed | Unreadable | str | None:
    """`doing`/`failed` answers, an Unreadable, the word `done`, or None without a status."""
    if "status" not in obj:
        return None
    status = obj["status"]
    if status == "doing":
        job_id = obj.get("id")
        if not isinstance(job_id, str) or not job_id:
            return Unreadable("a doing answer without a job id")
        return Doing(job_id)
    if status == "failed":
        message = obj.get("errorMsg")
        return Failed(message if isinstance(message, str) else "")
    if status == "done":
        return "done"
    return Unreadable(f"unknown status {status!r}")


def classify_windowed(body: bytes) -> Answer:
    """One answer of a chart/funnel/retention/frequency GET."""
    obj = _object(body)
    if isinstance(obj, Unreadable):
        return obj
    status = _status(obj)
    if isinstance(status, Doing | Failed | Unreadable):
        return status
    # The result has no status (§3); a `done` one with the same content is read the same way.
    if isinstance(obj.get("meta"), list) and isinstance(obj.get("data"), list):
        return Result(body)
    return Unreadable("neither a job status nor a result with meta and data")


def classify_user_list(body: bytes) -> Answer:
    """One answer of a segment or tag user-list GET."""
    obj = _object(body)
    if isinstance(obj, Unreadable):
        return obj
    status = _status(obj)
    if isinstance(status, Doing | Failed | Unreadable):
        return status
    if status is None:
        return Unreadable("a user-list answer without a status")
    links = obj.get("downloadLinks")
    if not isinstance(links, list) or not all(
        isinstance(link, str) and link.startswith(("http://", "https://")) for link in links
    ):
        return Unreadable("a done answer without a list of http(s) downloadLinks")
    return Done(tuple(links))
