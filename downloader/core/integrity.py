"""Integrity checks on a part's bytes as they stream by: size, SHA-256 and gzip.

The vendor's advice (API §2.8): compare Content-Length with the bytes received, then gunzip; if
either fails, get new links and download again. Decompression goes "to nowhere": only whether
the stream is a complete, valid gzip matters. Parts may hold several gzip members back to back
(RFC 1952 allows it; gzip, zcat and Spark read them as one file).
"""

from __future__ import annotations

import zlib

# Bound on the output of one inflate call, so a highly compressible block cannot balloon memory.
_MAX_INFLATE_OUTPUT = 256 * 1024
_GZIP_WBITS = 16 + zlib.MAX_WBITS


class CorruptPart(Exception):
    """The bytes of a part are wrong (size or gzip); they must be fetched again."""


class GzipVerifier:
    """Feed it the bytes of a gzip file in order; ``close()`` says whether they were whole."""

    def __init__(self) -> None:
        self._d = zlib.decompressobj(_GZIP_WBITS)
        self._in_member = False
        self.members = 0
        self.inflated_bytes = 0

    def feed(self, data: bytes | memoryview) -> None:
        buf: bytes | memoryview = data
        try:
            while buf:
                self._in_member = True
                out = self._d.decompress(buf, _MAX_INFLATE_OUTPUT)
                self.inflated_bytes += len(out)
                if self._d.eof:
                    buf = self._d.unused_data
                    self._d = zlib.decompressobj(_GZIP_WBITS)
                    self._in_member = False
                    self.members += 1
                else:
                    buf = self._d.unconsumed_tail
        except zlib.error as exc:
            raise CorruptPart(f"not a valid gzip stream: {exc}") from None

    def close(self) -> None:
        """Raise CorruptPart unless the bytes fed so far end exactly at a member's end."""
        if self._in_member:
            try:
                while not self._d.eof:
                    out = self._d.decompress(self._d.unconsumed_tail, _MAX_INFLATE_OUTPUT)
                    self.inflated_bytes += len(out)
                    if not out:
                        break
            except zlib.error as exc:
                raise CorruptPart(f"not a valid gzip stream: {exc}") from None
            if not self._d.eof:
                raise CorruptPart("gzip stream is truncated")
            if self._d.unused_data:
                raise CorruptPart("gzip stream has trailing bytes that are not gzip")
            self.members += 1
            self._in_member = False
        if self.members == 0:
            raise CorruptPart("empty file is not a gzip stream")
