"""The CDP platform's HTTP adapter (exports-spec §4): the token request and `POST /graphql`.

Thin on purpose: one aiohttp POST of `{query, operationName, variables}` per call, through the
host's rate limiter (token calls count too), every call reported to `on_call`. It never raises
for HTTP or network trouble — the outcome carries the engine's Decision — except for the one
answer that ends the run: a 401 from the token endpoint (:class:`WrongApiKey`).

A 401 on `/graphql` means the token died (they may live only a few uses or seconds): the call
is sent once more at once with a new token, shared with every other refused caller
(:class:`~downloader.sources.cdp.tokens.TokenKeeper`); a second 401 is a transient failure the
engine backs off from. The api_key and tokens never reach an error message or a log.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from downloader.config.model import CdpConfig
from downloader.core.constants import CONNECT_TIMEOUT_SECONDS
from downloader.core.policy import Action, Decision, connection_cause, parse_retry_after
from downloader.core.ratelimit import RateLimiter
from downloader.sources.cdp.documents import GraphQLRequest
from downloader.sources.cdp.protocol import (
    FORM_CONTENT_TYPE,
    GRAPHQL_PATH,
    TOKEN_PATH,
    MalformedAnswer,
    auth_header,
    graphql_error_message,
    parse_token,
    token_form,
)
from downloader.sources.cdp.tokens import TokenKeeper, TokenUnavailable, WrongApiKey

# A GraphQL call or token request that has not answered after this long has failed.
CALL_TIMEOUT_SECONDS = 60.0

WRONG_API_KEY = ("the CDP platform refused cdp.api_key (HTTP 401 from the token endpoint): "
                 "check the api_key of the cdp: block")


@dataclass(frozen=True)
class GqlOutcome:
    """A GraphQL answer as decoded JSON (``decision`` None), or why there is none."""

    decision: Decision | None
    answer: Any = None


class CdpClient:
    def __init__(self, session: aiohttp.ClientSession, cdp: CdpConfig, limiter: RateLimiter,
                 on_call: Callable[[int | None, str | None], None] | None = None) -> None:
        self._session = session
        self.base_url = cdp.base_url
        self._api_key = cdp.api_key
        self._limiter = limiter
        self._on_call = on_call
        self._timeout = aiohttp.ClientTimeout(total=CALL_TIMEOUT_SECONDS,
                                              sock_connect=CONNECT_TIMEOUT_SECONDS)
        self.tokens = TokenKeeper(self._fetch_token)

    def _report(self, http_status: int | None) -> None:
        if self._on_call is not None:
            self._on_call(http_status, None)

    def _unreachable(self, exc: BaseException) -> str:
        return f"cannot reach the CDP platform {self.base_url}: {connection_cause(exc)}"

    # -- token ----------------------------------------------------------------------------------

    async def _fetch_token(self) -> str:
        """One `POST /accounts/oauth/access_token`; WrongApiKey on 401, TokenUnavailable on any
        other failure."""
        status: int | None = None
        try:
            async with self._limiter.slot():
                async with self._session.post(
                        self.base_url + TOKEN_PATH, data=token_form(self._api_key).encode(),
                        headers={"Content-Type": FORM_CONTENT_TYPE, "Accept": "application/json"},
                        timeout=self._timeout, auto_decompress=True) as resp:
                    status = resp.status
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                    raw = await resp.read()
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise TokenUnavailable(self._unreachable(exc), unreachable=True) from None
        except (TimeoutError, aiohttp.ClientError, OSError):
            raise TokenUnavailable("no answer from the CDP token endpoint (timeout or "
                                   "connection error)") from None
        finally:
            self._report(status)
        if status == 401:
            raise WrongApiKey(WRONG_API_KEY)
        if status != 200:
            if retry_after is not None and status in (429, 503):
                self._limiter.pause(retry_after)
            raise TokenUnavailable(f"the CDP token endpoint answered HTTP {status}")
        try:
            return parse_token(json.loads(raw))
        except (ValueError, UnicodeDecodeError, MalformedAnswer):
            # The answer may hold a token in another shape: never quote it.
            raise TokenUnavailable("the CDP token endpoint answered no access_token") from None

    # -- GraphQL --------------------------------------------------------------------------------

    async def graphql(self, request: GraphQLRequest) -> GqlOutcome:
        """One GraphQL call (twice when the first token was refused). WrongApiKey propagates."""
        try:
            token = await self.tokens.get()
            status, outcome = await self._post(request, token)
            if status == 401:
                token = await self.tokens.get(refused=token)
                status, outcome = await self._post(request, token)
                if status == 401:
                    return GqlOutcome(Decision(Action.RETRY, "the CDP platform refused a new "
                                                             "token (HTTP 401 on /graphql)"))
        except TokenUnavailable as exc:
            return GqlOutcome(Decision(Action.RETRY, f"no CDP token: {exc}",
                                       unreachable=exc.unreachable))
        return outcome

    async def _post(self, request: GraphQLRequest, token: str) -> tuple[int | None, GqlOutcome]:
        status: int | None = None
        headers = {"Accept": "application/json", **auth_header(token)}
        try:
            async with self._limiter.slot():
                async with self._session.post(self.base_url + GRAPHQL_PATH, json=request.body(),
                                              headers=headers, timeout=self._timeout,
                                              auto_decompress=True) as resp:
                    status = resp.status
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                    raw = await resp.read()
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            return None, GqlOutcome(Decision(Action.RETRY, self._unreachable(exc),
                                             unreachable=True))
        except (TimeoutError, aiohttp.ClientError, OSError):
            return None, GqlOutcome(Decision(
                Action.RETRY, "no answer from the CDP platform (timeout or connection error)"))
        finally:
            self._report(status)
        try:
            answer = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            answer = None
        if status == 200:
            if answer is None:
                return status, GqlOutcome(Decision(Action.RETRY, "unreadable CDP answer"))
            return status, GqlOutcome(None, answer)
        return status, GqlOutcome(_http_decision(status, answer, retry_after, self._limiter))


def _http_decision(status: int, answer: Any, retry_after: float | None,
                   limiter: RateLimiter) -> Decision | None:
    if status == 401:
        return None  # the caller gets a new token
    if status in (429, 503) and retry_after is not None:
        limiter.pause(retry_after)
    if status == 429:
        return Decision(Action.RETRY, "rate limited by the CDP platform (HTTP 429)", retry_after)
    if status >= 500 or status == 408:
        return Decision(Action.RETRY, f"CDP platform error (HTTP {status})", retry_after)
    message = graphql_error_message(answer)
    return Decision(Action.FAIL, f"the CDP platform answered HTTP {status}"
                                 + (f": {message}" if message else ""))
