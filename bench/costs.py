"""Reference costs that explain the figures: how fast this disk writes (dd, with and without
fsync) and what each per-byte job costs on one core (SHA-256, MD5, gzip inflate) on a real part."""

from __future__ import annotations

import hashlib
import sys
import time
import zlib
from pathlib import Path
from typing import Any

from measure import timed

GIB = 1024 ** 3
BLOCK = 1024 * 1024


def _inflate_all(data: memoryview) -> int:
    """Inflate concatenated gzip members as a verifier would, 1 MiB of input at a time."""
    out = 0
    d = zlib.decompressobj(wbits=31)
    for i in range(0, len(data), BLOCK):
        chunk = bytes(data[i:i + BLOCK])
        while chunk:
            out += len(d.decompress(chunk))
            if d.eof:
                chunk = d.unused_data
                d = zlib.decompressobj(wbits=31)
            else:
                chunk = b""
    return out


def _per_gib(seconds: float, nbytes: int) -> float:
    return round(seconds * GIB / nbytes, 3)


def per_byte(sample: Path) -> dict[str, Any]:
    data = sample.read_bytes()
    view = memoryview(data)
    out: dict[str, Any] = {"sample_bytes": len(data)}
    for name in ("sha256", "md5"):
        h = hashlib.new(name)
        t0 = time.process_time()
        for i in range(0, len(data), BLOCK):
            h.update(view[i:i + BLOCK])
        out[f"{name}_cpu_s_per_gib"] = _per_gib(time.process_time() - t0, len(data))
    t0 = time.process_time()
    inflated = _inflate_all(view)
    out["inflate_cpu_s_per_gib"] = _per_gib(time.process_time() - t0, len(data))
    out["inflated_bytes"] = inflated
    out["compression_ratio"] = round(inflated / len(data), 2)
    return out


# What the downloader's process holds before it downloads anything: the RSS floor.
IMPORT_FLOORS = {
    "local": "import downloader.cli, downloader.engine.runner, downloader.storage.local, aiohttp, "
             "uvloop",
    "s3": "import downloader.cli, downloader.engine.runner, downloader.storage.s3, aiohttp, uvloop",
}


def measure(work: Path, cache: Path, logs: Path, quick: bool,
            env: dict[str, str] | None = None, cwd: Path | None = None) -> dict[str, Any]:
    count = 32 if quick else 128  # x 8 MiB
    out: dict[str, Any] = {}
    for name, code in IMPORT_FLOORS.items():
        run = timed(f"import floor {name}", [sys.executable, "-c", code], log=logs / "dd.log",
                    env=env, cwd=cwd, flush=False)
        out[f"import_rss_mib_{name}"] = run.rss_mib if run.ok else None
    print(f"  RSS after the imports alone: local {out['import_rss_mib_local']} MiB, "
          f"S3 {out['import_rss_mib_s3']} MiB", flush=True)
    target = work / "dd.bin"
    for name, extra in (("dd_fsync", ["conv=fsync"]), ("dd_page_cache", [])):
        run = timed(name, ["dd", "if=/dev/zero", f"of={target}", "bs=8M", f"count={count}",
                           *extra], log=logs / "dd.log")
        target.unlink(missing_ok=True)
        mib = count * 8
        out[name] = {"mib": mib, "wall_s": run.wall_s, "mib_per_s": round(mib / run.wall_s, 1)
                     if run.wall_s else None, "flush_after_s": run.flush_s, "cpu_s": run.cpu_s}
        print(f"  {name:<14} {mib} MiB in {run.wall_s:.2f} s "
              f"(+{run.flush_s:.2f} s sync after)", flush=True)
    # The biggest cached part of at most 64 MiB: a typical export part.
    parts = sorted((p for p in cache.glob("*.csv.gz") if p.stat().st_size <= 64 * BLOCK),
                   key=lambda p: p.stat().st_size)
    if parts:
        out["per_byte"] = per_byte(parts[-1])
        pb = out["per_byte"]
        print(f"  one core, per GiB of gzip: sha256 {pb['sha256_cpu_s_per_gib']} s, md5 "
              f"{pb['md5_cpu_s_per_gib']} s, inflate {pb['inflate_cpu_s_per_gib']} s "
              f"(x{pb['compression_ratio']} CSV)", flush=True)
    return out
