"""The coverage grid: one cell per partition of the retention window, coloured by its state.

The cells are computed once, inside the status report (``status --json``, ``/status.json``):
each raw type row and each item of the other sources carries ``cells``, one letter per
partition along the report's ``grid`` axis (Beijing days from ``first_day``; an hourly row has
24 letters a day, a daily row one). This module holds that vocabulary, the cheap functions
:func:`~downloader.service.status.build_status` fills the rows with, the row model the page and
the terminal share (:func:`sections`), and the terminal rendering (``status --grid``). Pure: no
I/O, ``now`` comes from the report.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cached_property
from itertools import groupby
from typing import Any

from downloader.core.constants import BEIJING
from downloader.service.progress import human_duration

DONE, PENDING, WAITING, FAILED, NOT_DUE, SKIPPED = "d", "p", "W", "F", "n", "s"
# Letter -> (name, what it means), in legend order. Capitals need a person's attention.
STATES: dict[str, tuple[str, str]] = {
    DONE: ("done", "in the lake, sealed with _SUCCESS"),
    PENDING: ("pending", "due, not asked yet"),
    WAITING: ("waiting", "asked; the export is being built"),
    FAILED: ("failed", "gave up for now; the last error on hover"),
    NOT_DUE: ("not due yet", "the vendor has not finished it yet"),
    SKIPPED: ("skipped", "outside the retention window, or a past snapshot day"),
}
HOURS = 24
SOURCE_TITLES = {"raw": "Raw exports", "reports": "Statistics reports", "cdp": "CDP exports"}


@dataclass(frozen=True)
class Axis:
    """The grid's columns: ``days`` Beijing days from ``first_day``."""

    first_day: date
    days: int

    @classmethod
    def for_window(cls, first_hour: datetime, last_hour: datetime) -> Axis:
        first = first_hour.astimezone(BEIJING).date()
        return cls(first, (last_hour.astimezone(BEIJING).date() - first).days + 1)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Axis:
        return cls(date.fromisoformat(data["first_day"]), int(data["days"]))

    def to_json(self) -> dict[str, Any]:
        return {"first_day": self.first_day.isoformat(), "days": self.days,
                "hours_per_day": HOURS,
                "letters": {letter: name for letter, (name, _) in STATES.items()}}

    def day(self, index: int) -> date:
        return self.first_day + timedelta(days=index)

    @cached_property
    def day_labels(self) -> list[str]:
        return [f"{self.day(i):%Y%m%d}" for i in range(self.days)]

    @cached_property
    def hour_labels(self) -> list[str]:
        return [f"{d}{h:02d}" for d in self.day_labels for h in range(HOURS)]

    def partitions(self, export_type: str) -> list[str]:
        """The partition names along the axis: ``hour:YYYYMMDDHH`` or ``day:YYYYMMDD``."""
        labels = self.hour_labels if export_type == "hour" else self.day_labels
        return [f"{export_type}:{label}" for label in labels]


def base_row(partitions: Sequence[str], due: Collection[str], not_due: Collection[str]) -> str:
    """A row before the checkpoint is read: pending where due, not due, else skipped."""
    return "".join(PENDING if p in due else NOT_DUE if p in not_due else SKIPPED
                   for p in partitions)


def fill(base: str, index: Mapping[str, int], done: Iterable[str], failed: Iterable[str] = (),
         waiting: Iterable[str] = ()) -> str:
    """``base`` with the checkpoint's and the engine's states laid over it. ``index`` maps a
    partition name to its position; names off the axis are ignored. A failure shows on a due
    cell only, a job being built over a failure (it is being retried), done over everything
    (the data is in the lake). O(len(done) + len(failed) + len(waiting))."""
    row = list(base)
    for name in failed:
        i = index.get(name)
        if i is not None and row[i] == PENDING:
            row[i] = FAILED
    for name in waiting:
        i = index.get(name)
        if i is not None and row[i] in (PENDING, FAILED):
            row[i] = WAITING
    for name in done:
        i = index.get(name)
        if i is not None:
            row[i] = DONE
    return "".join(row)


# --- the row model (from a status report) ------------------------------------------------------


