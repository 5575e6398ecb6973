"""A job's file links, refreshed at most once per failure wave.

Links expire (5 minutes by default for raw exports) and carry signatures: they live only in
memory, are identified by their position in the partition's file list and never logged.
When several parts of one job fail at once (typically because the links expired together) only
the first caller asks the API again; the others see the generation has moved and reuse the new
links.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from downloader.core.model import PartitionKey
from downloader.engine.source import Answer, FileSpec


class LinksChanged(Exception):
    """A refresh returned a different number of files for some partitions: their exports were
    rebuilt. ``keys`` names them."""

    def __init__(self, keys: dict[PartitionKey, tuple[int, int]]) -> None:
        self.keys = keys
        super().__init__("; ".join(f"{k}: the export now has {new} parts instead of {old}"
                                   for k, (old, new) in keys.items()))


class LinkSet:
    def __init__(self, answer: Answer, fetch: Callable[[], Awaitable[Answer]]) -> None:
        self._answer = answer
        self._fetch = fetch
        self._lock = asyncio.Lock()
        self.generation = 0
        self.refreshes = 0

    def count(self, key: PartitionKey) -> int:
        return len(self._answer.files.get(key, ()))

    def get(self, key: PartitionKey, index: int) -> tuple[int, FileSpec]:
        """The current file of a part, with the generation it belongs to."""
        return self.generation, self._answer.files[key][index]

    async def refresh(self, seen_generation: int) -> None:
        """Fetch fresh links unless someone already did since ``seen_generation``."""
        async with self._lock:
            if self.generation != seen_generation:
                return
            fresh = await self._fetch()
            changed = {key: (len(files), len(fresh.files.get(key, ())))
                       for key, files in self._answer.files.items()
                       if len(fresh.files.get(key, ())) != len(files)}
            if changed:
                raise LinksChanged(changed)
            self._answer = fresh
            self.generation += 1
            self.refreshes += 1
