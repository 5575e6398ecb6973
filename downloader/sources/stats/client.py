"""The statistics client (exports-spec §3): one GET, rate limited, never raising for HTTP trouble.

Every call holds two slots: one of the limiter per item (the vendor allows 2 calls a second per
chart, segment or tag) and one of the limiter shared by every source on the host (2 a second in
all). File downloads are not calls: the engine fetches links itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from downloader.config.model import ApiConfig
from downloader.core.constants import CONNECT_TIMEOUT_SECONDS, DEFAULT_RATE_LIMIT_PER_SECOND
from downloader.core.policy import parse_retry_after, unreachable
from downloader.core.ratelimit import RateLimiter
from downloader.sources.stats.protocol import Request

# The vendor's limit per chart / segment / tag (growingio-api.md §4, seeds 000/001).
PER_ITEM_CALLS_PER_SECOND = DEFAULT_RATE_LIMIT_PER_SECOND


@dataclass(frozen=True)
class Reply:
    """One answer: the HTTP status (None: no answer at all) and the body as served."""

    status: int | None
    body: bytes = field(default=b"", repr=False)
    retry_after: float | None = None
    unreachable: str | None = None  # no answer: the host could not be reached, and why


class StatsClient:
    def __init__(self, session: aiohttp.ClientSession, api: ApiConfig, limiter: RateLimiter,
                 on_call: Callable[[int | None, str | None], None] | None = None) -> None:
        self._session = session
        self._base_url = api.base_url.rstrip("/")
        self._limiter = limiter
        self._on_call = on_call
        # The token lives only in these headers: never in a message, a log line or a key.
        self._headers = {"Authorization": f"Token {api.token}", "Accept": "application/json"}
        if api.client_id:
            self._headers["X-Client-Id"] = api.client_id
        self._timeout = aiohttp.ClientTimeout(total=api.timeout_seconds,
                                              sock_connect=CONNECT_TIMEOUT_SECONDS)
        self._per_item: dict[str, RateLimiter] = {}

    def _item_limiter(self, item: str) -> RateLimiter:
        limiter = self._per_item.get(item)
        if limiter is None:
            limiter = self._per_item[item] = RateLimiter(PER_ITEM_CALLS_PER_SECOND)
        return limiter

    async def get(self, request: Request, item: str) -> Reply:
        """GET ``request`` for ``item`` (the key of its per-item budget)."""
        url = self._base_url + request.path
        status: int | None = None
        try:
            async with self._item_limiter(item).slot(), self._limiter.slot():
                async with self._session.get(url, params=list(request.query),
                                             headers=self._headers, timeout=self._timeout,
                                             auto_decompress=True) as resp:
                    status = resp.status
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                    body = await resp.read()
            if retry_after is not None and status in (429, 503):
                self._limiter.pause(retry_after)
            return Reply(status, body, retry_after)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            return Reply(None, unreachable=unreachable(self._base_url, exc).reason)
        except (TimeoutError, aiohttp.ClientError, OSError):
            status = None
            return Reply(None)
        finally:
            if self._on_call is not None:
                self._on_call(status, None)
