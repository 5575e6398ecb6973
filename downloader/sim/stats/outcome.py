"""The statistics simulator's answers: what a handler returns (a response and the reason it is
recorded under) and the bodies shared by several endpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from downloader.sim.stats import data
from downloader.sim.stats.requests import BadRequest

BAD_PARAM_MSG = "请求参数不合法，"  # growingio-api.md §4, documented errorMsg texts


@dataclass(frozen=True)
class Outcome:
    response: web.Response
    reason: str
    status: str | None = None
    early: bool = False


def json_response(body: Any, status: int = 200,
                  headers: dict[str, str] | None = None) -> web.Response:
    return raw_response(data.dumps(body), status, headers=headers)


def raw_response(
    body: bytes,
    status: int = 200,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.Response(
        body=body, status=status, content_type=content_type, charset="utf-8", headers=headers
    )


def too_many(retry_after: float) -> web.Response:
    body = {"message": "Too Many Requests", "errors": []}
    return json_response(body, 429, {"Retry-After": f"{retry_after:g}"})


def bad_request(exc: BadRequest) -> Outcome:
    body = {"message": f"{BAD_PARAM_MSG}{exc}", "errors": []}
    return Outcome(json_response(body, 400), "bad_request")


def with_early(outcome: Outcome, early: bool) -> Outcome:
    return Outcome(outcome.response, outcome.reason, outcome.status, early)
