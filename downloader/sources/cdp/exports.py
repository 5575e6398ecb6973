"""One configured CDP export (exports-spec §1 `cdp.exports`): three small frozen kinds.

Values are checked on construction, so an export that exists is one the platform can accept:
ids are `HashId`s (8 letters or digits, API §6.3) and a tag key starts `tag_` (API §6.4).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from downloader.config import model

__all__ = [
    "Analysis",
    "AnalysisType",
    "CdpExport",
    "ExportKind",
    "SegmentUsers",
    "TagUsers",
    "from_config",
    "is_hash_id",
]

_HASH_ID = re.compile(r"[A-Za-z0-9]{8}")
TAG_KEY_PREFIX = "tag_"


class ExportKind(StrEnum):
    """The config key of an export, also its `export=` folder in the lake (exports-spec §5)."""

    SEGMENT_USERS = "segment_users"
    TAG_USERS = "tag_users"
    ANALYSIS = "analysis"


class AnalysisType(StrEnum):
    """`AnalysisExportJobParam.analysisType` (API §6.4)."""

    CHARTS = "CHARTS"
    FUNNELS = "FUNNELS"
    RETENTIONS = "RETENTIONS"
    FREQUENCIES = "FREQUENCIES"


def is_hash_id(value: object) -> bool:
    return isinstance(value, str) and _HASH_ID.fullmatch(value) is not None


def _need_hash_id(field: str, value: object) -> None:
    if not is_hash_id(value):
        raise ValueError(f"{field} must be 8 letters or digits, got {value!r}")


def _names(owner: object, field: str) -> tuple[str, ...]:
    """The field as a tuple of non-empty strings (a list from a parsed config is accepted)."""
    values = getattr(owner, field)
    if not isinstance(values, list | tuple) or not all(isinstance(v, str) and v for v in values):
        raise ValueError(f"{field} must be a list of non-empty strings, got {values!r}")
    object.__setattr__(owner, field, tuple(values))
    return tuple(values)


@dataclass(frozen=True)
class SegmentUsers:
    """The users of one segment, with optional extra tag and property columns."""

    kind: ClassVar[ExportKind] = ExportKind.SEGMENT_USERS
    project_id: str
    segment_id: str
    tags: tuple[str, ...] = ()
    properties: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _need_hash_id("project_id", self.project_id)
        _need_hash_id("segment_id", self.segment_id)
        for tag in _names(self, "tags"):
            _need_hash_id("tags[]", tag)
        _names(self, "properties")

    @property
    def item_id(self) -> str:
        return self.segment_id


@dataclass(frozen=True)
class TagUsers:
    """The users of one tag, named by its id (`tag_id`) or by its key (`tag_key`), not both."""

    kind: ClassVar[ExportKind] = ExportKind.TAG_USERS
    tag_id: str | None = None
    tag_key: str | None = None
    properties: tuple[str, ...] = ()
    # `detailExport`: True is the detailed format for server callers, False the UI's compact
    # one (API §6.4); None sends nothing and leaves the platform's default.
    detail: bool | None = None

    def __post_init__(self) -> None:
        if (self.tag_id is None) == (self.tag_key is None):
            raise ValueError("a tag_users export needs exactly one of tag_id and tag_key")
        if self.tag_id is not None:
            _need_hash_id("tag_id", self.tag_id)
        if self.tag_key is not None and not (
            isinstance(self.tag_key, str)
            and self.tag_key.startswith(TAG_KEY_PREFIX)
            and len(self.tag_key) > len(TAG_KEY_PREFIX)
        ):
            raise ValueError(f"tag_key must start {TAG_KEY_PREFIX!r}, got {self.tag_key!r}")
        _names(self, "properties")
        if self.detail is not None and not isinstance(self.detail, bool):
            raise ValueError(f"detail must be true or false, got {self.detail!r}")

    @property
    def item_id(self) -> str:
        item = self.tag_id if self.tag_id is not None else self.tag_key
        assert item is not None  # __post_init__ guarantees one of them
        return item


@dataclass(frozen=True)
class Analysis:
    """The result of one saved analysis (event, funnel, retention or distribution)."""

    kind: ClassVar[ExportKind] = ExportKind.ANALYSIS
    project_id: str
    id: str
    type: AnalysisType

    def __post_init__(self) -> None:
        _need_hash_id("project_id", self.project_id)
        _need_hash_id("id", self.id)
        try:  # a plain string from a parsed config becomes the enum member
            object.__setattr__(self, "type", AnalysisType(self.type))
        except ValueError:
            kinds = "|".join(AnalysisType)
            raise ValueError(f"type must be one of {kinds}, got {self.type!r}") from None

    @property
    def item_id(self) -> str:
        return self.id


CdpExport = SegmentUsers | TagUsers | Analysis


def from_config(export: model.CdpExport) -> CdpExport:
    """The typed export of one parsed `cdp.exports` entry (config/exports.py checked it)."""
    if export.kind == ExportKind.SEGMENT_USERS:
        assert export.project_id is not None and export.segment_id is not None
        return SegmentUsers(export.project_id, export.segment_id, export.tags,
                            export.properties)
    if export.kind == ExportKind.TAG_USERS:
        return TagUsers(export.tag_id, export.tag_key, export.properties, export.detail)
    if export.kind == ExportKind.ANALYSIS:
        assert export.project_id is not None and export.analysis_type is not None
        return Analysis(export.project_id, export.ident, AnalysisType(export.analysis_type))
    raise ValueError(f"unknown CDP export kind {export.kind!r}")
