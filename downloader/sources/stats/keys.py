"""The statistics source's names: items, partition keys and the output layout (exports-spec §5).

A report partition is one item of one project on one Beijing day. Its key is
``("reports", "<uid>/<report>/<id>", "day:<YYYYMMDD>")`` — for rules, which have no id,
``("reports", "<uid>/rules", "day:<YYYYMMDD>")`` — so ``str(key)`` reads
``nxog09md/chart/YoX28w7R/day:20240609``. For a windowed item the day is the data's day; for a
snapshot (user lists, rules) it is the day the snapshot was taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time

from downloader.core.constants import BEIJING
from downloader.core.model import PartitionKey

SOURCE = "reports"
ROOT = "reports/"
WINDOWED: tuple[str, ...] = ("chart", "funnel", "retention", "frequency")
USER_LISTS: tuple[str, ...] = ("segment_users", "tag_users")
RULES = "rules"
REPORTS: tuple[str, ...] = (*WINDOWED, *USER_LISTS, RULES)
_PARTITION_PREFIX = "day:"


@dataclass(frozen=True, order=True)
class Item:
    """One thing a project exports: a chart, funnel, retention, frequency, segment's users,
    tag's users (each with its id), or the project's rules (no id)."""

    uid: str
    report: str
    ident: str | None = None

    def __post_init__(self) -> None:
        if self.report not in REPORTS:
            raise ValueError(f"unknown report {self.report!r}")
        if (self.ident is None) != (self.report == RULES):
            raise ValueError(f"{self.report} {'needs' if self.ident is None else 'has'} an id")

    @property
    def windowed(self) -> bool:
        """One partition per data day; the others are snapshots of the day they are taken."""
        return self.report in WINDOWED

    @property
    def name(self) -> str:
        """The checkpoint's item column."""
        if self.ident is None:
            return f"{self.uid}/{self.report}"
        return f"{self.uid}/{self.report}/{self.ident}"

    def key(self, day: date) -> PartitionKey:
        return PartitionKey(SOURCE, self.name, partition_name(day))

    def __str__(self) -> str:
        return self.name


def partition_name(day: date) -> str:
    return f"{_PARTITION_PREFIX}{day:%Y%m%d}"


def parse_key(key: PartitionKey) -> tuple[Item, date]:
    """The item and Beijing day of a report key."""
    if key.source != SOURCE or not key.partition.startswith(_PARTITION_PREFIX):
        raise ValueError(f"not a report partition: {key}")
    fields = key.item.split("/")
    if len(fields) == 2:
        item = Item(fields[0], fields[1])
    elif len(fields) == 3:
        item = Item(fields[0], fields[1], fields[2])
    else:
        raise ValueError(f"not a report item: {key.item!r}")
    day = datetime.strptime(key.partition.removeprefix(_PARTITION_PREFIX), "%Y%m%d").date()
    return item, day


def day_start(day: date) -> datetime:
    """The Beijing midnight that starts ``day``."""
    return datetime.combine(day, time(), BEIJING)


def folder(item: Item, day: date) -> str:
    """The partition's folder below the storage root, Hive style (exports-spec §5)."""
    parts = [ROOT.rstrip("/"), f"project_uid={item.uid}", f"report={item.report}"]
    if item.ident is not None:
        parts.append(f"id={item.ident}")
    parts.append(f"date={day:%Y-%m-%d}")
    return "/".join(parts)


def part_name(index: int) -> str:
    """A user-list file: the position of its link in downloadLinks (exports-spec §5)."""
    return f"part-{index:05d}.csv"
