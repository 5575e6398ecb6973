"""The raw export's names: partition keys, the job one API call serves, the output layout.

A raw partition is one data type of one project's hour or day. Its key is
``("raw", "<ai>/<data_type>", "<export_type>:<label>")``, so ``str(key)`` reads
``<ai>/<data_type>/hour:2026120110``, as it always has.
"""

from __future__ import annotations

from dataclasses import dataclass

from downloader.core.constants import PART_NAME_FORMAT
from downloader.core.model import PartitionKey
from downloader.core.partitions import Period

SOURCE = "raw"


def raw_key(ai: str, data_type: str, period: Period) -> PartitionKey:
    return PartitionKey(SOURCE, f"{ai}/{data_type}", f"{period.export_type}:{period.label}")


def item_name(ai: str, data_type: str) -> str:
    return f"{ai}/{data_type}"


def partition_name(period: Period) -> str:
    return f"{period.export_type}:{period.label}"


def parse_key(key: PartitionKey) -> tuple[str, str, Period]:
    """``(ai, data_type, period)`` of a raw key."""
    ai, data_type = key.item.split("/", 1)
    export_type, label = key.partition.split(":", 1)
    return ai, data_type, Period.from_label(export_type, label)


@dataclass(frozen=True)
class RawJob:
    """What one /v2/insights call serves: every wanted data type of one project's period."""

    ai: str
    period: Period
    data_types: tuple[str, ...]

    def keys(self) -> list[PartitionKey]:
        return [raw_key(self.ai, t, self.period) for t in self.data_types]

    def __str__(self) -> str:
        return f"{self.ai}/{self.period}[{','.join(self.data_types)}]"


def part_name(index: int) -> str:
    """A part's name: the 0-based position of its link in downloadLinks[type] (API §7.2.1)."""
    return PART_NAME_FORMAT.format(index=index)


def partition_dir(ai: str, data_type: str, period: Period) -> str:
    """The partition's folder below the storage root, Hive style (downstream jobs depend on it):
    ``ai=<ai>/data_type=<t>/export_type=<e>/date=<YYYY-MM-DD>/[hour=<HH>/]``."""
    parts = [f"ai={ai}", f"data_type={data_type}", f"export_type={period.export_type}",
             f"date={period.date_str}"]
    if period.hour_str is not None:
        parts.append(f"hour={period.hour_str}")
    return "/".join(parts)
