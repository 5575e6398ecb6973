"""A windowed result (`meta` + `data`) as data.csv, per exports-spec.md §5.

UTF-8, RFC 4180: a header row of the `meta` names, then one row per `data` row, CRLF line ends,
fields with `,` `"` CR or LF quoted and `"` doubled, no backslash escapes. Cells: strings as they
are, numbers as their JSON text (read without a float round trip), null empty, booleans
`true`/`false`, arrays and objects as compact JSON with non-ASCII kept.
"""

from __future__ import annotations

import json
from typing import Any

_NEEDS_QUOTES = (",", '"', "\r", "\n")


class _Number(str):
    """A JSON number kept as the text it was written with."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _compact(value: Any) -> str:
    """Compact JSON of a parsed value, numbers as written, non-ASCII kept."""
    if isinstance(value, _Number):
        return str(value)
    if isinstance(value, dict):
        items = (f"{_compact(str(k))}:{_compact(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_compact(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)  # str, bool, None


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, _Number):
        return str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return _compact(value)


def _field(text: str) -> str:
    if any(c in text for c in _NEEDS_QUOTES):
        return '"' + text.replace('"', '""') + '"'
    return text


def _row(cells: list[str]) -> str:
    return ",".join(_field(c) for c in cells) + "\r\n"


def to_csv(result: bytes) -> bytes:
    """data.csv for one result body; ValueError when it is not JSON or `meta`/`data` are bad."""
    try:
        obj = json.loads(
            result, parse_int=_Number, parse_float=_Number, parse_constant=_reject_constant
        )
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"result is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise ValueError("result is not a JSON object")
    meta, data = obj.get("meta"), obj.get("data")
    if not isinstance(meta, list) or not all(
        isinstance(m, dict) and type(m.get("name")) is str for m in meta  # not a _Number
    ):
        raise ValueError("result `meta` is missing or not a list of objects with a `name`")
    if not isinstance(data, list):
        raise ValueError("result `data` is missing or not a list")
    lines = [_row([m["name"] for m in meta])]
    for n, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(meta):
            raise ValueError(f"result `data` row {n} is not a list of {len(meta)} cells")
        lines.append(_row([_cell(v) for v in row]))
    return "".join(lines).encode()
