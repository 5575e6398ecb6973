"""The pieces of an S3 upload in memory: 8 MiB buffers, their checksums, and the bounded pool
that lends them.

Buffers are anonymous memory maps, kept by the pool for reuse while parts are uploading: a
fresh map costs a page fault per 4 KiB on first write (about 0.4 CPU seconds per GiB). They go
back to the operating system as soon as no part is open, so an idle daemon holds none. A buffer
is sent as one memoryview of its map, not read in 256 KiB slices through the executor.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import mmap
import zlib
from typing import Any

from aiohttp import payload

# S3 needs every part of a multipart upload but the last to be at least 5 MiB (AWS documents
# 5 MiB-5 GiB and at most 10,000 parts; SeaweedFS enforces the same minimum). 8 MiB parts make a
# ~64 MB export part 8 UploadParts and bound memory to two 8 MiB buffers per download.
PART_BYTES = 8 * 1024 * 1024

# The checksum each UploadPart / PutObject carries, which the server verifies before it stores
# the bytes. CRC32 (x-amz-checksum-crc32) costs a third of MD5 (0.45 vs 1.5 CPU s per GiB here)
# and is used where the start-up probe saw the server reject a wrong one; Content-MD5 otherwise,
# which S3 and the S3-compatible servers check (moto, a test double, does not).
CRC32, MD5 = "crc32", "md5"


class Checksum:
    """A running checksum of one upload piece, in the form its request header wants."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._md5 = hashlib.md5() if kind == MD5 else None
        self._crc = 0

    def update(self, data: memoryview | bytes) -> None:
        if self._md5 is not None:
            self._md5.update(data)
        else:
            self._crc = zlib.crc32(data, self._crc)

    def b64(self) -> str:
        raw = self._md5.digest() if self._md5 is not None else self._crc.to_bytes(4, "big")
        return base64.b64encode(raw).decode()

    def request_args(self) -> dict[str, str]:
        """The keyword of put_object / upload_part that carries it."""
        return {"ContentMD5": self.b64()} if self.kind == MD5 else {"ChecksumCRC32": self.b64()}

    @classmethod
    def of(cls, kind: str, data: bytes) -> Checksum:
        c = cls(kind)
        c.update(data)
        return c


class PartBuffer(io.RawIOBase):
    """The bytes of one UploadPart in an anonymous memory map, read back as a file.

    A file because botocore takes file bodies (and can rewind them for a retry). A map because
    its pages go back to the OS on close(), while 8 MiB blocks grown by realloc from several
    executor threads end up in glibc's per-thread arenas, which keep them after they are freed.
    """

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self._map = mmap.mmap(-1, capacity)
        self.size = 0
        self._pos = 0

    def clear(self) -> None:
        """Empty it for the next piece (the pages stay: that is the point of reuse)."""
        self.size = self._pos = 0

    def append(self, data: memoryview) -> None:
        end = self.size + len(data)
        self._map[self.size:end] = data
        self.size = end

    def remaining(self) -> memoryview:
        """The bytes from the read position on, without a copy; the position moves past them."""
        view = memoryview(self._map)[self._pos:self.size]
        self._pos = self.size
        return view

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), self.size - self._pos))
        if n:
            with memoryview(self._map) as view, memoryview(buffer) as out:
                out[:n] = view[self._pos:self._pos + n]
            self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        """One copy per read (RawIOBase's default makes two)."""
        end = self.size if size < 0 else min(self.size, self._pos + size)
        data = self._map[self._pos:end] if end > self._pos else b""
        self._pos = max(self._pos, end)
        return data

    def close(self) -> None:
        if not self.closed:
            # A request still holding a view of the map (one cancelled mid-send) keeps it; it
            # is then freed with the last view.
            with contextlib.suppress(BufferError):
                self._map.close()
        super().close()


class PartBufferPayload(payload.Payload):
    """How aiohttp sends a PartBuffer body: one write of a memoryview of the map, which the
    event loop hands to the socket as it is. aiohttp's file payload would instead read it in
    256 KiB copies, one executor job each (32 per UploadPart). botocore rewinds the body before
    a retry, so each send starts at the read position."""

    _value: PartBuffer

    def __init__(self, value: PartBuffer, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("content_type", "application/octet-stream")
        super().__init__(value, *args, **kwargs)
        self._size = value.size - value.tell()

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("an upload part is binary")

    async def write(self, writer: Any) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        view = self._value.remaining()
        await writer.write(view if content_length is None else view[:content_length])


# First, ahead of aiohttp's own file payload: aiobotocore hands file bodies over wrapped in a
# proxy that is an instance of the wrapped class but not of that type.
payload.PAYLOAD_REGISTRY.register(PartBufferPayload, PartBuffer, order=payload.Order.try_first)


class BufferPool:
    """The upload buffers of one storage: lent to its open parts, within a memory budget."""

    def __init__(self, threads: int) -> None:
        # Each downloading part fills one 8 MiB buffer; this many of them may also have a
        # second one uploading meanwhile. Overlap only where the memory budget allows: measured
        # with 8 x 64 MB parts on loopback, each spare buffer is ~8 MB of peak RSS.
        self._spares = max(1, threads // 4)
        # Buffers kept for reuse while parts are open: never more than can be in use at once.
        self._keep = threads + self._spares
        self._free: list[PartBuffer] = []
        self._open_sinks = 0

    def take_spare(self) -> bool:
        if self._spares <= 0:
            return False
        self._spares -= 1
        return True

    def give_spare(self, _done: object = None) -> None:
        self._spares += 1

    def take_buffer(self) -> PartBuffer:
        return self._free.pop() if self._free else PartBuffer(PART_BYTES)

    def give_back(self, buf: PartBuffer) -> None:
        """A buffer no request holds any more: kept for the next piece while parts are open."""
        if self._open_sinks and len(self._free) < self._keep and not buf.closed:
            buf.clear()
            self._free.append(buf)
        else:
            buf.close()

    def sink_opened(self) -> None:
        self._open_sinks += 1

    def sink_closed(self) -> None:
        self._open_sinks -= 1
        if not self._open_sinks:  # nothing uploading: the memory goes back to the OS
            self.release()

    def release(self) -> None:
        """Close the buffers kept for reuse: their memory goes back to the OS."""
        free, self._free = self._free, []
        for buf in free:
            buf.close()
