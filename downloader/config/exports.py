"""The sources' blocks of the configuration: ``projects:`` (raw exports), ``reports:``
(statistics exports) and ``cdp:`` (CDP job exports), exports-spec §1."""

from __future__ import annotations

import re
from typing import Any

from downloader.config.model import CdpConfig, CdpExport, ConfigError, ProjectConfig, ReportConfig
from downloader.config.reader import Reader, check_url, string_list
from downloader.core.constants import ALL_DATA_TYPES, EXPORT_TYPES

_AI = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# The vendor's HashId: 8 letters or digits (exports-spec §1).
HASH_ID = re.compile(r"^[A-Za-z0-9]{8}$")
# user_variables and CDP properties are column names (exports-spec §0).
COLUMN = re.compile(r"^[A-Za-z0-9_]{1,128}$")
TAG_KEY = re.compile(r"^tag_[A-Za-z0-9_]{1,124}$")
ANALYSIS_TYPES = ("CHARTS", "FUNNELS", "RETENTIONS", "FREQUENCIES")
_ID = "an id of 8 letters or digits"


def _list_of_mappings(reader: Reader, name: str) -> list[Any]:
    reader.used.add(name)
    items = reader.data.get(name)
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{reader.file}: {reader.key(name)}: must be a non-empty list")
    return items


def projects(reader: Reader) -> tuple[ProjectConfig, ...]:
    items = _list_of_mappings(reader, "projects")
    out: list[ProjectConfig] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        proj = Reader(reader.file, item, f"projects[{i}]")
        ai = proj.string("ai", required=True)
        if not _AI.match(ai):
            proj.fail(proj.key("ai"), f"{ai!r} is not a project ID (letters and digits)")
        if ai in seen:
            proj.fail(proj.key("ai"), f"project {ai!r} is listed twice")
        seen.add(ai)
        data_types = string_list(proj, "data_types", ALL_DATA_TYPES, all_word=True)
        export_types = string_list(proj, "export_types", EXPORT_TYPES, all_word=False)
        proj.done()
        out.append(ProjectConfig(ai, data_types, export_types))
    return tuple(out)


def _ids_or_all(entry: Reader, name: str) -> tuple[str, ...] | None:
    """Ids, or None for the word ``all``."""
    if entry.data.get(name) == "all":
        entry.used.add(name)
        return None
    return entry.id_list(name, HASH_ID, _ID)


def reports(reader: Reader) -> tuple[ReportConfig, ...]:
    out: list[ReportConfig] = []
    seen: set[str] = set()
    for i, item in enumerate(_list_of_mappings(reader, "reports")):
        entry = Reader(reader.file, item, f"reports[{i}]")
        uid = entry.string("project_uid", required=True)
        if not HASH_ID.match(uid):
            entry.fail(entry.key("project_uid"), f"{uid!r} is not {_ID}")
        if uid in seen:
            entry.fail(entry.key("project_uid"), f"project {uid!r} is listed twice")
        seen.add(uid)
        interval = entry.string("interval", "day")
        if interval not in ("hour", "day"):
            entry.fail(entry.key("interval"), f"must be hour or day, not {interval!r}")
        report = ReportConfig(
            project_uid=uid,
            charts=entry.id_list("charts", HASH_ID, _ID),
            funnels=entry.id_list("funnels", HASH_ID, _ID),
            retentions=entry.id_list("retentions", HASH_ID, _ID),
            frequencies=entry.id_list("frequencies", HASH_ID, _ID),
            dashboards=_ids_or_all(entry, "dashboards"),
            segments=_ids_or_all(entry, "segments"),
            tags=entry.id_list("tags", HASH_ID, _ID),
            user_variables=entry.id_list("user_variables", COLUMN,
                                         "a variable name ([A-Za-z0-9_])"),
            rules=entry.flag("rules"),
            interval=interval,
        )
        entry.done()
        out.append(report)
    return tuple(out)


def _cdp_export(reader: Reader, index: int, item: Any) -> CdpExport:
    where = f"cdp.exports[{index}]"
    if not isinstance(item, dict) or len(item) != 1:
        raise ConfigError(f"{reader.file}: {where}: must be one of segment_users, tag_users, "
                          "analysis, each with its settings")
    (kind, body), = item.items()
    entry = Reader(reader.file, body, f"{where}.{kind}")
    if kind == "segment_users":
        project = _required_id(entry, "project_id")
        segment = _required_id(entry, "segment_id")
        export = CdpExport(kind, segment, project_id=project, segment_id=segment,
                           tags=entry.id_list("tags", HASH_ID, _ID),
                           properties=entry.id_list("properties", COLUMN, "a property name"))
    elif kind == "tag_users":
        tag_id = _hash_id(entry, "tag_id")
        tag_key = entry.string("tag_key")
        if (tag_id is None) == (tag_key is None):
            entry.fail(entry.key("tag_id"), "give either tag_id or tag_key")
        if tag_key is not None and not TAG_KEY.match(tag_key):
            entry.fail(entry.key("tag_key"), f"{tag_key!r} must start with tag_")
        detail = entry.raw("detail")
        if detail is not None and not isinstance(detail, bool):
            entry.fail(entry.key("detail"), f"must be true or false, not {detail!r}")
        ident = tag_id if tag_id is not None else str(tag_key)
        export = CdpExport(kind, ident, tag_id=tag_id, tag_key=tag_key,
                           properties=entry.id_list("properties", COLUMN, "a property name"),
                           detail=detail)
    elif kind == "analysis":
        project = _required_id(entry, "project_id")
        ident = _required_id(entry, "id")
        analysis_type = entry.string("type", required=True)
        if analysis_type not in ANALYSIS_TYPES:
            entry.fail(entry.key("type"), f"unknown analysis type {analysis_type!r} (expected "
                       f"one of {', '.join(ANALYSIS_TYPES)})")
        export = CdpExport(kind, ident, project_id=project, analysis_type=analysis_type)
    else:
        raise ConfigError(f"{reader.file}: {where}: unknown export kind {kind!r} (expected "
                          "segment_users, tag_users or analysis)")
    entry.done()
    return export


def _hash_id(entry: Reader, name: str, required: bool = False) -> str | None:
    value = entry.string(name, required=required)
    if value is not None and not HASH_ID.match(value):
        entry.fail(entry.key(name), f"{value!r} is not {_ID}")
    return str(value) if value is not None else None


def _required_id(entry: Reader, name: str) -> str:
    return str(_hash_id(entry, name, required=True))


def cdp(reader: Reader) -> CdpConfig:
    block = reader.section("cdp")
    base_url = block.string("base_url", required=True)
    check_url(block, "base_url", base_url, ("http", "https"))
    api_key = block.secret("api_key", required=True)
    charset = block.string("charset")
    exports = tuple(_cdp_export(block, i, item)
                    for i, item in enumerate(_list_of_mappings(block, "exports")))
    seen: set[tuple[str, str]] = set()
    for i, export in enumerate(exports):
        if (export.kind, export.ident) in seen:
            block.fail(f"cdp.exports[{i}]", f"{export.kind} {export.ident} is listed twice")
        seen.add((export.kind, export.ident))
    block.done()
    return CdpConfig(base_url=base_url.rstrip("/"), api_key=api_key, charset=charset,
                     exports=exports)
