"""Signed, expiring download links of the statistics simulator, and serving their bytes.

A link looks like the vendor's (growingio-api.md §4): a bucket path with `sign` and `expires`
(epoch ms) in the query, fetched without headers. The path names what it serves and a fresh
nonce, so every issuance differs while the bytes behind it stay the same; the HMAC keeps the
path and expiry from being edited.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime

from aiohttp import web

LINK_PREFIX = "/buckets/stats-download-jobs/"
CSV_CONTENT_TYPE = "text/csv"
_NO_PARAMETERS = "-"  # not a user-variable character, so it cannot clash with a real list
_PATH = re.compile(
    r"(?P<day>\d{8})/[0-9a-f]{32}/(?P<kind>segmentations|tags)/(?P<uid>[A-Za-z0-9]{8})/"
    r"(?P<item>[A-Za-z0-9]{8})/(?P<params>-|[A-Za-z0-9_,]+)/part-(?P<index>\d{5})\.csv"
)


class BadLink(Exception):
    pass


@dataclass(frozen=True)
class PartRef:
    """What a link serves: one part of one user list on one Beijing day."""

    kind: str
    uid: str
    item_id: str
    day: date
    parameters: tuple[str, ...]
    index: int


class LinkSigner:
    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def _sign(self, path: str, expires_ms: int) -> str:
        return hmac.new(self._key, f"{path}|{expires_ms}".encode(), hashlib.sha256).hexdigest()

    def issue(self, ref: PartRef, expires_ms: int) -> str:
        """The path and query of a fresh link (prefix it with the server origin)."""
        params = ",".join(ref.parameters) or _NO_PARAMETERS
        path = (
            f"{LINK_PREFIX}{ref.day:%Y%m%d}/{secrets.token_hex(16)}/{ref.kind}/{ref.uid}/"
            f"{ref.item_id}/{params}/part-{ref.index:05d}.csv"
        )
        return f"{path}?sign={self._sign(path, expires_ms)}&expires={expires_ms}"

    def verify(self, path: str, sign: str, expires: str) -> tuple[PartRef, int]:
        """Return (what the link serves, its expiry in epoch ms) or raise BadLink."""
        match = _PATH.fullmatch(path.removeprefix(LINK_PREFIX))
        if match is None or not expires.isascii() or not expires.isdigit():
            raise BadLink
        expires_ms = int(expires)
        if not hmac.compare_digest(self._sign(path, expires_ms), sign):
            raise BadLink
        params = match["params"]
        ref = PartRef(
            match["kind"],
            match["uid"],
            match["item"],
            datetime.strptime(match["day"], "%Y%m%d").date(),
            () if params == _NO_PARAMETERS else tuple(params.split(",")),
            int(match["index"]),
        )
        return ref, expires_ms




async def serve_bytes(
    request: web.Request, data: bytes, span: tuple[int, int] | None, cut_after: int | None
) -> web.StreamResponse:
    """Send `data` (or its `span`) with Content-Length; `cut_after`: end the connection after
    that many body bytes, as a reset mid-body would."""
    start, stop = span or (0, len(data))
    response = web.StreamResponse(status=206 if span else 200)
    response.content_type = CSV_CONTENT_TYPE
    response.content_length = stop - start
    response.headers["Accept-Ranges"] = "bytes"
    if span:
        response.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(data)}"
    await response.prepare(request)
    if cut_after is None:
        await response.write(data[start:stop])
        await response.write_eof()
        return response
    await response.write(data[start : start + cut_after])
    # close() (unlike abort()) flushes what was written first, so the client gets exactly
    # `cut_after` bytes before the break.
    if request.transport is not None:
        request.transport.close()
    return response
