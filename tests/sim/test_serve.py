"""`serve()` on the CLI's loop: uvloop has no sendfile, so parts go out by plain writes there."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import aiohttp
import pytest
from simclient import AI, HOUR, NOW

from downloader.sim.raw.app import serve
from downloader.sim.raw.faults import SimConfig


def test_serve_under_uvloop(tmp_path: Path):
    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed (not on Windows)")
    config = SimConfig(token=None, running_polls=0, part_size=96 * 1024, clock=lambda: NOW,
                       cache_dir=tmp_path)  # fmt: skip

    async def main() -> list[tuple[int, str, str]]:
        urls: list[str] = []
        ready = asyncio.Event()

        def on_ready(url: str) -> None:
            urls.append(url)
            ready.set()

        server = asyncio.create_task(serve(config, port=0, on_ready=on_ready))
        await ready.wait()
        got = []
        async with aiohttp.ClientSession(auto_decompress=False) as http:
            async with http.get(f"{urls[0]}/v2/insights/hour/page/{AI}/{HOUR}.json") as resp:
                links = (await resp.json())["downloadLinks"]
            for link in links:
                async with http.get(link) as resp:
                    data = await resp.read()
                    got.append(
                        (resp.status, resp.headers["ETag"], hashlib.sha256(data).hexdigest())
                    )
        server.cancel()
        return got

    got = uvloop.run(main())
    assert len(got) == 2
    assert all(status == 200 and etag == f'"{sha}"' for status, etag, sha in got)
