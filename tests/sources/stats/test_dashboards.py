"""Reading the v1 lists and merging dashboard items with the explicit ones."""

from __future__ import annotations

import json
from typing import Any

import pytest

from downloader.sources.stats.dashboards import (
    ReportItems,
    dashboard_entries,
    dashboard_ids,
    expand_dashboards,
    segmentation_ids,
)


def board(*charts: tuple[str, str]) -> bytes:
    entries = [{"id": i, "name": "图", "resource_type": t} for t, i in charts]
    return json.dumps({"id": "Db01Ab23", "name": "看板", "charts": entries}).encode()


@pytest.mark.parametrize(
    ("boards", "explicit", "expected"),
    [
        ([], {}, ReportItems()),
        ([board()], {"charts": ["Ch000001"]}, ReportItems(charts=("Ch000001",))),
        (
            [board(("chart", "Ch000002"), ("funnel", "Fn000001"), ("retention", "Rt000001"))],
            {"charts": ["Ch000001"]},
            ReportItems(("Ch000001", "Ch000002"), ("Fn000001",), ("Rt000001",)),
        ),
        (  # an item on a dashboard and in the explicit list is asked once, explicit order first
            [board(("chart", "Ch000002"), ("chart", "Ch000001"))],
            {"charts": ["Ch000001", "Ch000003"]},
            ReportItems(charts=("Ch000001", "Ch000003", "Ch000002")),
        ),
        (  # the same item on two dashboards, and twice on one
            [board(("funnel", "Fn000002"), ("funnel", "Fn000002")), board(("funnel", "Fn000002"),
             ("funnel", "Fn000001"))],
            {},
            ReportItems(funnels=("Fn000002", "Fn000001")),
        ),
        (  # the same id under two kinds stays in both: they are different endpoints
            [board(("chart", "Ab000001"), ("retention", "Ab000001"))],
            {"retentions": ["Rt000009"]},
            ReportItems(charts=("Ab000001",), retentions=("Rt000009", "Ab000001")),
        ),
    ],
)  # fmt: skip
def test_expand_dashboards(
    boards: list[bytes], explicit: dict[str, list[str]], expected: ReportItems
) -> None:
    assert expand_dashboards(boards, **explicit) == expected


def test_explicit_duplicates_collapse() -> None:
    assert expand_dashboards([], charts=["A0000001", "A0000001"]).charts == ("A0000001",)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{", "not JSON"),
        (b"[]", "charts"),
        (b'{"id":"Db01Ab23"}', "charts"),
        (b'{"charts":{}}', "charts"),
        (b'{"charts":[1]}', "charts"),
        (b'{"charts":[{"id":"Fq000001","resource_type":"frequency"}]}', "resource_type"),
        (b'{"charts":[{"id":"Ch000001"}]}', "resource_type"),
        (b'{"charts":[{"resource_type":"chart"}]}', "without an id"),
        (b'{"charts":[{"id":"","resource_type":"chart"}]}', "without an id"),
    ],
)
def test_malformed_dashboards_raise(body: bytes, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        dashboard_entries(body)


def test_dashboard_entries_keep_order() -> None:
    body = board(("retention", "R1000000"), ("chart", "C1000000"))
    assert dashboard_entries(body) == (("retention", "R1000000"), ("chart", "C1000000"))


LIST: list[dict[str, Any]] = [{"id": "Db000002", "name": "b"}, {"id": "Db000001", "name": "a"}]


@pytest.mark.parametrize("reader", [dashboard_ids, segmentation_ids])
def test_list_ids_in_served_order(reader: Any) -> None:
    assert reader(json.dumps(LIST + LIST[:1]).encode()) == ("Db000002", "Db000001")
    assert reader(b"[]") == ()


@pytest.mark.parametrize("body", [b"{}", b'[{"name":"a"}]', b"[1]", b"nope", b'[{"id":7}]'])
@pytest.mark.parametrize("reader", [dashboard_ids, segmentation_ids])
def test_malformed_lists_raise(reader: Any, body: bytes) -> None:
    with pytest.raises(ValueError):
        reader(body)
