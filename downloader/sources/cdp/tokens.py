"""The platform's access token: fetched once, shared, renewed single-flight (exports-spec §4).

Tokens may die after a few uses or seconds. A caller that was refused (401) asks for a token
other than the one it used: the first such caller fetches a new one, every caller that was
refused with the same old token meanwhile waits for that fetch and shares its result (or its
failure). A token is never logged, never put in an error message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class WrongApiKey(Exception):
    """The token endpoint answered 401: the configured api_key is not the deployment's."""


class TokenUnavailable(Exception):
    """No token now (5xx, no answer, an unreadable answer): transient; str() says why.
    ``unreachable``: the platform did not answer at all (refused, DNS, TLS, connect timeout)."""

    def __init__(self, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


class TokenKeeper:
    def __init__(self, fetch: Callable[[], Awaitable[str]]) -> None:
        self._fetch = fetch  # one call to the token endpoint; raises the two errors above
        self._token: str | None = None
        self._lock = asyncio.Lock()
        self._generation = 0  # fetches finished (successful or not)
        self._failure: Exception | None = None  # what the last fetch raised, if it failed
        self.fetches = 0

    async def get(self, refused: str | None = None) -> str:
        """A live token, to our knowledge; ``refused``: the token the platform just refused,
        which must not be handed out again."""
        token = self._token
        if token is not None and token != refused:
            return token
        seen = self._generation
        async with self._lock:
            if self._generation != seen:  # a fetch finished while this caller waited
                if self._failure is not None:
                    raise self._failure
                if self._token is not None and self._token != refused:
                    return self._token
            self._token = None
            self.fetches += 1
            try:
                self._token = await self._fetch()
                self._failure = None
            except (WrongApiKey, TokenUnavailable) as exc:
                self._failure = exc
                raise
            finally:
                self._generation += 1
            return self._token
