"""Serving one part's bytes: ranges, object-store errors, and the faults that bend a body.

`stream_part` writes a part by hand, so it can throttle, cut, or corrupt what it sends.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from downloader.sim.partstore import ExpectedPart

# The parts are .gz files served as is, as S3 serves an object: no Content-Encoding.
PART_CONTENT_TYPE = "application/octet-stream"
# Read size when streaming a part by hand (faults, throttling).
STREAM_CHUNK = 256 * 1024
# A throttled download writes this many slices per second, so the rate is smooth.
THROTTLE_SLICES_PER_SECOND = 20
# Bytes inverted in the middle of a corrupted body: one run is enough to break the gzip CRC.
CORRUPT_RUN_BYTES = 64


def s3_error(code: str, message: str, status: int = 403) -> web.Response:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{message}</Message></Error>"
    )
    return web.Response(status=status, text=body, content_type="application/xml")


def resolve_range(request: web.Request, size: int) -> tuple[int, int] | None:
    """The [start, stop) a Range header asks for, as FileResponse reads it; None without one.

    Raises ValueError when the range is malformed or not satisfiable (416).
    """
    rng = request.http_range
    if rng.start is None:
        return None
    if rng.start < 0:
        start, stop = max(0, size + rng.start), size
    else:
        start, stop = rng.start, min(size, rng.stop if rng.stop is not None else size)
    if start >= size:
        raise ValueError("range not satisfiable")
    return start, stop


async def stream_part(
    request: web.Request,
    part: ExpectedPart,
    span: tuple[int, int] | None,
    to_send: int,
    *,
    rate: int | None,
    cut: bool = False,
    corrupt: bool = False,
) -> web.StreamResponse:
    """Serve a part by hand, at most `rate` bytes per second when that is set.

    `cut`: send `to_send` bytes (fewer than the body), then end the connection mid-body.
    `corrupt`: invert a run of bytes in the middle of the body; the length stays right.
    """
    start, stop = span or (0, part.size)
    length = stop - start
    response = web.StreamResponse(status=206 if span else 200)
    response.content_type = PART_CONTENT_TYPE
    response.content_length = length
    response.headers["Accept-Ranges"] = "bytes"
    if span:
        response.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{part.size}"
    await response.prepare(request)
    flip_lo = length // 2
    flip_hi = min(length, flip_lo + CORRUPT_RUN_BYTES) if corrupt else flip_lo
    chunk = max(1, min(STREAM_CHUNK, rate // THROTTLE_SLICES_PER_SECOND)) if rate else STREAM_CHUNK
    began, sent = time.monotonic(), 0
    with part.path.open("rb") as f:
        f.seek(start)
        while sent < to_send:
            data = f.read(min(chunk, to_send - sent))
            if sent < flip_hi and sent + len(data) > flip_lo:
                buf = bytearray(data)
                for i in range(max(flip_lo, sent), min(flip_hi, sent + len(data))):
                    buf[i - sent] ^= 0xFF
                data = bytes(buf)
            await response.write(data)
            sent += len(data)
            if rate:
                delay = began + sent / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
    if cut:
        # End the connection mid-body. close() (unlike abort()) first flushes what was written,
        # so the client gets exactly `to_send` bytes before the break, as on a real reset.
        if request.transport is not None:
            request.transport.close()
    else:
        await response.write_eof()
    return response