@dataclass(frozen=True)
class Row:
    source: str
    item: str
    export_type: str  # "hour": 24 cells a day; "day": one
    cells: str
    newest_done: str | None
    age_seconds: float | None  # now - the end of the newest done partition (raw rows)

    def partition(self, index: int, axis: Axis) -> str:
        labels = axis.hour_labels if self.export_type == "hour" else axis.day_labels
        return f"{self.export_type}:{labels[index]}"

    @property
    def freshness(self) -> str:
        """What the row's end shows: the age of the newest done partition (raw), the newest
        done day (the others: snapshots and reports of a day), or "none"."""
        if self.newest_done is None:
            return "none"
        if self.age_seconds is not None:
            return human_duration(self.age_seconds)
        label = self.newest_done.rsplit(":", 1)[-1]
        return f"{label[:4]}-{label[4:6]}-{label[6:8]}" if len(label) == 8 else label


@dataclass(frozen=True)
class Section:
    source: str
    title: str
    rows: list[Row]


def report_now(report: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(report["now"]).astimezone(BEIJING)


def _age(export_type: str, newest: str | None, now: datetime) -> float | None:
    if newest is None:
        return None
    try:  # (not strptime: a thousand rows per page)
        start = datetime(int(newest[:4]), int(newest[4:6]), int(newest[6:8]),
                         int(newest[8:10] or 0), tzinfo=BEIJING)
    except ValueError:
        return None
    end = start + (timedelta(hours=1) if export_type == "hour" else timedelta(days=1))
    return max(0.0, (now - end).total_seconds())


_KNOWN = "".join(STATES)


def _clean(cells: str) -> str:
    """Only known letters (anything else, from a hand-edited report, shows as skipped)."""
    if not cells.strip(_KNOWN):
        return cells
    return "".join(c if c in STATES else SKIPPED for c in cells)


def sections(report: Mapping[str, Any], pattern: str | None = None) -> list[Section]:
    """The grid's rows from a status report, by source; ``pattern`` (a shell glob, matched
    against ``item`` and ``source:item``) keeps only the matching rows."""
    now = report_now(report)

    def keep(source: str, item: str) -> bool:
        return pattern is None or fnmatch.fnmatchcase(item, pattern) \
            or fnmatch.fnmatchcase(f"{source}:{item}", pattern)

    out: list[Section] = []
    raw: list[Row] = []
    for project in report.get("projects", []):
        for t in project["types"]:
            item = f"{project['ai']}/{t['data_type']}"
            if keep("raw", item):
                raw.append(Row("raw", item, t["export_type"], _clean(t.get("cells", "")),
                               t["newest_done"], _age(t["export_type"], t["newest_done"], now)))
    if report.get("projects"):
        out.append(Section("raw", SOURCE_TITLES["raw"], raw))
    for source, items in report.get("sources", {}).items():
        rows = [Row(source, t["item"], "day", _clean(t.get("cells", "")), t["newest_done"], None)
                for t in items if keep(source, t["item"])]
        out.append(Section(source, SOURCE_TITLES.get(source, source), rows))
    return out


def notes(report: Mapping[str, Any]) -> dict[tuple[str, str, str], str]:
    """The hover text of failed and waiting cells, by ``(source, item, partition)``."""
    out: dict[tuple[str, str, str], str] = {}
    for f in report.get("failed", []):
        if "source" in f:
            out[(f["source"], f["item"], f["partition_name"])] = (
                f"failed ({f['attempts']} attempts, {f['updated_at']}): {f['error']}")
    for w in report.get("waiting", []):
        out[(w["source"], w["item"], w["partition_name"])] = (
            f"waiting {human_duration(w['seconds'])} since the first \"being built\" answer "
            f"({w['polls']} polls): {w['reason']}")
    return out


def counts(secs: Iterable[Section]) -> dict[str, int]:
    """Cells per state letter, over every row (hour rows count hours, day rows days)."""
    total = dict.fromkeys(STATES, 0)
    for section in secs:
        for row in section.rows:
            for letter in STATES:
                total[letter] += row.cells.count(letter)
    return total


# --- the terminal ------------------------------------------------------------------------------

# Background colours (ANSI) per state: a coloured block that still carries its letter, so the
# grid reads the same for a person who cannot tell the colours apart.
_ANSI = {DONE: "30;42", PENDING: "30;47", WAITING: "30;43", FAILED: "97;41;1",
         NOT_DUE: "2", SKIPPED: "2"}
_FRESH_WIDTH = 8


def _paint(cells: str, color: bool) -> str:
    if not color:
        return cells
    return "".join(f"\x1b[{_ANSI.get(letter, '0')}m{''.join(run)}\x1b[0m"
                   for letter, run in groupby(cells))


def _split(item: str) -> tuple[str, str]:
    head, sep, tail = item.partition("/")
    return (head, tail) if sep else ("", item)


_CONTROL = {c: "?" for c in [*range(32), *range(127, 160)]}


def _fit(text: str, width: int) -> str:
    """A label: control characters (an id is config or API data; it must not drive the
    terminal) shown as ?, cut to ``width``."""
    text = text.translate(_CONTROL)
    return text.ljust(width) if len(text) <= width else text[:width - 1] + "…"


def render_terminal(report: Mapping[str, Any], width: int = 80, color: bool = False,
                    pattern: str | None = None) -> str:
    """The grid as text: hourly rows one letter per hour, days folded so that a line fits
    ``width`` columns; daily rows one letter per day. Items are grouped by their first path
    element (the project, the report's project, the CDP export kind)."""
    axis = Axis.from_json(report["grid"])
    secs = [s for s in sections(report, pattern) if s.rows]
    now = report_now(report)
    first = report["window_first_hour"]
    lines = [f"status at {now:%Y-%m-%d %H:%M} Beijing (UTC+8); window from "
             f"{first[:4]}-{first[4:6]}-{first[6:8]} {first[8:10]}:00",
             "  ".join(f"{_paint(letter, color)} {name}" for letter, (name, _) in STATES.items())]
    if not secs:
        lines.append("")
        lines.append("no item matches" if pattern else "nothing configured")
        return "\n".join(lines)
    for section in secs:
        hourly = [r for r in section.rows if r.export_type == "hour"]
        daily = [r for r in section.rows if r.export_type != "hour"]
        if hourly:
            lines += _hourly(f"{section.title}, hourly (one letter per Beijing hour)", hourly,
                             axis, width, color)
        if daily:
            lines += _daily(f"{section.title}, daily (one letter per Beijing day)", daily,
                            axis, width, color)
    return "\n".join(lines)


def _label_width(rows: Sequence[Row], width: int, room: int) -> int:
    longest = max(len(_split(r.item)[1]) + 2 for r in rows)
    return max(8, min(longest, width - room - _FRESH_WIDTH - 2))


def _grouped(rows: Sequence[Row]) -> list[tuple[str, list[Row]]]:
    groups: dict[str, list[Row]] = {}
    for r in rows:
        groups.setdefault(_split(r.item)[0], []).append(r)
    return list(groups.items())


def _hourly(title: str, rows: Sequence[Row], axis: Axis, width: int, color: bool) -> list[str]:
    label = _label_width(rows, width, HOURS)
    per_fold = max(1, (width - label - 1 - _FRESH_WIDTH - 1 + 1) // (HOURS + 1))
    label = min(label, max(8, width - 1 - per_fold * (HOURS + 1) - _FRESH_WIDTH))
    out = ["", title]
    for start in range(0, axis.days, per_fold):
        days = range(start, min(start + per_fold, axis.days))
        last = days[-1] == axis.days - 1
        out.append("")
        out.append(" " * label + " " + " ".join(
            f"{axis.day(d):%m-%d %a}".ljust(HOURS) for d in days).rstrip()
            + (" " * (HOURS - 9) + " fresh" if last else ""))
        out.append(" " * label + " " + " ".join(
            "".join(f"{h:<6}" for h in range(0, HOURS, 6)) for _ in days).rstrip())
        for group, members in _grouped(rows):
            if group:
                out.append(group.translate(_CONTROL))
            for r in members:
                cells = " ".join(_paint(r.cells[d * HOURS:(d + 1) * HOURS], color)
                                 for d in days)
                line = _fit("  " + _split(r.item)[1], label) + " " + cells
                out.append(line + (" " + r.freshness if last else ""))
    return out


def _daily(title: str, rows: Sequence[Row], axis: Axis, width: int, color: bool) -> list[str]:
    label = _label_width(rows, width, min(axis.days, 31))
    per_fold = max(1, width - label - 1 - _FRESH_WIDTH - 1)
    out = ["", title]
    for start in range(0, axis.days, per_fold):
        days = range(start, min(start + per_fold, axis.days))
        last = days[-1] == axis.days - 1
        out.append("")
        out.append(" " * label + f" {axis.day(days[0]):%m-%d} .. {axis.day(days[-1]):%m-%d}")
        out.append(" " * label + " " + "".join(f"{axis.day(d).day // 10}" for d in days))
        out.append(" " * label + " " + "".join(f"{axis.day(d).day % 10}" for d in days)
                   + ("  fresh" if last else ""))
        for group, members in _grouped(rows):
            if group:
                out.append(group.translate(_CONTROL))
            for r in members:
                line = _fit("  " + _split(r.item)[1], label) + " " \
                    + _paint(r.cells[days[0]:days[-1] + 1], color)
                out.append(line + ("  " + r.freshness if last else ""))
    return out
