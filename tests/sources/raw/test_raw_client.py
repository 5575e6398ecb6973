"""Unit tests of the /v2/insights client, one function at a time, with aioresponses."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses

from downloader.config.model import ApiConfig
from downloader.core.constants import BEIJING
from downloader.core.partitions import Period
from downloader.core.policy import Action
from downloader.core.ratelimit import RateLimiter
from downloader.sources.raw.client import InsightsClient, insights_path, parse_insights
from downloader.sources.raw.keys import RawJob as Job

API = ApiConfig(base_url="https://gio.test", token="tok-123", client_id="pub-9",
                rate_limit_per_second=100, link_expire_minutes=7)
HOUR = Period(datetime(2026, 11, 22, 10, tzinfo=BEIJING), "hour")
DAY = Period(datetime(2026, 11, 22, tzinfo=BEIJING), "day")
ALL = re.compile(r"^https://gio\.test/v2/insights/.*$")


class _SentWriter:
    output_size = 0


class CompatResponse(aiohttp.ClientResponse):
    """aiohttp 3.14 made ``stream_writer`` a required argument that aioresponses 0.7.x does not
    pass yet (aioresponses issue #289); give it one describing an already-sent request."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _SentWriter())
        super().__init__(*args, **kwargs)


def test_paths_single_and_all_types() -> None:
    assert insights_path(Job("ai1", HOUR, ("page",))) == \
        "/v2/insights/hour/page/ai1/202611221000.json"
    assert insights_path(Job("ai1", DAY, ("page", "visit"))) == \
        "/v2/insights/day/ai1/202611220000.json"


def test_parse_all_types_keeps_only_wanted_types_in_order() -> None:
    body = {"status": "FINISHED", "exportDate": "2026112210", "errorMsg": "",
            "downloadLinks": {"visit": ["v0"], "page": ["p0", "p1"], "action": ["x"],
                              "custom_event": []}}
    got = parse_insights(body, Job("ai1", HOUR, ("visit", "page", "custom_event")))
    # An explicit empty list is a real empty hour.
    assert got.links == {"visit": ("v0",), "page": ("p0", "p1"), "custom_event": ()}
    assert got.export_date == "2026112210"


TWO_TYPES = ("visit", "page")


@pytest.mark.parametrize(("links", "types", "error"), [
    pytest.param(None, TWO_TYPES, "without downloadLinks", id="all-types-key-missing"),
    pytest.param(None, ("page",), "without downloadLinks", id="single-type-key-missing"),
    pytest.param({"downloadLinks": None}, ("page",), "NoneType", id="null"),
    pytest.param({"downloadLinks": "https://x/p0"}, ("page",), "str", id="a-string"),
    pytest.param({"downloadLinks": {"visit": ["v0"]}}, TWO_TYPES, "lacks downloadLinks[page]",
                 id="all-types-lacks-a-requested-type"),
    pytest.param({"downloadLinks": {"visit": ["v0"], "page": "p0"}}, TWO_TYPES,
                 "downloadLinks[page] is not a list", id="type-value-not-a-list"),
    pytest.param({"downloadLinks": {"visit": [1], "page": []}}, TWO_TYPES,
                 "downloadLinks[visit] is not a list", id="links-not-strings"),
    pytest.param({"downloadLinks": ["a"]}, TWO_TYPES, "all-types answer carried a list",
                 id="all-types-list"),
    pytest.param({"downloadLinks": {}}, ("page",), "lacks downloadLinks[page]",
                 id="single-type-empty-object"),
])
def test_finished_without_usable_links_is_malformed_never_empty(
        links: dict[str, object] | None, types: tuple[str, ...], error: str) -> None:
    body: dict[str, object] = {"status": "FINISHED", "exportDate": "2026112210"}
    body.update(links or {})
    with pytest.raises(ValueError, match=re.escape(error)):
        parse_insights(body, Job("ai1", HOUR, types))


def test_explicit_empty_list_of_a_single_type_call_is_an_empty_hour() -> None:
    got = parse_insights({"status": "FINISHED", "downloadLinks": []}, Job("ai1", HOUR, ("page",)))
    assert got.links == {"page": ()}


def test_parse_resolves_relative_links_and_keeps_absolute_ones() -> None:
    body = {"status": "FINISHED", "downloadLinks": ["/download/a?x=1", "https://s3.test/b?y=2"]}
    got = parse_insights(body, Job("ai1", HOUR, ("page",)), "http://api.test:8080")
    assert got.links == {"page": ("http://api.test:8080/download/a?x=1", "https://s3.test/b?y=2")}


@pytest.mark.parametrize("body", [
    [], {"downloadLinks": []}, {"status": "FINISHED", "downloadLinks": "x"},
    {"status": "FINISHED", "downloadLinks": {"page": [1, 2]}},
])
def test_parse_rejects_other_shapes(body: object) -> None:
    with pytest.raises(ValueError):
        parse_insights(body, Job("ai1", HOUR, ("page", "visit")))


async def fetch(job: Job, limiter: RateLimiter | None = None, **mock: object):
    calls: list[tuple[int | None, str | None]] = []
    async with aiohttp.ClientSession() as session:
        client = InsightsClient(session, API, limiter or RateLimiter(100),
                                lambda h, s: calls.append((h, s)))
        with aioresponses() as m:
            m.get(ALL, response_class=CompatResponse, **mock)
            outcome = await client.fetch(job)
            (request,) = [r for reqs in m.requests.values() for r in reqs]
            url = next(iter(m.requests))[1]
    return outcome, request, url, calls


async def test_headers_expire_and_finished() -> None:
    body = {"status": "FINISHED", "downloadLinks": ["https://l/0?sig=1"], "exportType": "hour",
            "dataType": "page", "exportDate": "2026112210", "errorMsg": ""}
    outcome, request, url, calls = await fetch(Job("ai1", HOUR, ("page",)), payload=body)
    assert request.kwargs["headers"]["Authorization"] == "Token tok-123"
    assert request.kwargs["headers"]["X-Client-Id"] == "pub-9"
    assert str(url) == "https://gio.test/v2/insights/hour/page/ai1/202611221000.json?expire=7"
    assert outcome.decision.action is Action.DOWNLOAD
    assert outcome.insights is not None and outcome.insights.links == {
        "page": ("https://l/0?sig=1",)}
    assert calls == [(200, "FINISHED")]


@pytest.mark.parametrize(("mock", "action"), [
    ({"payload": {"status": "RUNNING"}}, Action.POLL),
    ({"payload": {"status": "NOT_EXISTS"}}, Action.WAIT),
    ({"payload": {"status": "ERROR", "errorMsg": "下载出错，请您稍后重试"}}, Action.RETRY),
    ({"body": "<html>oops</html>"}, Action.RETRY),
    ({"status": 401, "payload": {"message": "Unauthorized", "errors": []}}, Action.STOP),
    ({"status": 404}, Action.FAIL),
    ({"status": 502}, Action.RETRY),
    ({"exception": aiohttp.ClientConnectionError("refused")}, Action.RETRY),
    ({"exception": TimeoutError()}, Action.RETRY),
])
async def test_every_answer_maps_to_an_action(mock: dict[str, object], action: Action) -> None:
    outcome, _, _, calls = await fetch(Job("ai1", HOUR, ("page", "visit")), **mock)
    assert outcome.decision.action is action
    assert len(calls) == 1


async def test_retry_after_pauses_the_shared_limiter() -> None:
    limiter = RateLimiter(100)
    outcome, _, _, _ = await fetch(Job("ai1", HOUR, ("page",)), limiter, status=429,
                                   headers={"Retry-After": "3"})
    assert outcome.decision.action is Action.RETRY and outcome.decision.retry_after == 3
    assert limiter._wait_time() > 2.5  # every later call of the process waits


async def test_token_never_in_the_reason() -> None:
    outcome, _, _, _ = await fetch(Job("ai1", HOUR, ("page",)), status=403)
    assert "tok-123" not in outcome.decision.reason
