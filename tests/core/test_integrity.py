"""GzipVerifier (downloader/integrity.py): whole gzip streams pass in any chunking, broken ones
raise CorruptPart (API §2.8: if gunzip fails, get new links and download again)."""

from __future__ import annotations

import gzip
import random
import zlib

import pytest

from downloader.core import integrity
from downloader.core.integrity import INFLATE_LIBRARIES, CorruptPart, GzipVerifier


def _installed() -> list[str]:
    return [name for name, _ in INFLATE_LIBRARIES
            if integrity.inflate_library(name)[0] == name]


@pytest.fixture(autouse=True, params=_installed())
def inflate(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with each installed inflate library (isal, zlib-ng, zlib): they must
    agree on what is whole and what is corrupt."""
    name, module = integrity.inflate_library(request.param)
    monkeypatch.setattr(integrity, "_INFLATE", module)
    monkeypatch.setattr(integrity, "_ERRORS", (zlib.error, module.error))
    return name


def test_the_fastest_installed_library_is_the_default() -> None:
    assert integrity.INFLATE_NAME == _installed()[0]
    assert integrity.inflate_library("no-such")[0] == _installed()[0]

WHOLE = 0  # chunk size meaning "all bytes in one feed()"
CHUNK_SIZES = [1, 7, 4096, WHOLE]


def _csv_rows(seed: int, rows: int) -> bytes:
    rng = random.Random(seed)
    lines = ["visitUserId,sessionId,page,time,sendTime"]
    for _ in range(rows):
        lines.append(f"{rng.getrandbits(64):016x},{rng.getrandbits(32):08x},"
                     f"\"/p/{rng.randrange(1000)}?q=\\\"{rng.random():.6f}\\\"\","
                     f"{rng.randrange(10**12, 2 * 10**12)},{rng.randrange(10**12, 2 * 10**12)}")
    return ("\n".join(lines) + "\n").encode()


ROWS = _csv_rows(1, 600)  # ~40 KB of incompressible-ish CSV
ZEROS = bytes(9 * 1024 * 1024)  # inflates past the 4 MiB per-call output bound


def _members(*payloads: bytes) -> bytes:
    return b"".join(gzip.compress(p, mtime=0) for p in payloads)


def feed(data: bytes, chunk: int) -> GzipVerifier:
    verifier = GzipVerifier()
    step = chunk or max(1, len(data))
    for i in range(0, len(data), step):
        verifier.feed(data[i:i + step])
    verifier.close()
    return verifier


VALID = [
    pytest.param(_members(ROWS), 1, len(ROWS), id="single-member"),
    pytest.param(_members(b"header\n"), 1, 7, id="tiny-member"),
    pytest.param(_members(b""), 1, 0, id="member-of-empty-text"),
    pytest.param(_members(ROWS[:1000], ROWS[1000:20000], ROWS[20000:]), 3, len(ROWS),
                 id="three-members"),
    pytest.param(_members(b"a,b\n", b"", b"c,d\n"), 3, 8, id="members-with-an-empty-one"),
]


@pytest.mark.parametrize("chunk", CHUNK_SIZES, ids=lambda c: f"chunk-{c or 'whole'}")
@pytest.mark.parametrize(("data", "members", "inflated"), VALID)
def test_valid_gzip_passes(data: bytes, members: int, inflated: int, chunk: int) -> None:
    verifier = feed(data, chunk)
    assert verifier.members == members
    assert verifier.inflated_bytes == inflated


@pytest.mark.parametrize("chunk", [4096, WHOLE], ids=lambda c: f"chunk-{c or 'whole'}")
def test_highly_compressible_members(chunk: int) -> None:
    # 9 MiB of zeros is ~9 KB of gzip: one feed() needs several bounded inflate calls.
    verifier = feed(_members(ZEROS, ZEROS[:5]), chunk)
    assert verifier.members == 2
    assert verifier.inflated_bytes == len(ZEROS) + 5


def test_member_boundary_at_a_chunk_boundary() -> None:
    first, second = _members(ROWS[:500]), _members(ROWS[500:])
    verifier = GzipVerifier()
    verifier.feed(first)
    verifier.feed(second)
    verifier.close()
    assert verifier.members == 2


def _flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0xFF
    return bytes(out)


GOOD = _members(ROWS)
TWO = _members(ROWS[:2000], ROWS[2000:])

CORRUPT = [
    pytest.param(b"", id="empty-input"),
    pytest.param(GOOD[:-1], id="truncated-by-one-byte"),
    pytest.param(GOOD[:-8], id="truncated-trailer"),
    pytest.param(GOOD[: len(GOOD) // 2], id="truncated-in-the-middle"),
    pytest.param(GOOD[:10], id="header-only"),
    pytest.param(GOOD[:1], id="one-byte"),
    pytest.param(TWO[:-3], id="second-member-truncated"),
    pytest.param(_flip(GOOD, 0), id="flipped-magic"),
    pytest.param(_flip(GOOD, len(GOOD) // 2), id="flipped-middle"),
    pytest.param(_flip(GOOD, 20), id="flipped-early-deflate-byte"),
    pytest.param(_flip(GOOD, len(GOOD) - 8), id="flipped-crc"),
    pytest.param(_flip(GOOD, len(GOOD) - 1), id="flipped-size"),
    pytest.param(GOOD + b"trailing garbage", id="trailing-garbage"),
    pytest.param(GOOD + b"\x00" * 8, id="trailing-zeros"),
    pytest.param(GOOD + b"\x1f", id="trailing-partial-magic"),
    pytest.param(GOOD + GOOD[:30], id="trailing-partial-member"),
    pytest.param(ROWS, id="plain-csv"),
    pytest.param(zlib.compress(ROWS), id="zlib-not-gzip"),
]


@pytest.mark.parametrize("chunk", CHUNK_SIZES, ids=lambda c: f"chunk-{c or 'whole'}")
@pytest.mark.parametrize("data", CORRUPT)
def test_corrupt_gzip_raises(data: bytes, chunk: int) -> None:
    with pytest.raises(CorruptPart):
        feed(data, chunk)


def test_empty_feeds_are_still_empty() -> None:
    verifier = GzipVerifier()
    verifier.feed(b"")
    verifier.feed(b"")
    with pytest.raises(CorruptPart, match="empty"):
        verifier.close()
