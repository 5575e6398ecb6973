"""The /v2/insights client (API §2): one call per job, rate limited, secrets kept out of errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urljoin

import aiohttp

from downloader.config.model import ApiConfig
from downloader.core.policy import Decision, classify_api, parse_retry_after
from downloader.core.ratelimit import RateLimiter
from downloader.sources.raw.keys import RawJob


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


def parse_insights(body: Any, job: RawJob, base_url: str | None = None) -> Insights:
    """Read a 200 answer. Raises ValueError when it does not have the documented shape.
    Links are used as given; a relative one (not seen from the vendor, but harmless to accept)
    is resolved against ``base_url``."""
    if not isinstance(body, dict) or not isinstance(body.get("status"), str):
        raise ValueError("answer has no status field")
    raw = body.get("downloadLinks")
    links: dict[str, tuple[str, ...]] = {}
    if body["status"] == "FINISHED":
        if isinstance(raw, list):
            if len(job.data_types) != 1:
                raise ValueError("all-types answer carried a list of links")
            raw = {job.data_types[0]: raw}
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ValueError("downloadLinks is neither a list nor an object")
        for t in job.data_types:
            value = raw.get(t) or []
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
        self._timeout = aiohttp.ClientTimeout(total=api.timeout_seconds)

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
                return ApiOutcome(_unreadable(str(exc)), http_status=200)
            status = insights.status
            return ApiOutcome(classify_api(200, insights.status, insights.error_msg),
                              insights=insights, http_status=200)
        except (TimeoutError, aiohttp.ClientError, OSError):
            return ApiOutcome(classify_api(None))
        finally:
            if self._on_call is not None:
                self._on_call(http_status, status)


def _unreadable(detail: str) -> Decision:
    base = classify_api(200, None)
    return Decision(base.action, f"{base.reason}: {detail}")
