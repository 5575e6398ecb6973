"""The /v2/insights client (API §2): one call per job, rate limited, secrets kept out of errors."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urljoin

import aiohttp
import structlog

from downloader.config.model import ApiConfig
from downloader.core.constants import CONNECT_TIMEOUT_SECONDS
from downloader.core.policy import Decision, classify_api, parse_retry_after, unreachable
from downloader.core.ratelimit import RateLimiter
from downloader.sources.raw.keys import RawJob

log = structlog.get_logger("gio.api")

_LINK = re.compile(r"https?://\S+")


@dataclass(frozen=True)
class Insights:
    """One answer of /v2/insights, reduced to what the downloader uses."""

    status: str
    links: dict[str, tuple[str, ...]] = field(repr=False)
    export_date: str = ""
    error_msg: str = ""
    request_time: str = ""


@dataclass(frozen=True)
class ApiOutcome:
    """Either an answer (``insights``) or why there is none, plus what to do about it."""

    decision: Decision
    insights: Insights | None = None
    http_status: int | None = None


def insights_path(job: RawJob) -> str:
    """The single-type endpoint when the job wants one type, the all-types one otherwise, so one
    call always serves the whole job (API §2.1)."""
    p = job.period
    ai = quote(job.ai, safe="")
    if len(job.data_types) == 1:
        return f"/v2/insights/{p.export_type}/{job.data_types[0]}/{ai}/{p.api_date}.json"
    return f"/v2/insights/{p.export_type}/{ai}/{p.api_date}.json"


# Data types whose key the vendor may leave out of an all-types FINISHED answer when it produced
# nothing for them. None: the docs' older example lacks `vstr` only because that page predates
# the type (API §2.2), so a missing key is a malformed answer for every type. A type added here
# is sealed as an empty partition when its key is missing, with a warning in the log.
TYPES_THAT_MAY_BE_ABSENT: frozenset[str] = frozenset()


def parse_insights(body: Any, job: RawJob, base_url: str | None = None) -> Insights:
    """Read a 200 answer. Raises ValueError when it does not have the documented shape.

    Only an explicit list (single-type call) or an explicit key with a list value (all-types
    call) can seal a partition; an explicit empty list is a real empty hour. A FINISHED answer
    without ``downloadLinks``, with a value of another shape, or an all-types object that lacks
    a requested type is malformed: retried like other unreadable answers, never sealed.
    Links are used as given; a relative one (not seen from the vendor, but harmless to accept)
    is resolved against ``base_url``."""
    if not isinstance(body, dict) or not isinstance(body.get("status"), str):
        raise ValueError("answer has no status field")
    links: dict[str, tuple[str, ...]] = {}
    if body["status"] == "FINISHED":
        if "downloadLinks" not in body:
            raise ValueError("FINISHED answer without downloadLinks")
        raw = body["downloadLinks"]
        if isinstance(raw, list):
            if len(job.data_types) != 1:
                raise ValueError("all-types answer carried a list of links")
            raw = {job.data_types[0]: raw}
        if not isinstance(raw, dict):
            raise ValueError(f"downloadLinks is {type(raw).__name__}, not a list or an object")
        for t in job.data_types:
            if t not in raw:
                if t in TYPES_THAT_MAY_BE_ABSENT:
                    log.warning("FINISHED answer lacks a data type; sealed as empty", job=str(job),
                                data_type=t)
                    links[t] = ()
                    continue
                raise ValueError(f"FINISHED answer lacks downloadLinks[{t}]")
            value = raw[t]
            if not isinstance(value, list) or not all(isinstance(u, str) for u in value):
                raise ValueError(f"downloadLinks[{t}] is not a list of URLs")
            links[t] = tuple(urljoin(base_url + "/", u.strip()) if base_url else u.strip()
                             for u in value)
    return Insights(
        status=body["status"],
        links=links,
        export_date=str(body.get("exportDate") or ""),
        error_msg=str(body.get("errorMsg") or ""),
        request_time=str(body.get("requestTime") or ""),
    )


class InsightsClient:
    def __init__(self, session: aiohttp.ClientSession, api: ApiConfig, limiter: RateLimiter,
                 on_call: Callable[[int | None, str | None], None] | None = None) -> None:
        self._session = session
        self._api = api
        self._limiter = limiter
        self._on_call = on_call
        self._headers = {"Authorization": f"Token {api.token}", "Accept": "application/json"}
        if api.client_id:
            self._headers["X-Client-Id"] = api.client_id
        # A host that does not accept a connection within seconds is not going to: a one-shot
        # backfill reports it instead of waiting out the whole answer timeout.
        self._timeout = aiohttp.ClientTimeout(total=api.timeout_seconds,
                                              sock_connect=CONNECT_TIMEOUT_SECONDS)
        self._logged_unreadable: set[str] = set()

    async def fetch(self, job: RawJob) -> ApiOutcome:
        """Ask once. Never raises for HTTP or network trouble: the outcome says what happened."""
        url = self._api.base_url + insights_path(job)
        params = {"expire": str(self._api.link_expire_minutes)}
        http_status: int | None = None
        status: str | None = None
        try:
            async with self._limiter.slot():
                async with self._session.get(url, params=params, headers=self._headers,
                                             timeout=self._timeout,
                                             auto_decompress=True) as resp:
                    http_status = resp.status
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                    raw = await resp.read()
            if http_status != 200:
                if retry_after is not None and http_status in (429, 503):
                    self._limiter.pause(retry_after)
                return ApiOutcome(classify_api(http_status, retry_after=retry_after),
                                  http_status=http_status)
            try:
                insights = parse_insights(json.loads(raw), job, self._api.base_url)
            except (ValueError, UnicodeDecodeError) as exc:
                if url not in self._logged_unreadable:  # once per partition and run
                    self._logged_unreadable.add(url)
                    log.warning("unreadable API answer; will retry", job=str(job),
                                error=str(exc), body=excerpt(raw))
                return ApiOutcome(_unreadable(str(exc)), http_status=200)
            status = insights.status
            return ApiOutcome(classify_api(200, insights.status, insights.error_msg),
                              insights=insights, http_status=200)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            return ApiOutcome(unreachable(self._api.base_url, exc))
        except (TimeoutError, aiohttp.ClientError, OSError):
            return ApiOutcome(classify_api(None))
        finally:
            if self._on_call is not None:
                self._on_call(http_status, status)


def excerpt(body: bytes, limit: int = 200) -> str:
    """The start of an answer for the log, with any link (signed) cut out."""
    text = body[:limit * 4].decode("utf-8", "replace")
    return _LINK.sub("<link>", text)[:limit]


def _unreadable(detail: str) -> Decision:
    base = classify_api(200, None)
    return Decision(base.action, f"{base.reason}: {detail}")
