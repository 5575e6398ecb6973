"""The vocabulary every layer shares: a partition's key, a stored part, the set of done partitions.

A partition is identified by ``(source, item, partition)``: the source that produces it ("raw"),
the item it belongs to (for raw exports ``<ai>/<data_type>``) and the partition inside the item
(for raw exports ``<export_type>:<label>``, e.g. ``hour:2026120110``). The engine, the checkpoint
and the storage treat all three as opaque strings; only the source that made a key reads it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple


class PartitionKey(NamedTuple):
    """The unit the checkpoint knows and that ends with a ``_SUCCESS`` manifest.
    (A named tuple rather than a frozen dataclass: planning builds hundreds of thousands.)"""

    source: str
    item: str
    partition: str

    def __str__(self) -> str:
        return f"{self.item}/{self.partition}"


@dataclass(frozen=True)
class StoredPart:
    """One file of a partition whose bytes are durable: its position among the partition's
    files, its final name, its size and SHA-256."""

    index: int
    size: int
    sha256: str
    name: str


class DoneSet:
    """Done partitions as sets per ``(source, item)``: planning diffs whole sets at C speed
    instead of asking partition by partition."""

    def __init__(self, partitions: dict[tuple[str, str], frozenset[str]]) -> None:
        self._partitions = partitions

    @classmethod
    def from_keys(cls, keys: Iterable[PartitionKey]) -> DoneSet:
        grouped: dict[tuple[str, str], set[str]] = {}
        for source, item, partition in keys:
            grouped.setdefault((source, item), set()).add(partition)
        return cls({k: frozenset(v) for k, v in grouped.items()})

    def partitions(self, source: str, item: str) -> frozenset[str]:
        return self._partitions.get((source, item), frozenset())

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, PartitionKey):
            return False
        return key.partition in self.partitions(key.source, key.item)

    def __len__(self) -> int:
        return sum(len(v) for v in self._partitions.values())
