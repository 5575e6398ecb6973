"""The CDP source's names: partition keys, the output layout, part names.

A CDP partition is one export's snapshot of one Beijing day. Its key is
``("cdp", "<kind>/<id>", "day:<YYYYMMDD>")`` — e.g. ``("cdp", "tag_users/tag_vip",
"day:20260301")`` — so ``str(key)`` reads ``tag_users/tag_vip/day:20260301``, in the same shape
as a raw key. ``<id>`` is the segment id, the tag id or tag key, or the analysis id (the
``ident`` of the config's export); none of them contains a ``/``.
"""

from __future__ import annotations

from datetime import date, datetime

from downloader.core.constants import BEIJING
from downloader.core.model import PartitionKey

SOURCE = "cdp"
# Every folder the source writes starts here (exports-spec §5).
ROOT = "cdp/"
_DAY = "day:"
PART_NAME = "part-{index:05d}.{ext}"


def item_name(kind: str, ident: str) -> str:
    return f"{kind}/{ident}"


def partition_name(day: date) -> str:
    return f"{_DAY}{day:%Y%m%d}"


def cdp_key(kind: str, ident: str, day: date) -> PartitionKey:
    return PartitionKey(SOURCE, item_name(kind, ident), partition_name(day))


def parse_key(key: PartitionKey) -> tuple[str, str, date]:
    """``(kind, ident, day)`` of a CDP key; ValueError for a key of another shape."""
    kind, sep, ident = key.item.partition("/")
    if key.source != SOURCE or not sep or not key.partition.startswith(_DAY):
        raise ValueError(f"not a CDP partition key: {key!r}")
    day = datetime.strptime(key.partition[len(_DAY):], "%Y%m%d").date()
    return kind, ident, day


def day_start(day: date) -> datetime:
    """00:00 Beijing time of ``day``."""
    return datetime(day.year, day.month, day.day, tzinfo=BEIJING)


def partition_dir(kind: str, ident: str, day: date) -> str:
    """``cdp/export=<kind>/id=<id>/date=<YYYY-MM-DD>`` (exports-spec §5)."""
    return f"{ROOT}export={kind}/id={ident}/date={day:%Y-%m-%d}"


def part_name(index: int, ext: str) -> str:
    """The n-th uri of the job's answer (from 0), with the extension of its file name."""
    return PART_NAME.format(index=index, ext=ext)
