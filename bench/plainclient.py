"""A reference for the benchmark: the plainest aiohttp + uvloop client, run as its own process.

    python bench/plainclient.py [--sha256] OUT_DIR URL...

Eight GETs at once, each body read in 1 MiB blocks and written by a thread pool (the block
size and thread hop the downloader uses), with no checkpoint, no checks, no fsync. With
``--sha256`` each block is also hashed in the same thread job, as the downloader does for its
manifest. The two runs tell the cost of the client library and the cost of the hash apart from
the downloader's own.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp

CONCURRENCY = 8
BLOCK = 1024 * 1024


def _write(f: Any, h: Any, block: bytes) -> None:
    f.write(block)
    if h is not None:
        h.update(block)


async def _one(session: aiohttp.ClientSession, sem: asyncio.Semaphore, pool: ThreadPoolExecutor,
               url: str, path: Path, sha: bool) -> None:
    loop = asyncio.get_running_loop()
    h = hashlib.sha256() if sha else None
    async with sem, session.get(url) as resp:
        resp.raise_for_status()
        with path.open("wb") as f:  # noqa: ASYNC230 - the writes go through the pool
            async for block in resp.content.iter_chunked(BLOCK):
                await loop.run_in_executor(pool, _write, f, h, block)


async def main(out: Path, urls: list[str], sha: bool) -> None:
    sem = asyncio.Semaphore(CONCURRENCY)
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            await asyncio.gather(*(_one(session, sem, pool, url, out / f"part-{i:05d}.csv.gz",
                                        sha) for i, url in enumerate(urls)))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sha256", action="store_true")
    ap.add_argument("out", type=Path)
    ap.add_argument("urls", nargs="+")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(a.out, a.urls, a.sha256))
    else:
        uvloop.run(main(a.out, a.urls, a.sha256))
