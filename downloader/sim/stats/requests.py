"""What the statistics simulator accepts as a request: the contract of exports-spec.md §3, strictly.

The vendor's own endpoints accept more (optional `interval`, `conversionWindow`, `range`, ...).
Our contract is narrower, and every deviation from it is a bug in our client, so anything else
raises BadRequest, which the simulator answers with 400 and records as `bad_request`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from downloader.core.constants import BEIJING

HASH_ID = re.compile(r"[A-Za-z0-9]{8}")
USER_VARIABLE = re.compile(r"[A-Za-z0-9_]+")
DAY_MS = 86_400_000
# Charts: `interval` in ms, 1 hour or 1 day (exports-spec.md §3).
CHART_INTERVALS_MS: frozenset[int] = frozenset({3_600_000, DAY_MS})
# `expire` in minutes, at most 7 days (growingio-api.md §4).
MAX_EXPIRE_MINUTES = 7 * 24 * 60
_DIGITS = re.compile(r"[0-9]+")


class BadRequest(ValueError):
    """A query the contract does not allow; the message names the offending value."""


@dataclass(frozen=True)
class WindowedAsk:
    kind: str
    day: date
    interval_ms: int


@dataclass(frozen=True)
class UsersAsk:
    expire_minutes: int
    parameters: tuple[str, ...]


def _single(query: Sequence[tuple[str, str]], allowed: frozenset[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for key, value in query:
        if key not in allowed:
            raise BadRequest(f"unexpected parameter {key}")
        if key in values:
            raise BadRequest(f"repeated parameter {key}")
        values[key] = value
    return values


def _integer(values: dict[str, str], key: str) -> int:
    if key not in values:
        raise BadRequest(f"missing parameter {key}")
    text = values[key]
    if not _DIGITS.fullmatch(text):
        raise BadRequest(f"{key}={text}")
    return int(text)


def parse_windowed(kind: str, query: Sequence[tuple[str, str]]) -> WindowedAsk:
    """A windowed item's query: one Beijing day, plus the interval for charts."""
    allowed = {"startTime", "endTime"} | ({"interval"} if kind == "charts" else set())
    values = _single(query, frozenset(allowed))
    start, end = _integer(values, "startTime"), _integer(values, "endTime")
    if (start + 8 * 3_600_000) % DAY_MS:
        raise BadRequest(f"startTime={start} is not a Beijing midnight")
    if end not in (start + DAY_MS, start + DAY_MS - 1):
        raise BadRequest(f"endTime={end} does not end the day of startTime={start}")
    interval = DAY_MS
    if kind == "charts":
        interval = _integer(values, "interval")
        if interval not in CHART_INTERVALS_MS:
            raise BadRequest(f"interval={interval}")
    day = datetime.fromtimestamp(start / 1000, BEIJING).date()
    return WindowedAsk(kind, day, interval)


def parse_users(query: Sequence[tuple[str, str]]) -> UsersAsk:
    """A user list's query: `expire` minutes and optional comma-joined user variables."""
    values = _single(query, frozenset({"expire", "parameters"}))
    expire = _integer(values, "expire")
    if not 1 <= expire <= MAX_EXPIRE_MINUTES:
        raise BadRequest(f"expire={expire}")
    parameters: tuple[str, ...] = ()
    if "parameters" in values:
        parameters = tuple(values["parameters"].split(","))
        if not all(USER_VARIABLE.fullmatch(p) for p in parameters):
            raise BadRequest(f"parameters={values['parameters']}")
        if len(set(parameters)) != len(parameters):
            raise BadRequest(f"repeated user variable in parameters={values['parameters']}")
    return UsersAsk(expire, parameters)


def parse_plain(query: Sequence[tuple[str, str]]) -> None:
    """v1 list endpoints and rules.csv take no query at all."""
    _single(query, frozenset())
