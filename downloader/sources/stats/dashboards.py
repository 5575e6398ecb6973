"""Reading the v1 lists (exports-spec.md §3): dashboards, their charts, segments.

`dashboards: all` and `segments: all` are answered by `dashboards.json` and `segmentations.json`;
each `dashboards/{id}.json` names its items with a `resource_type` that picks the V3 endpoint.
Items found on dashboards join the explicit lists, each once, in first-seen order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# `resource_type` of a dashboard entry (growingio-api.md §5, old docs).
RESOURCE_TYPES: tuple[str, ...] = ("chart", "funnel", "retention")


@dataclass(frozen=True)
class ReportItems:
    charts: tuple[str, ...] = ()
    funnels: tuple[str, ...] = ()
    retentions: tuple[str, ...] = ()


def _list_of_objects(body: bytes, what: str) -> list[dict[str, Any]]:
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"{what} is not JSON: {exc}") from exc
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ValueError(f"{what} is not a list of objects")
    return value


def _ids(entries: list[dict[str, Any]], what: str) -> tuple[str, ...]:
    ids: list[str] = []
    for entry in entries:
        item = entry.get("id")
        if not isinstance(item, str) or not item:
            raise ValueError(f"{what} has an entry without an id")
        ids.append(item)
    return tuple(dict.fromkeys(ids))


def dashboard_ids(body: bytes) -> tuple[str, ...]:
    """The ids in `dashboards.json`, in the order served."""
    return _ids(_list_of_objects(body, "dashboards.json"), "dashboards.json")


def segmentation_ids(body: bytes) -> tuple[str, ...]:
    """The ids in `segmentations.json`, in the order served."""
    return _ids(_list_of_objects(body, "segmentations.json"), "segmentations.json")


def dashboard_entries(body: bytes) -> tuple[tuple[str, str], ...]:
    """(resource_type, id) of each chart of one `dashboards/{id}.json`, in order.

    An unknown or missing `resource_type` is an error, not something to skip quietly.
    """
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"dashboard is not JSON: {exc}") from exc
    charts = value.get("charts") if isinstance(value, dict) else None
    if not isinstance(charts, list) or not all(isinstance(c, dict) for c in charts):
        raise ValueError("dashboard has no list of charts")
    entries = []
    for chart in charts:
        kind, item = chart.get("resource_type"), chart.get("id")
        if kind not in RESOURCE_TYPES:
            raise ValueError(f"dashboard chart {item!r} has an unknown resource_type {kind!r}")
        if not isinstance(item, str) or not item:
            raise ValueError(f"dashboard has a {kind} without an id")
        entries.append((kind, item))
    return tuple(entries)


def expand_dashboards(
    dashboards: Iterable[bytes],
    charts: Sequence[str] = (),
    funnels: Sequence[str] = (),
    retentions: Sequence[str] = (),
) -> ReportItems:
    """The explicit items, then those found on the dashboards, each once, order kept."""
    found: dict[str, dict[str, None]] = {
        "chart": dict.fromkeys(charts),
        "funnel": dict.fromkeys(funnels),
        "retention": dict.fromkeys(retentions),
    }
    for body in dashboards:
        for kind, item in dashboard_entries(body):
            found[kind].setdefault(item, None)
    return ReportItems(tuple(found["chart"]), tuple(found["funnel"]), tuple(found["retention"]))
