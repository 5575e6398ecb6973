"""The statistics requests and answer classification, row by row."""

from __future__ import annotations

from datetime import date

import pytest

from downloader.sources.stats.protocol import (
    Answer,
    Doing,
    Done,
    Failed,
    Request,
    Result,
    Unreadable,
    classify_user_list,
    classify_windowed,
    dashboard_request,
    dashboards_request,
    day_window_ms,
    rules_request,
    segmentations_request,
    user_list_request,
    windowed_request,
)

UID = "nxog09md"
DAY_MS = 86_400_000


@pytest.mark.parametrize(
    ("day", "start_ms"),
    [
        (date(2024, 6, 9), 1717862400000),
        (date(2024, 1, 31), 1706630400000),  # month end, next day in another month
        (date(2024, 2, 29), 1709136000000),  # leap day
        (date(2023, 2, 28), 1677513600000),  # February end, no leap day
        (date(2023, 12, 31), 1703952000000),  # year end
        (date(2024, 4, 30), 1714406400000),
        (date(1970, 1, 1), -28800000),  # Beijing midnight is before the epoch
    ],
)
def test_day_window_is_beijing_midnight_to_next_midnight(day: date, start_ms: int) -> None:
    # Values from calendar.timegm(day) - 8 h, independent of any tz database.
    assert day_window_ms(day) == (start_ms, start_ms + DAY_MS)


@pytest.mark.parametrize(
    ("kind", "interval", "path_word", "extra"),
    [
        ("chart", "day", "charts", (("interval", "86400000"),)),
        ("chart", "hour", "charts", (("interval", "3600000"),)),
        ("funnel", "day", "funnels", ()),
        ("funnel", "hour", "funnels", ()),  # the interval is for charts only
        ("retention", "day", "retentions", ()),
        ("frequency", "hour", "frequencies", ()),
    ],
)
def test_windowed_request(kind: str, interval: str, path_word: str, extra: tuple) -> None:
    request = windowed_request(UID, kind, "YoX28w7R", date(2024, 2, 29), interval)  # type: ignore[arg-type]
    assert request.path == f"/v3/exporter/projects/{UID}/{path_word}/YoX28w7R"
    assert request.query == (("startTime", "1709136000000"), ("endTime", "1709222400000"), *extra)


@pytest.mark.parametrize(
    ("variables", "expire", "query"),
    [
        ((), 60, (("expire", "60"),)),
        (("user_name",), 1, (("expire", "1"), ("parameters", "user_name"))),
        (
            ("zeta", "Alpha_2", "mid"),
            10080,
            (("expire", "10080"), ("parameters", "zeta,Alpha_2,mid")),
        ),
    ],
    ids=["no-variables", "one", "config-order-kept"],
)
def test_user_list_request(variables: tuple[str, ...], expire: int, query: tuple) -> None:
    segment = user_list_request(UID, "segment_users", "Sg01Ab23", variables, expire)
    assert segment.path == f"/v3/exporter/projects/{UID}/segmentations/Sg01Ab23/users"
    assert segment.query == query
    tag = user_list_request(UID, "tag_users", "Tg01Ab23", variables, expire)
    assert tag.path == f"/v3/exporter/projects/{UID}/tags/Tg01Ab23/users"
    assert tag.query == query


def test_user_list_default_expire_covers_a_download() -> None:
    assert user_list_request(UID, "tag_users", "Tg01Ab23").query == (("expire", "60"),)


@pytest.mark.parametrize(
    "call",
    [
        lambda: user_list_request(UID, "tag_users", "Tg01Ab23", expire_minutes=0),
        lambda: user_list_request(UID, "tag_users", "Tg01Ab23", expire_minutes=10081),
        lambda: user_list_request(UID, "tag_users", "Tg01Ab23", ("user-name",)),
        lambda: user_list_request(UID, "tag_users", "Tg01Ab23", ("a,b",)),
        lambda: user_list_request(UID, "tag_users", "Tg01Ab23", ("",)),
        lambda: user_list_request(UID, "tag_users", "Tg01Ab23", ("a", "a")),
        lambda: user_list_request(UID, "cdp_users", "Tg01Ab23"),  # type: ignore[arg-type]
        lambda: windowed_request(UID, "chart", "YoX28w7R", date(2024, 6, 9), "week"),  # type: ignore[arg-type]
        lambda: windowed_request(UID, "segment", "YoX28w7R", date(2024, 6, 9)),  # type: ignore[arg-type]
        lambda: windowed_request("nxog09m", "chart", "YoX28w7R", date(2024, 6, 9)),
        lambda: windowed_request(UID, "chart", "YoX28w7R/..", date(2024, 6, 9)),
        lambda: dashboard_request(UID, "../rules"),
        lambda: rules_request("nxog09md?x=1"),
    ],
)
def test_invalid_inputs_are_refused(call: object) -> None:
    with pytest.raises(ValueError):
        call()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("request_", "path"),
    [
        (dashboards_request(UID), f"/projects/{UID}/dashboards.json"),
        (dashboard_request(UID, "Db01Ab23"), f"/projects/{UID}/dashboards/Db01Ab23.json"),
        (segmentations_request(UID), f"/projects/{UID}/segmentations.json"),
        (rules_request(UID), f"/projects/{UID}/rules.csv"),
    ],
)
def test_v1_requests_have_no_query(request_: Request, path: str) -> None:
    assert (request_.path, request_.query, request_.target) == (path, (), path)


