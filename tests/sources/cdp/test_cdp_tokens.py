"""The CDP token keeper: one fetch shared by every refused caller (exports-spec §4)."""

from __future__ import annotations

import asyncio

import pytest

from downloader.sources.cdp.tokens import TokenKeeper, TokenUnavailable, WrongApiKey


class Endpoint:
    def __init__(self, *answers: str | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        await asyncio.sleep(0.01)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_first_token_is_fetched_once_for_concurrent_callers() -> None:
    endpoint = Endpoint("t1")
    keeper = TokenKeeper(endpoint)
    assert await asyncio.gather(*(keeper.get() for _ in range(5))) == ["t1"] * 5
    assert endpoint.calls == 1


async def test_callers_refused_with_the_same_token_share_one_refresh() -> None:
    endpoint = Endpoint("t1", "t2", "t3")
    keeper = TokenKeeper(endpoint)
    assert await keeper.get() == "t1"
    got = await asyncio.gather(*(keeper.get(refused="t1") for _ in range(6)))
    assert got == ["t2"] * 6 and endpoint.calls == 2
    # A caller refused with an old token after the refresh gets the new one, no fetch.
    assert await keeper.get(refused="t1") == "t2" and endpoint.calls == 2
    assert await keeper.get(refused="t2") == "t3" and endpoint.calls == 3


async def test_a_failed_refresh_is_shared_then_tried_again_later() -> None:
    endpoint = Endpoint(TokenUnavailable("HTTP 503"), "t1")
    keeper = TokenKeeper(endpoint)
    results = await asyncio.gather(*(keeper.get() for _ in range(4)), return_exceptions=True)
    assert all(isinstance(r, TokenUnavailable) for r in results) and endpoint.calls == 1
    assert await keeper.get() == "t1" and endpoint.calls == 2


async def test_wrong_api_key_propagates() -> None:
    keeper = TokenKeeper(Endpoint(WrongApiKey("cdp.api_key")))
    with pytest.raises(WrongApiKey):
        await keeper.get()
