"""The status → action table (downloader/policy.py), row by row, and the backoff arithmetic."""

from __future__ import annotations

import math
import random

import pytest

from downloader.core.policy import (
    Action,
    backoff,
    classify_api,
    classify_download,
    parse_retry_after,
    poll_delay,
)

# --- /v2/insights answers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("http_status", "status", "error_msg", "action"),
    [
        pytest.param(200, "FINISHED", "", Action.DOWNLOAD, id="finished"),
        pytest.param(200, "RUNNING", "", Action.POLL, id="running"),
        pytest.param(200, "NOT_EXISTS", "", Action.WAIT, id="not-exists"),
        pytest.param(200, "ERROR", "export job crashed", Action.RETRY, id="error-ordinary"),
        pytest.param(200, "ERROR", "", Action.RETRY, id="error-without-message"),
        pytest.param(200, "ERROR", "请求参数不合法，x", Action.FAIL, id="error-invalid-parameter"),
        pytest.param(200, "ERROR", "请求参数不合法", Action.FAIL,
                     id="error-invalid-parameter-bare"),
        pytest.param(200, "PAUSED", "", Action.RETRY, id="unknown-status"),
        pytest.param(200, "finished", "", Action.RETRY, id="status-is-case-sensitive"),
        pytest.param(200, None, "", Action.RETRY, id="no-status"),
        pytest.param(401, None, "", Action.STOP, id="http-401"),
        pytest.param(403, None, "", Action.STOP, id="http-403"),
        pytest.param(429, None, "", Action.RETRY, id="http-429"),
        pytest.param(500, None, "", Action.RETRY, id="http-500"),
        pytest.param(502, None, "", Action.RETRY, id="http-502"),
        pytest.param(503, None, "", Action.RETRY, id="http-503"),
        pytest.param(504, None, "", Action.RETRY, id="http-504"),
        pytest.param(408, None, "", Action.RETRY, id="http-408"),
        pytest.param(404, None, "", Action.FAIL, id="http-404"),
        pytest.param(400, None, "", Action.FAIL, id="http-400"),
        pytest.param(None, None, "", Action.RETRY, id="no-answer"),
    ],
)
def test_classify_api(http_status: int | None, status: str | None, error_msg: str,
                      action: Action) -> None:
    decision = classify_api(http_status, status, error_msg)
    assert decision.action is action
    assert decision.reason  # every decision says why, for the log


@pytest.mark.parametrize("http_status", [429, 500, 503])
def test_classify_api_passes_retry_after_on(http_status: int) -> None:
    decision = classify_api(http_status, retry_after=7.5)
    assert decision.action is Action.RETRY
    assert decision.retry_after == 7.5


def test_classify_api_without_retry_after() -> None:
    assert classify_api(429).retry_after is None


@pytest.mark.parametrize("msg", ["export job crashed", "请求参数不合法，exportDate"])
def test_classify_api_error_reason_carries_error_msg(msg: str) -> None:
    assert msg in classify_api(200, "ERROR", msg).reason


def test_classify_api_error_msg_none_is_an_ordinary_error() -> None:
    # The JSON may carry "errorMsg": null.
    assert classify_api(200, "ERROR", None).action is Action.RETRY  # type: ignore[arg-type]


@pytest.mark.parametrize("http_status", [401, 403])
def test_credentials_stop_names_the_config_keys(http_status: int) -> None:
    reason = classify_api(http_status).reason
    assert str(http_status) in reason and "api.token" in reason


# --- part downloads ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("http_status", "broken", "corrupt", "action"),
    [
        pytest.param(200, False, False, Action.DOWNLOAD, id="200"),
        pytest.param(206, False, False, Action.DOWNLOAD, id="206-range"),
        pytest.param(401, False, False, Action.REFRESH, id="401"),
        pytest.param(403, False, False, Action.REFRESH, id="403-expired-link"),
        pytest.param(404, False, False, Action.REFRESH, id="404"),
        pytest.param(410, False, False, Action.REFRESH, id="410"),
        pytest.param(500, False, False, Action.RETRY, id="500"),
        pytest.param(502, False, False, Action.RETRY, id="502"),
        pytest.param(503, False, False, Action.RETRY, id="503"),
        pytest.param(504, False, False, Action.RETRY, id="504"),
        pytest.param(429, False, False, Action.RETRY, id="429"),
        pytest.param(408, False, False, Action.RETRY, id="408"),
        pytest.param(200, True, False, Action.RESUME, id="broken-body"),
        pytest.param(206, True, False, Action.RESUME, id="broken-range-body"),
        pytest.param(None, False, False, Action.RESUME, id="no-answer"),
        pytest.param(200, False, True, Action.REFETCH, id="corrupt"),
        pytest.param(200, True, True, Action.REFETCH, id="corrupt-wins-over-broken"),
        pytest.param(416, False, False, Action.REFRESH, id="416-unexpected"),
        pytest.param(301, False, False, Action.REFRESH, id="301-unexpected"),
    ],
)
def test_classify_download(http_status: int | None, broken: bool, corrupt: bool,
                           action: Action) -> None:
    decision = classify_download(http_status, broken=broken, corrupt=corrupt)
    assert decision.action is action
    assert decision.reason


