"""Link sets (downloader/engine/links.py): one refresh per failure wave, a failed refresh not
repeated by the other waiters, and a changed part count blamed on the right partition."""

from __future__ import annotations

import asyncio

import pytest

from downloader.core.model import PartitionKey
from downloader.core.policy import Action, Decision
from downloader.engine.links import LinksChanged, LinkSet
from downloader.engine.source import Answer, FileSpec

VISIT = PartitionKey("raw", "ai/visit", "hour:2026120110")
PAGE = PartitionKey("raw", "ai/page", "hour:2026120110")
OK = Decision(Action.DOWNLOAD, "finished")


def answer(visit: int, page: int, version: str = "a") -> Answer:
    def files(name: str, n: int) -> tuple[FileSpec, ...]:
        return tuple(FileSpec(f"part-{i:05d}.csv.gz", url=f"http://x/{name}/{i}?v={version}")
                     for i in range(n))

    return Answer(OK, {VISIT: files("visit", visit), PAGE: files("page", page)})


async def test_concurrent_failures_refresh_once() -> None:
    calls = 0

    async def fetch() -> Answer:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return answer(2, 2, "b")

    links = LinkSet(answer(2, 2), fetch)
    await asyncio.gather(*(links.refresh(0) for _ in range(8)))
    assert calls == 1 and links.generation == 1
    assert links.get(VISIT, 1)[1].url == "http://x/visit/1?v=b"


async def test_a_failed_refresh_is_not_repeated_by_the_other_waiters() -> None:
    calls = 0

    async def fetch() -> Answer:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise RuntimeError("the API keeps failing")

    links = LinkSet(answer(2, 2), fetch)
    results = await asyncio.gather(*(links.refresh(0) for _ in range(8)),
                                   return_exceptions=True)
    assert calls == 1
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_a_changed_part_count_blames_that_partition_only() -> None:
    async def fetch() -> Answer:
        return answer(2, 3, "b")  # page was re-exported with three parts

    links = LinkSet(answer(2, 2), fetch)
    await links.refresh(0)
    assert links.changed == [PAGE]
    with pytest.raises(LinksChanged) as info:
        links.get(PAGE, 0)
    assert info.value.key == PAGE and "3 parts instead of 2" in str(info.value)
    # The caller's own partition goes on with the fresh links.
    assert links.get(VISIT, 0) == (1, FileSpec("part-00000.csv.gz",
                                                url="http://x/visit/0?v=b"))
