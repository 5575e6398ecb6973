"""A small S3 client for the benchmark (aiobotocore), run as its own process.

    python bench/s3tool.py ready  --endpoint URL --bucket B
    python bench/s3tool.py upload --endpoint URL --bucket B --prefix P FILE...   # the baseline
    python bench/s3tool.py check  --endpoint URL --bucket B --prefix P [--sha256]
    python bench/s3tool.py rm     --endpoint URL --bucket B --prefix P

``upload`` is the baseline the downloader's S3 path is compared with: a plain multipart upload of
files already on disk, 8 MiB parts sent one after the other per file, 8 files at once (so 8
UploadParts in flight, as the downloader has with 8 downloads), no Content-MD5.
Credentials come from the AWS environment variables.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

PART_BYTES = 8 * 1024 * 1024
CONCURRENCY = 8
READY_TIMEOUT_SECONDS = 60.0


def _config(pool: int) -> Any:
    from aiobotocore.config import AioConfig

    options: dict[str, Any] = {"s3": {"addressing_style": "path"}, "max_pool_connections": pool,
                               "retries": {"max_attempts": 3, "mode": "standard"}}
    try:
        return AioConfig(request_checksum_calculation="when_required",
                         response_checksum_validation="when_required", **options)
    except TypeError:
        return AioConfig(**options)


@contextlib.asynccontextmanager
async def _client(endpoint: str, pool: int = CONCURRENCY + 2) -> Any:
    from aiobotocore.session import get_session

    async with get_session().create_client("s3", endpoint_url=endpoint, region_name="us-east-1",
                                           config=_config(pool)) as client:
        yield client


async def ready(endpoint: str, bucket: str) -> None:
    """Create the bucket and write one object: the filer and a volume are then up."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    last: Exception | None = None
    async with _client(endpoint) as c:
        while time.monotonic() < deadline:
            try:
                with contextlib.suppress(c.exceptions.BucketAlreadyOwnedByYou,
                                         c.exceptions.BucketAlreadyExists):
                    await c.create_bucket(Bucket=bucket)
                await c.put_object(Bucket=bucket, Key=".bench-ready", Body=b"x")
                await c.delete_object(Bucket=bucket, Key=".bench-ready")
                return
            except Exception as exc:  # noqa: BLE001 - not ready yet
                last = exc
                await asyncio.sleep(0.3)
    raise SystemExit(f"S3 at {endpoint} not ready: {last}")


async def _upload_one(c: Any, bucket: str, key: str, path: Path) -> int:
    size = await asyncio.to_thread(os.path.getsize, path)
    with open(path, "rb") as f:  # noqa: ASYNC230 - the reads below go through a thread
        if size <= PART_BYTES:
            await c.put_object(Bucket=bucket, Key=key, Body=f.read())
            return size
        upload_id = (await c.create_multipart_upload(Bucket=bucket, Key=key))["UploadId"]
        parts = []
        number = 1
        while True:
            data = await asyncio.to_thread(f.read, PART_BYTES)
            if not data:
                break
            resp = await c.upload_part(Bucket=bucket, Key=key, UploadId=upload_id,
                                       PartNumber=number, Body=data)
            parts.append({"PartNumber": number, "ETag": resp["ETag"]})
            number += 1
        await c.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                          MultipartUpload={"Parts": parts})
    return size


async def upload(endpoint: str, bucket: str, prefix: str, files: list[Path]) -> int:
    sem = asyncio.Semaphore(CONCURRENCY)
    async with _client(endpoint) as c:

        async def one(path: Path) -> int:
            async with sem:
                return await _upload_one(c, bucket, f"{prefix}/{path.name}", path)

        return sum(await asyncio.gather(*(one(p) for p in files)))


async def _keys(c: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    async for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                   Prefix=prefix):
        found += page.get("Contents") or []
    return found


async def check(endpoint: str, bucket: str, prefix: str, sha: bool) -> dict[str, Any]:
    """Every object under the prefix: size, and sha256 when asked (reads the bytes back)."""
    async with _client(endpoint) as c:
        objects = await _keys(c, bucket, prefix)
        out: dict[str, Any] = {o["Key"]: {"size": int(o["Size"])} for o in objects}
        if sha:
            sem = asyncio.Semaphore(4)

            async def digest(key: str) -> None:
                async with sem:
                    h = hashlib.sha256()
                    resp = await c.get_object(Bucket=bucket, Key=key)
                    async with resp["Body"] as body:
                        while chunk := await body.read(1 << 20):
                            await asyncio.to_thread(h.update, chunk)
                    out[key]["sha256"] = h.hexdigest()

            await asyncio.gather(*(digest(k) for k in out))
        return out


async def rm(endpoint: str, bucket: str, prefix: str) -> int:
    async with _client(endpoint) as c:
        async for page in c.get_paginator("list_multipart_uploads").paginate(Bucket=bucket,
                                                                            Prefix=prefix):
            for u in page.get("Uploads") or []:
                with contextlib.suppress(Exception):
                    await c.abort_multipart_upload(Bucket=bucket, Key=u["Key"],
                                                   UploadId=u["UploadId"])
        keys = [o["Key"] for o in await _keys(c, bucket, prefix)]
        for i in range(0, len(keys), 1000):
            await c.delete_objects(Bucket=bucket, Delete={
                "Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})
        return len(keys)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("ready", "upload", "check", "rm"))
    p.add_argument("--endpoint", required=True)
    p.add_argument("--bucket", required=True)
    p.add_argument("--prefix", default="")
    p.add_argument("--sha256", action="store_true")
    p.add_argument("files", nargs="*", type=Path)
    a = p.parse_intermixed_args(argv)
    if a.command == "ready":
        asyncio.run(ready(a.endpoint, a.bucket))
    elif a.command == "upload":
        n = asyncio.run(upload(a.endpoint, a.bucket, a.prefix.strip("/"), a.files))
        print(json.dumps({"bytes": n, "files": len(a.files)}))
    elif a.command == "check":
        print(json.dumps(asyncio.run(check(a.endpoint, a.bucket, a.prefix, a.sha256))))
    else:
        print(json.dumps({"deleted": asyncio.run(rm(a.endpoint, a.bucket, a.prefix))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
