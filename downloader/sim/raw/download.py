"""Serving one part's bytes: ranges, validators, object-store errors, and bent bodies.

`send_part` writes a part straight from its cache file (sendfile) when nothing bends it, or by
hand when a knob throttles, cuts, corrupts, stalls or re-compresses it.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import BinaryIO

from aiohttp import web

from downloader.sim.raw.faults import Faults

# The parts are .gz files served as is, as S3 serves an object: no Content-Encoding.
PART_CONTENT_TYPE = "application/octet-stream"
# Read size when streaming a part by hand (faults, throttling).
STREAM_CHUNK = 256 * 1024
# A cut connection is closed this long after its last byte was written.
CUT_PAUSE_SECONDS = 0.05
# A throttled download writes this many slices per second, so the rate is smooth.
THROTTLE_SLICES_PER_SECOND = 20
# Bytes inverted in the middle of a corrupted body: one run is enough to break the gzip CRC.
CORRUPT_RUN_BYTES = 64
# aiohttp's and nginx's default limit on one response header is 8,190 bytes; go well past it.
HUGE_HEADER_BYTES = 16 * 1024
# How often a stalled download looks whether the client has gone.
STALL_POLL_SECONDS = 0.05
# wbits for zlib that write a gzip wrapper (RFC 1952) rather than a zlib one.
GZIP_WBITS = 31


@dataclass(frozen=True)
class Bending:
    """How `send_part` departs from a plain, full-speed body."""

    rate: int | None = None  # bytes per second
    cut_after: int | None = None  # send this many bytes, then end the connection
    corrupt: bool = False  # invert a run of bytes in the middle
    stall_after: int | None = None  # after this many bytes, send nothing for stall_seconds
    stall_seconds: float = 0.0
    gzip: bool = False  # compress the body again, Content-Encoding: gzip (a proxy)

    @property
    def plain(self) -> bool:
        return self == Bending()


def s3_error(code: str, message: str, status: int = 403) -> web.Response:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{message}</Message></Error>"
    )
    return web.Response(status=status, text=body, content_type="application/xml")




def if_range_holds(value: str, etag: str, modified: datetime) -> bool:
    """RFC 9110 §13.1.5: may a Range be honoured under this If-Range value?

    An entity tag matches by strong comparison only (a weak tag never does); a date matches
    only when it equals Last-Modified exactly. Anything else, unparsable dates included, fails.
    """
    value = value.strip()
    if value.startswith('"') or value.startswith("W/"):
        return value == etag
    try:
        return parsedate_to_datetime(value) == modified
    except (TypeError, ValueError):
        return False


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding value allows gzip (RFC 9110 §12.5.3, q=0 means "not")."""
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        name, *params = (p.strip() for p in item.split(";"))
        q = 1.0
        for param in params:
            key, _, number = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(number)
                except ValueError:
                    q = 0.0
        if name:
            weights[name.lower()] = q
    return weights.get("gzip", weights.get("x-gzip", weights.get("*", 0.0))) > 0


def choose_bending(
    take: Callable[[str], bool], faults: Faults, length: int, accept_encoding: str
) -> tuple[Bending, dict[str, str], str]:
    """The bending, extra headers and outcome word for a body of `length` bytes.

    `take(name)` consumes one count of a fault counter. Drop, corrupt and stall exclude each
    other (in that order); a huge header, gzip transfer and throttling combine with any.
    """
    bend, headers, outcome = Bending(rate=faults.throttle_bytes_per_second), {}, "ok"
    if take("drop"):  # always fewer bytes than the body, so the break is visible
        bend, outcome = replace(bend, cut_after=min(faults.drop_after_bytes, length - 1)), "dropped"
    elif take("corrupt"):
        bend, outcome = replace(bend, corrupt=True), "corrupt"
    elif take("stall"):
        after = min(faults.stall_after_bytes, length)
        bend = replace(bend, stall_after=after, stall_seconds=faults.stall_seconds)
        outcome = "stalled"
    if take("huge_header"):
        headers["X-Amz-Meta-Padding"] = "x" * HUGE_HEADER_BYTES
        outcome = "huge_header" if outcome == "ok" else outcome
    if faults.gzip_transfer and accepts_gzip(accept_encoding):
        bend = replace(bend, gzip=True)
        outcome = "gzip_transfer" if outcome == "ok" else outcome
    return bend, headers, outcome


