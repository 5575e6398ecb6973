"""Integrity checks on a part's bytes as they stream by: size, SHA-256 and gzip.

The vendor's advice (API §2.8): compare Content-Length with the bytes received, then gunzip; if
either fails, get new links and download again. Decompression goes "to nowhere": only whether
the stream is a complete, valid gzip matters. Parts may hold several gzip members back to back
(RFC 1952 allows it; gzip, zcat and Spark read them as one file).

Inflating is the costliest thing the downloader does per byte (~15 CPU s per GiB of gzip CSV
with zlib on a 2020s server core), so it uses the fastest zlib-compatible inflate installed:
ISA-L's igzip (``isal``, a default dependency where it has wheels; about 2x zlib), else
zlib-ng (``zlib-ng``), else the standard zlib. ``GIO_INFLATE=isal|zlib-ng|zlib`` picks one
(the benchmark compares them). Each part's verifier runs in a storage worker thread, and the
inflate calls release the GIL, so different parts are checked in parallel on every core.
"""

from __future__ import annotations

import importlib
import os
import zlib
from types import ModuleType

# Bound on the output of one inflate call, so a highly compressible block cannot balloon memory.
_MAX_INFLATE_OUTPUT = 256 * 1024
_GZIP_WBITS = 16 + zlib.MAX_WBITS
# The zlib-compatible modules, fastest first: (name, module path).
INFLATE_LIBRARIES = (("isal", "isal.isal_zlib"), ("zlib-ng", "zlib_ng.zlib_ng"),
                     ("zlib", "zlib"))


def inflate_library(choice: str | None = None) -> tuple[str, ModuleType]:
    """The inflate module to use: ``choice`` (or ``$GIO_INFLATE``) if it is installed, else
    the fastest one that is."""
    wanted = choice or os.environ.get("GIO_INFLATE") or ""
    names = [n for n, _ in INFLATE_LIBRARIES]
    order = ([wanted] if wanted in names else []) + names
    paths = dict(INFLATE_LIBRARIES)
    for name in order:
        try:
            return name, importlib.import_module(paths[name])
        except ImportError:
            continue
    return "zlib", zlib


INFLATE_NAME, _INFLATE = inflate_library()
_ERRORS: tuple[type[Exception], ...] = tuple({zlib.error, _INFLATE.error})


class CorruptPart(Exception):
    """The bytes of a part are wrong (size or gzip); they must be fetched again."""


class GzipVerifier:
    """Feed it the bytes of a gzip file in order; ``close()`` says whether they were whole."""

    def __init__(self) -> None:
        self._d = _INFLATE.decompressobj(_GZIP_WBITS)
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
                    self._d = _INFLATE.decompressobj(_GZIP_WBITS)
                    self._in_member = False
                    self.members += 1
                else:
                    buf = self._d.unconsumed_tail
        except _ERRORS as exc:
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
            except _ERRORS as exc:
                raise CorruptPart(f"not a valid gzip stream: {exc}") from None
            if not self._d.eof:
                raise CorruptPart("gzip stream is truncated")
            if self._d.unused_data:
                raise CorruptPart("gzip stream has trailing bytes that are not gzip")
            self.members += 1
            self._in_member = False
        if self.members == 0:
            raise CorruptPart("empty file is not a gzip stream")