def test_target_keeps_commas() -> None:
    request = user_list_request(UID, "tag_users", "Tg01Ab23", ("a", "b"))
    assert request.target == f"{request.path}?expire=60&parameters=a,b"


# -- answers --------------------------------------------------------------------------------------

RESULT = b'{"id":"YoX28w7R","meta":[{"name":"a"}],"data":[[1]]}'
LINKS = b'{"id":"j1","status":"done","downloadLinks":["https://x/a.csv?expires=1"],"errorMsg":""}'

WINDOWED: list[tuple[str, bytes, Answer | type]] = [
    ("doing", b'{"id":"abc123","status":"doing"}', Doing("abc123")),
    ("result", RESULT, Result(RESULT)),
    ("result-empty-data", b'{"meta":[],"data":[]}', Result(b'{"meta":[],"data":[]}')),
    ("done-with-result", b'{"status":"done","meta":[],"data":[]}',
     Result(b'{"status":"done","meta":[],"data":[]}')),
    ("failed", '{"id":"j","status":"failed","errorMsg":"下载出错"}'.encode(), Failed("下载出错")),
    ("failed-no-message", b'{"status":"failed"}', Failed("")),
    ("failed-odd-message", b'{"status":"failed","errorMsg":null}', Failed("")),
    ("unknown-status", b'{"id":"j","status":"queued"}', Unreadable),
    ("uppercase-status", b'{"id":"j","status":"DOING"}', Unreadable),
    ("status-not-a-word", b'{"id":"j","status":1}', Unreadable),
    ("doing-without-id", b'{"status":"doing"}', Unreadable),
    ("doing-empty-id", b'{"id":"","status":"doing"}', Unreadable),
    ("done-without-result", b'{"id":"j","status":"done"}', Unreadable),
    ("links-for-a-chart", LINKS, Unreadable),
    ("no-data", b'{"meta":[]}', Unreadable),
    ("data-not-a-list", b'{"meta":[],"data":{}}', Unreadable),
    ("not-json", b"<html>busy</html>", Unreadable),
    ("empty", b"", Unreadable),
    ("not-utf8", b'{"meta":[],"data":["\xff"]}', Unreadable),
    ("nan", b'{"meta":[],"data":[[NaN]]}', Unreadable),
    ("array", b"[]", Unreadable),
    ("string", b'"doing"', Unreadable),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "expected"), [(b, e) for _, b, e in WINDOWED], ids=[n for n, _, _ in WINDOWED]
)
def test_classify_windowed(body: bytes, expected: Answer | type) -> None:
    answer = classify_windowed(body)
    if expected is Unreadable:
        assert isinstance(answer, Unreadable) and answer.reason
    else:
        assert answer == expected


USER_LISTS: list[tuple[str, bytes, Answer | type]] = [
    ("doing", b'{"id":"abc123","status":"doing"}', Doing("abc123")),
    ("done", LINKS, Done(("https://x/a.csv?expires=1",))),
    ("done-no-links", b'{"id":"j","status":"done","downloadLinks":[],"errorMsg":""}', Done(())),
    ("done-two", b'{"status":"done","downloadLinks":["http://h/0","http://h/1"]}',
     Done(("http://h/0", "http://h/1"))),
    ("failed", '{"status":"failed","errorMsg":"过期时间应小于7天"}'.encode(),
     Failed("过期时间应小于7天")),
    ("unknown-status", b'{"id":"j","status":"finished","downloadLinks":[]}', Unreadable),
    ("done-without-links", b'{"id":"j","status":"done"}', Unreadable),
    ("links-not-a-list", b'{"status":"done","downloadLinks":"http://h/0"}', Unreadable),
    ("relative-link", b'{"status":"done","downloadLinks":["/buckets/a.csv"]}', Unreadable),
    ("link-not-text", b'{"status":"done","downloadLinks":[1]}', Unreadable),
    ("no-status", RESULT, Unreadable),
    ("not-json", b"Internal Server Error", Unreadable),
    ("null", b"null", Unreadable),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "expected"), [(b, e) for _, b, e in USER_LISTS], ids=[n for n, _, _ in USER_LISTS]
)
def test_classify_user_list(body: bytes, expected: Answer | type) -> None:
    answer = classify_user_list(body)
    if expected is Unreadable:
        assert isinstance(answer, Unreadable) and answer.reason
    else:
        assert answer == expected


def test_unknown_status_is_named_in_the_reason() -> None:
    answer = classify_user_list(b'{"status":"queued"}')
    assert isinstance(answer, Unreadable) and "queued" in answer.reason
