"""What to do about every answer the API or a download link can give: one table, pure.

The worker never inspects status codes itself; it asks :func:`classify_api` or
:func:`classify_download` and acts on the :class:`Action`.
"""

from __future__ import annotations

import math
import random
import socket
import ssl
from dataclasses import dataclass
from enum import Enum


class Action(Enum):
    DOWNLOAD = "download"  # FINISHED: fetch the parts
    POLL = "poll"  # the export is being built: poll again on the source's schedule, never give up
    WAIT = "wait"  # not produced yet: ask again later (backoff), give up after the grace period
    RESUBMIT = "resubmit"  # the export job failed: a new job after a short backoff, up to
    # retry.max_job_attempts per partition and run
    RETRY = "retry"  # transient: back off with jitter (honouring Retry-After) and try again
    RESUME = "resume"  # the body broke off: go on from the stored bytes on the same link (at
    # once when bytes arrived, after a backoff when none did; new links after two such tries)
    REFRESH = "refresh"  # the link is dead or the body broke off: new links, resume with Range
    REFETCH = "refetch"  # the bytes are wrong: discard them, new links, download again from 0
    FAIL = "fail"  # this partition cannot succeed now: report it
    STOP = "stop"  # nothing can succeed (credentials, disk): stop the whole run


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    retry_after: float | None = None
    # No answer at all: the host could not be reached (refused, DNS, TLS, connect timeout). A
    # backfill that never got an answer from that host stops after a few quick tries.
    unreachable: bool = False


# Answers of /v2/insights with HTTP 200, by "status" (API §2.4).
_STATUS_TABLE: dict[str, Decision] = {
    "FINISHED": Decision(Action.DOWNLOAD, "finished"),
    "RUNNING": Decision(Action.POLL, "export still running"),
    "NOT_EXISTS": Decision(Action.WAIT, "export does not exist (not ready, not enabled, or "
                                        "outside the retention window)"),
    "ERROR": Decision(Action.RETRY, "export job failed"),
}

# errorMsg prefix the API uses for an invalid parameter (API §4): no retry fixes that.
_INVALID_PARAMETER = "请求参数不合法"


def classify_api(http_status: int | None, status: str | None = None, error_msg: str = "",
                 retry_after: float | None = None) -> Decision:
    """Decide on one /v2/insights answer. ``http_status`` None means no answer at all
    (timeout, connection refused or reset)."""
    if http_status is None:
        return Decision(Action.RETRY, "no answer from the API (timeout or connection error)")
    if http_status == 200:
        if status is None:
            return Decision(Action.RETRY, "unreadable API answer")
        decision = _STATUS_TABLE.get(status)
        if decision is None:
            return Decision(Action.RETRY, f"unknown export status {status!r}")
        if status == "ERROR":
            msg = error_msg or "no errorMsg"
            if msg.startswith(_INVALID_PARAMETER):
                return Decision(Action.FAIL, f"API rejected the request: {msg}")
            return Decision(Action.RETRY, f"export job failed: {msg}")
        return decision
    if http_status in (401, 403):
        return Decision(Action.STOP, f"the API rejected the credentials (HTTP {http_status}): "
                                     "check api.token and api.client_id")
    if http_status == 429:
        return Decision(Action.RETRY, "rate limited by the API (HTTP 429)", retry_after)
    if http_status >= 500:
        return Decision(Action.RETRY, f"API server error (HTTP {http_status})", retry_after)
    if http_status == 408:
        return Decision(Action.RETRY, "API request timeout (HTTP 408)", retry_after)
    return Decision(Action.FAIL, f"API answered HTTP {http_status}")


def unreachable(base_url: str, exc: BaseException) -> Decision:
    """No answer from an API host: one line naming the host and the cause."""
    return Decision(Action.RETRY, f"cannot reach {base_url}: {connection_cause(exc)}",
                    unreachable=True)


def connection_cause(exc: BaseException) -> str:
    """What went wrong with a connection, in words a person can act on."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:  # look through the causes
        seen.add(id(cur))
        name = type(cur).__name__
        if "DNS" in name or isinstance(cur, socket.gaierror):
            return "DNS lookup failed"
        if "SSL" in name or "Certificate" in name or isinstance(cur, ssl.SSLError):
            return "TLS handshake failed"
        if isinstance(cur, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cur, TimeoutError) or "Timeout" in name:
            return "timed out"
        cur = cur.__cause__ or cur.__context__ or getattr(cur, "os_error", None)
    return type(exc).__name__


def classify_download(http_status: int | None, broken: bool = False, corrupt: bool = False,
                      retry_after: float | None = None) -> Decision:
    """Decide on one part download. ``broken``: the body stopped early (reset, timeout, short
    read); ``corrupt``: the size or gzip check failed on the complete body."""
    if corrupt:
        return Decision(Action.REFETCH, "part failed the integrity check (size or gzip)")
    if broken or http_status is None:
        return Decision(Action.RESUME, "download broke off")
    if http_status in (200, 206):
        return Decision(Action.DOWNLOAD, "ok")
    # An expired presigned link answers 403 (API §2.5, §7.2.1); a withdrawn one 404/410.
    if http_status in (401, 403, 404, 410):
        return Decision(Action.REFRESH, f"download link expired or gone (HTTP {http_status})")
    if http_status == 429 or http_status >= 500 or http_status == 408:
        return Decision(Action.RETRY, f"download server error (HTTP {http_status})", retry_after)
    return Decision(Action.REFRESH, f"unexpected download answer (HTTP {http_status})")


def poll_delay(polls: int, first: float, cap: float, rng: random.Random | None = None) -> float:
    """Delay before re-polling a job that is being built, after ``polls`` polls (from 1):
    ``first`` (with up to +100% jitter) doubling to ``cap``, so many jobs do not poll in step."""
    r = rng or random
    base = min(cap, first * (2 ** min(max(polls - 1, 0), 30)))
    return min(cap, base * r.uniform(1.0, 2.0)) if base < cap else cap * r.uniform(0.9, 1.0)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is rare on APIs and treated as absent)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def backoff(attempt: int, initial: float, maximum: float, retry_after: float | None = None,
            rng: random.Random | None = None) -> float:
    """Delay before try number ``attempt`` + 1 (attempt counts from 0): exponential with
    "equal jitter" (half fixed, half random), never below the server's Retry-After."""
    r = rng or random
    base = min(maximum, initial * (2 ** min(attempt, 30)))
    delay = base / 2 + r.uniform(0, base / 2)
    if retry_after is not None:
        delay = max(delay, retry_after + r.uniform(0, min(1.0, initial)))
    return delay
