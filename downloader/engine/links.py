"""A job's file links, refreshed at most once per failure wave.

Links expire (5 minutes by default for raw exports) and carry signatures: they live only in
memory, are identified by their position in the partition's file list and never logged.
When several parts of one job fail at once (typically because the links expired together) only
the first caller asks the API again; the others see the generation has moved and reuse the new
links. A refresh that failed is remembered for its generation: the other waiters get the same
failure at once instead of asking again, one after another.

A refresh can show that some partitions of the job were re-exported with another number of
files: those partitions are marked changed (their parts raise :class:`LinksChanged` and are
planned again), while the parts of the others go on with the fresh links.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from downloader.core.model import PartitionKey
from downloader.engine.source import Answer, FileSpec


class LinksChanged(Exception):
    """A refresh returned a different number of files for a partition: its export was rebuilt
    and its parts' positions mean something else now."""

    def __init__(self, key: PartitionKey, old: int, new: int) -> None:
        self.key = key
        super().__init__(f"the export now has {new} parts instead of {old}")


class LinkSet:
    def __init__(self, answer: Answer, fetch: Callable[[], Awaitable[Answer]]) -> None:
        self._answer = answer
        self._fetch = fetch
        self._lock = asyncio.Lock()
        self._changed: dict[PartitionKey, LinksChanged] = {}
        self._failed: tuple[int, Exception] | None = None  # (generation, what it raised)
        self.generation = 0
        self.refreshes = 0

    def count(self, key: PartitionKey) -> int:
        return len(self._answer.files.get(key, ()))

    def get(self, key: PartitionKey, index: int) -> tuple[int, FileSpec]:
        """The current file of a part, with the generation it belongs to."""
        changed = self._changed.get(key)
        if changed is not None:
            raise changed
        return self.generation, self._answer.files[key][index]

    async def refresh(self, seen_generation: int) -> None:
        """Fetch fresh links unless someone already did (or tried) since ``seen_generation``."""
        async with self._lock:
            if self._failed is not None and self._failed[0] == seen_generation:
                raise self._failed[1]
            if self.generation != seen_generation:
                return
            try:
                fresh = await self._fetch()
            except Exception as exc:
                self._failed = (seen_generation, exc)
                raise
            for key, files in self._answer.files.items():
                new = len(fresh.files.get(key, ()))
                if new != len(files) and key not in self._changed:
                    self._changed[key] = LinksChanged(key, len(files), new)
            self._answer = fresh
            self.generation += 1
            self.refreshes += 1

    @property
    def changed(self) -> list[PartitionKey]:
        return list(self._changed)
