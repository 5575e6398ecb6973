"""A job's download links, refreshed at most once per failure wave.

Links expire (5 minutes by default) and carry signatures: they live only in memory, are
identified by their position in ``downloadLinks[type]`` (API §7.2.1) and never logged.
When several parts of one partition fail at once (typically because the links expired together)
only the first caller asks the API again; the others see the generation has moved and reuse the
new links.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from downloader.sources.raw.client import Insights


class LinksChanged(Exception):
    """A refresh returned a different number of parts: the export was rebuilt."""


class LinkSet:
    def __init__(self, insights: Insights,
                 fetch: Callable[[], Awaitable[Insights]]) -> None:
        self._insights = insights
        self._fetch = fetch
        self._lock = asyncio.Lock()
        self.generation = 0
        self.refreshes = 0

    def count(self, data_type: str) -> int:
        return len(self._insights.links.get(data_type, ()))

    def get(self, data_type: str, index: int) -> tuple[int, str]:
        """The current link of a part, with the generation it belongs to."""
        return self.generation, self._insights.links[data_type][index]

    async def refresh(self, seen_generation: int) -> None:
        """Fetch fresh links unless someone already did since ``seen_generation``."""
        async with self._lock:
            if self.generation != seen_generation:
                return
            fresh = await self._fetch()
            for data_type, links in self._insights.links.items():
                new = fresh.links.get(data_type, ())
                if len(new) != len(links):
                    raise LinksChanged(f"{data_type}: the export now has {len(new)} parts "
                                       f"instead of {len(links)}")
            self._insights = fresh
            self.generation += 1
            self.refreshes += 1