@pytest.mark.parametrize("http_status", [429, 503])
def test_classify_download_passes_retry_after(http_status: int) -> None:
    assert classify_download(http_status, retry_after=3.0).retry_after == 3.0


# --- Retry-After -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("5", 5.0),
        ("120", 120.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("-3", 0.0),  # never negative
        (None, None),
        ("", None),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),  # HTTP-date form: treated as absent
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


@pytest.mark.parametrize("value", ["inf", "Infinity", "1e400"])
def test_parse_retry_after_rejects_non_finite(value: str) -> None:
    seconds = parse_retry_after(value)
    assert seconds is None or math.isfinite(seconds)


# --- backoff -----------------------------------------------------------------------------------


class Lowest(random.Random):
    """uniform() always gives its lower bound: the fixed half of the delay."""

    def uniform(self, a: float, b: float) -> float:
        return a


class Highest(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [
        (0, 2.5, 5.0),
        (1, 5.0, 10.0),
        (2, 10.0, 20.0),
        (5, 80.0, 160.0),
        (6, 150.0, 300.0),  # 5 * 64 = 320, capped at 300
        (7, 150.0, 300.0),
        (100, 150.0, 300.0),  # no overflow for huge attempt numbers
    ],
)
def test_backoff_exponential_equal_jitter_capped(attempt: int, low: float, high: float) -> None:
    assert backoff(attempt, 5.0, 300.0, rng=Lowest()) == low
    assert backoff(attempt, 5.0, 300.0, rng=Highest()) == high
    rng = random.Random(attempt)
    for _ in range(200):
        assert low <= backoff(attempt, 5.0, 300.0, rng=rng) <= high


def test_backoff_has_jitter_and_is_reproducible_with_a_seed() -> None:
    first = [backoff(3, 5.0, 300.0, rng=random.Random(42)) for _ in range(3)]
    assert first[0] == first[1] == first[2]
    rng = random.Random(42)
    spread = {backoff(3, 5.0, 300.0, rng=rng) for _ in range(50)}
    assert len(spread) > 40  # jittered, so many workers do not retry in lockstep


@pytest.mark.parametrize(
    ("attempt", "retry_after"),
    [(0, 30.0), (0, 0.0), (3, 7.0), (6, 1000.0), (10, 300.0)],
)
def test_backoff_never_below_retry_after(attempt: int, retry_after: float) -> None:
    rng = random.Random(7)
    for _ in range(200):
        delay = backoff(attempt, 5.0, 300.0, retry_after=retry_after, rng=rng)
        assert delay >= retry_after
        base = min(300.0, 5.0 * 2 ** attempt)
        assert delay >= base / 2  # Retry-After never shortens the backoff
        # At most the larger of the two plus up to 1 s of jitter.
        assert delay <= max(base, retry_after + 1.0)


def test_backoff_retry_after_above_maximum_wins() -> None:
    # The server's word beats our cap: asking earlier would only earn another 429.
    assert backoff(0, 5.0, 300.0, retry_after=900.0, rng=Lowest()) == 900.0


def test_backoff_with_the_module_random() -> None:
    for attempt in range(8):
        base = min(60.0, 1.0 * 2 ** attempt)
        assert base / 2 <= backoff(attempt, 1.0, 60.0) <= base


@pytest.mark.parametrize(
    ("polls", "first", "cap", "low", "high"),
    [
        pytest.param(1, 15.0, 300.0, 15.0, 30.0, id="first-repoll-15-to-30s"),
        pytest.param(2, 15.0, 300.0, 30.0, 60.0, id="doubles"),
        pytest.param(6, 15.0, 300.0, 270.0, 300.0, id="capped"),
        pytest.param(50, 15.0, 300.0, 270.0, 300.0, id="capped-far-out"),
        pytest.param(1, 1.0, 10.0, 1.0, 2.0, id="jobs-first-about-1s"),
        pytest.param(9, 1.0, 10.0, 9.0, 10.0, id="jobs-capped-10s"),
        pytest.param(1, 15.0, 0.1, 0.09, 0.1, id="cap-below-first"),
    ],
)
def test_poll_delay(polls: int, first: float, cap: float, low: float, high: float) -> None:
    rng = random.Random(polls)
    for _ in range(50):
        assert low <= poll_delay(polls, first, cap, rng) <= high