async def send_part(
    request: web.Request,
    path: Path,
    span: tuple[int, int] | None,
    size: int,
    headers: dict[str, str],
    bend: Bending,
) -> web.StreamResponse:
    """Send bytes [span) (the whole file without one) of a part of `size` bytes."""
    start, stop = span or (0, size)
    response = web.StreamResponse(status=206 if span else 200, headers=headers)
    response.content_type = PART_CONTENT_TYPE
    response.headers["Accept-Ranges"] = "bytes"
    if span:
        response.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    if bend.gzip:  # length unknown ahead: chunked; a proxy's ETag for a new encoding is weak
        response.headers["Content-Encoding"] = "gzip"
        response.headers["Vary"] = "Accept-Encoding"
        if "ETag" in headers and not headers["ETag"].startswith("W/"):
            response.headers["ETag"] = "W/" + headers["ETag"]
    else:
        response.content_length = stop - start
    await response.prepare(request)
    with path.open("rb") as f:
        loop, transport = asyncio.get_running_loop(), request.transport
        # sendfile costs far less CPU per GiB; uvloop (the CLI's loop) does not offer it.
        if bend.plain and transport is not None and isinstance(loop, asyncio.BaseEventLoop):
            await loop.sendfile(transport, f, start, stop - start)
        else:
            f.seek(start)
            if not await _write_bent(request, response, f, stop - start, bend):
                return response
    await response.write_eof()
    return response


async def _write_bent(
    request: web.Request, response: web.StreamResponse, f: BinaryIO, length: int, bend: Bending
) -> bool:
    """Write `length` bytes of `f` as `bend` says; False when the connection was ended here."""
    to_send = length if bend.cut_after is None else bend.cut_after
    flip_lo = length // 2
    flip_hi = min(length, flip_lo + CORRUPT_RUN_BYTES) if bend.corrupt else flip_lo
    rate = bend.rate
    chunk = max(1, min(STREAM_CHUNK, rate // THROTTLE_SLICES_PER_SECOND)) if rate else STREAM_CHUNK
    packer = zlib.compressobj(6, zlib.DEFLATED, GZIP_WBITS) if bend.gzip else None
    began, sent = time.monotonic(), 0
    while sent < to_send:
        want = min(chunk, to_send - sent)
        if bend.stall_after is not None and sent < bend.stall_after:
            want = min(want, bend.stall_after - sent)
        data = f.read(want)
        if sent < flip_hi and sent + len(data) > flip_lo:
            buf = bytearray(data)
            for i in range(max(flip_lo, sent), min(flip_hi, sent + len(data))):
                buf[i - sent] ^= 0xFF
            data = bytes(buf)
        await response.write(packer.compress(data) if packer else data)
        sent += len(data)
        if rate:
            delay = began + sent / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        if sent == bend.stall_after and not await _stall(request, bend.stall_seconds):
            return False
    if packer is not None:
        await response.write(packer.flush())
    if bend.cut_after is not None:
        # End the connection mid-body. close() (unlike abort()) first flushes what was written,
        # so the client gets exactly `cut_after` bytes before the break, as on a real reset.
        # A moment first, as a network would take: a client reading as fast as it can has the
        # bytes before it learns of the break (aiohttp drops what it had not read by then).
        await asyncio.sleep(CUT_PAUSE_SECONDS)
        if request.transport is not None:
            request.transport.close()
        return False
    return True


async def _stall(request: web.Request, seconds: float) -> bool:
    """Send nothing for `seconds`, keeping the connection; False if the client left meanwhile."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        transport = request.transport
        if transport is None or transport.is_closing():
            return False
        await asyncio.sleep(min(STALL_POLL_SECONDS, left))
    return True
