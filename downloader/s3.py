"""S3 (and S3-compatible) storage: the same layout and ``_SUCCESS`` manifests as local storage,
under ``s3://bucket/prefix``.

Each part streams into a multipart upload of 8 MiB parts, each sent with its Content-MD5 so the
server checks every byte it stores. At most one UploadPart is in flight per part, so memory is
one buffer per download plus, within a budget shared by the storage, a second one filling while
the first uploads: bounded whatever the part's size. The object appears only when the upload
completes, after the size and gzip checks (``finish``); the worker then records the part in the
checkpoint. A part smaller than one buffer is sent with one PutObject instead.

Resume: incomplete multipart uploads cannot be read back, so the SHA-256 and gzip state of the
bytes they hold is lost with the process. A restart therefore aborts them (a sweep at start-up,
and once more per part when it is opened) and uploads the part again from byte 0. None are left
behind to cost money. Credentials come from the standard AWS chain only, never from the config.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import mmap
import os
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import anyio
import structlog
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
)

from downloader import __version__
from downloader.checkpoint import StoredPart
from downloader.config import StorageConfig
from downloader.constants import SUCCESS_NAME
from downloader.integrity import CorruptPart, GzipVerifier
from downloader.partitions import PartitionKey
from downloader.storage import (
    PartSink,
    StorageError,
    manifest_bytes,
    part_name,
    partition_dir,
)

log = structlog.get_logger("gio.s3")

# S3 needs every part of a multipart upload but the last to be at least 5 MiB (AWS documents
# 5 MiB-5 GiB and at most 10,000 parts; SeaweedFS enforces the same minimum). 8 MiB parts make a
# ~64 MB export part 8 UploadParts and bound memory to two 8 MiB buffers per download.
PART_BYTES = 8 * 1024 * 1024
# For a custom endpoint the region is only a signing name; S3-compatible servers accept this one.
DEFAULT_REGION = "us-east-1"
# Retries of one S3 request (botocore's "standard" mode: throttling, 5xx, resets, timeouts).
MAX_ATTEMPTS = 5
# The start-up check retries little, so that a wrong endpoint is reported within seconds.
CHECK_ATTEMPTS = 2
CONNECT_TIMEOUT_SECONDS = 10
READ_TIMEOUT_SECONDS = 120
# How long close() may spend aborting an unfinished upload when the run is being cancelled.
ABORT_TIMEOUT_SECONDS = 15
# The start-up write probe; the leading "." keeps readers (Spark, Hive, DuckDB) off it.
WRITE_PROBE_PREFIX = ".gio-write-probe-"

_DENIED = frozenset({"AccessDenied", "403", "Forbidden", "AllAccessDisabled",
                     "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccountProblem"})
_NO_BUCKET = frozenset({"NoSuchBucket", "404", "NotFound"})
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
_NO_UPLOAD = frozenset({"NoSuchUpload", "404", "NotFound"})
# The server got other bytes than the ones we sent, or lost the upload: fetch the part again.
_RETRY_PART = frozenset({"BadDigest", "InvalidDigest", "NoSuchUpload", "InvalidPart",
                         "InvalidPartOrder", "IncompleteBody"})


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "")) or \
        str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _without_userinfo(url: str) -> str:
    """The URL as it may be shown: never a user or password written into it."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    return parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")
                          if parts.hostname else "").geturl()


def _client_config(attempts: int, pool: int, path_style: bool) -> AioConfig:
    options: dict[str, Any] = {
        "retries": {"max_attempts": attempts, "mode": "standard"},
        "max_pool_connections": pool,
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "read_timeout": READ_TIMEOUT_SECONDS,
        "user_agent_extra": f"gio-downloader/{__version__}",
    }
    # Every request that carries data has a (signed) Content-MD5, which the server checks, so
    # botocore need not hash each 8 MiB body again on the event loop to sign it (it does so on
    # plain-http endpoints otherwise).
    options["s3"] = {"payload_signing_enabled": False}
    if path_style:
        options["s3"]["addressing_style"] = "path"
    try:
        # botocore >= 1.36 adds CRC checksums to every upload by default, which many
        # S3-compatible servers reject: only send them where an operation requires one.
        return AioConfig(request_checksum_calculation="when_required",
                         response_checksum_validation="when_required", **options)
    except TypeError:  # older botocore has neither option and never sends those checksums
        return AioConfig(**options)


class PartBuffer(io.RawIOBase):
    """The bytes of one UploadPart in an anonymous memory map, read back as a file.

    A file because aiohttp sends large file bodies in slices instead of copying them. A map
    because its pages are resident only once written and go back to the OS on close(), while
    8 MiB blocks grown by realloc from several executor threads end up in glibc's per-thread
    arenas, which keep them after they are freed (measured: ~100 MB more peak RSS with 8
    downloads).
    """

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self._map = mmap.mmap(-1, capacity)
        self.size = 0
        self._pos = 0

    def append(self, data: memoryview) -> None:
        end = self.size + len(data)
        self._map[self.size:end] = data
        self.size = end

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
        """One copy per read (RawIOBase's default makes two); aiohttp reads 256 KiB at once."""
        end = self.size if size < 0 else min(self.size, self._pos + size)
        data = self._map[self._pos:end] if end > self._pos else b""
        self._pos = max(self._pos, end)
        return data

    def close(self) -> None:
        if not self.closed:
            # A reader still inside readinto() (an executor read of a cancelled request) holds
            # the map; it is then freed when that read ends.
            with contextlib.suppress(BufferError):
                self._map.close()
        super().close()


class S3PartSink:
    """One part streaming into a multipart upload.

    Each chunk is hashed (SHA-256 for the manifest, MD5 for the UploadPart's Content-MD5),
    gzip-checked and appended to the current 8 MiB buffer in one executor job, overlapping the
    download of the next chunk. A full buffer is sent while the next one fills if the storage has
    a spare buffer to lend, else before the next one fills; the one after always waits for that
    send, so at most two buffers exist per part.
    """

    def __init__(self, storage: S3Storage, key: PartitionKey, index: int,
                 verify_gzip: bool) -> None:
        self._s = storage
        self.index = index
        self.key = storage.object_key(key, part_name(index))
        self._verify = verify_gzip
        self.offset = 0
        self._start()

    def _start(self) -> None:
        self._sha = hashlib.sha256()
        self._gz: GzipVerifier | None = GzipVerifier() if self._verify else None
        self._buf = PartBuffer(PART_BYTES)
        self._md5 = hashlib.md5()
        self._buffered = 0  # bytes handed to the current buffer (some may still be in a job)
        self._absorbing: asyncio.Future[None] | None = None
        self._uploading: asyncio.Task[dict[str, Any]] | None = None
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self.offset = 0

    async def open(self) -> S3PartSink:
        """Abort what an earlier run left of this part: its hash state died with that run."""
        aborted = await self._s.abort_uploads(self.key, exact=True)
        if aborted:
            log.info("discarded an unfinished upload of this part; uploading it again",
                     object=self._s.url_of(self.key), uploads=aborted)
        return self

    # --- streaming ---------------------------------------------------------------------------

    def _absorb(self, data: memoryview) -> None:
        self._sha.update(data)
        self._md5.update(data)
        self._buf.append(data)
        if self._gz is not None:
            self._gz.feed(data)  # zlib takes any buffer: no copy

    async def _drain(self) -> None:
        pending, self._absorbing = self._absorbing, None
        if pending is not None:
            await pending

    async def _wait_upload(self) -> None:
        task, self._uploading = self._uploading, None
        if task is not None:
            self._parts.append(await task)

    def _take_buffer(self) -> tuple[PartBuffer, str]:
        """The filled buffer and its Content-MD5; a new buffer takes its place."""
        body, md5 = self._buf, base64.b64encode(self._md5.digest()).decode()
        self._buf, self._md5, self._buffered = PartBuffer(PART_BYTES), hashlib.md5(), 0
        return body, md5

    async def _ship(self) -> None:
        """Send the full buffer as the next UploadPart, after the previous one is through."""
        await self._drain()
        await self._wait_upload()
        if self._upload_id is None:
            self._upload_id = await self._s.create_upload(self.key)
        body, md5 = self._take_buffer()
        number = len(self._parts) + 1
        self._uploading = asyncio.create_task(
            self._s.upload_part(self.key, self._upload_id, number, body, md5))
        if self._s.take_spare():  # fill the next buffer while this one uploads
            self._uploading.add_done_callback(self._s.give_spare)
        else:  # the storage's memory budget is spent: let the upload finish first
            await self._wait_upload()

    async def write(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            # Exact 8 MiB parts: a chunk that crosses a boundary is split (views, not copies).
            room = PART_BYTES - self._buffered
            piece, view = view[:room], view[room:]
            await self._drain()
            self._absorbing = asyncio.get_running_loop().run_in_executor(
                self._s.pool, self._absorb, piece)
            self._buffered += len(piece)
            self.offset += len(piece)
            if self._buffered >= PART_BYTES:
                await self._ship()

    async def settle(self) -> int:
        """Wait for the queued hashing and the UploadPart in flight; returns the bytes taken."""
        await self._drain()
        await self._wait_upload()
        return self.offset

    async def _discard(self) -> None:
        """Stop everything in flight and abort the upload; errors no longer matter."""
        with contextlib.suppress(Exception):
            await self._drain()
        task, self._uploading = self._uploading, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
            if not task.cancelled():
                task.exception()  # retrieved: it no longer matters
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is not None:
            await self._s.abort_upload(self.key, upload_id)

    async def reset(self) -> None:
        await self._discard()
        self._buf.close()
        self._start()

    # --- sealing -----------------------------------------------------------------------------

    def _check_gzip(self) -> None:
        if self._gz is not None:
            self._gz.close()

    async def finish(self, expected_size: int | None) -> StoredPart:
        """Check size and gzip, then complete the upload: the object appears whole, or not."""
        await self._drain()
        if expected_size is not None and self.offset != expected_size:
            raise CorruptPart(f"size {self.offset} differs from Content-Length {expected_size}")
        await asyncio.get_running_loop().run_in_executor(self._s.pool, self._check_gzip)
        if self._upload_id is None:
            body, md5 = self._take_buffer()
            try:
                await self._s.put(self.key, body, md5)
            finally:
                body.close()
        else:
            if self._buffered:
                await self._ship()
            await self._wait_upload()
            await self._s.complete_upload(self.key, self._upload_id, self._parts)
            self._upload_id = None  # kept until now so that close() aborts a failed one
        stored = await self._s.size_of(self.key)
        if stored != self.offset:
            held = "is missing" if stored is None else f"holds {stored} bytes"
            raise CorruptPart(f"{self._s.url_of(self.key)} {held} after {self.offset} were sent")
        return StoredPart(self.index, self.offset, self._sha.hexdigest())

    async def publish(self) -> None:
        """Nothing left to do: the object became visible when its upload completed."""

    async def close(self) -> None:
        """Abort an unfinished upload: a later run starts the part over (see the module doc)."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(ABORT_TIMEOUT_SECONDS):
            with contextlib.suppress(StorageError):
                await self._discard()
        self._buf.close()


class S3Storage:
    """``s3://bucket/prefix`` through one aiobotocore client."""

    def __init__(self, cfg: StorageConfig, threads: int) -> None:
        url = urlsplit(cfg.url)
        self.bucket = url.netloc
        self.prefix = url.path.strip("/")
        self.display = f"s3://{self.bucket}/{self.prefix}" if self.prefix else \
            f"s3://{self.bucket}"
        # botocore reads AWS_ENDPOINT_URL(_S3) itself in recent versions; resolving it here too
        # works with older ones and tells us to use path-style addressing.
        self.endpoint = cfg.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or \
            os.environ.get("AWS_ENDPOINT_URL") or None
        self.endpoint_display = _without_userinfo(self.endpoint) if self.endpoint else None
        self.region = cfg.region
        self._connections = threads + 4
        # Each downloading part fills one 8 MiB buffer; this many of them may also have a
        # second one uploading meanwhile. Overlap only where the memory budget allows: measured
        # with 8 x 64 MB parts on loopback, each spare buffer is ~8 MB of peak RSS.
        self._spares = max(1, threads // 4)
        # One thread per concurrent download for hashing and gzip checks, plus a spare.
        self.pool = ThreadPoolExecutor(max_workers=threads + 1, thread_name_prefix="gio-s3")
        self._session = get_session()
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._lock = asyncio.Lock()

    def take_spare(self) -> bool:
        if self._spares <= 0:
            return False
        self._spares -= 1
        return True

    def give_spare(self, _done: object = None) -> None:
        self._spares += 1

    # --- names -------------------------------------------------------------------------------

    def object_key(self, key: PartitionKey, name: str) -> str:
        return "/".join(p for p in (self.prefix, partition_dir(key), name) if p)

    def url_of(self, object_key: str) -> str:
        return f"s3://{self.bucket}/{object_key}"

    def location(self, key: PartitionKey, name: str = "") -> str:
        return self.url_of(self.object_key(key, name))

    @property
    def _layout_prefix(self) -> str:
        """Everything this downloader writes starts with this (``<prefix>/ai=``)."""
        return f"{self.prefix}/ai=" if self.prefix else "ai="

    # --- client ------------------------------------------------------------------------------

    def _region(self) -> str:
        return self.region or self._session.get_config_variable("region") or DEFAULT_REGION

    async def _new_client(self, stack: contextlib.AsyncExitStack, attempts: int) -> Any:
        try:
            return await stack.enter_async_context(self._session.create_client(
                "s3", region_name=self._region(), endpoint_url=self.endpoint,
                config=_client_config(attempts, self._connections, self.endpoint is not None)))
        except (BotoCoreError, ValueError) as exc:
            raise StorageError(f"storage.url {self.display}: {exc}") from None

    async def client(self) -> Any:
        async with self._lock:
            if self._client is None:
                self._client = await self._new_client(self._stack, MAX_ATTEMPTS)
            return self._client

    def _error(self, exc: Exception, what: str) -> Exception:
        """One line for the user (never credentials); CorruptPart where fetching again helps."""
        where = f"storage.url {self.display}"
        if isinstance(exc, ClientError):
            code = _code(exc)
            if code in _RETRY_PART:
                return CorruptPart(f"{what}: {code}: {exc.response['Error'].get('Message', '')}")
            if code == "NoSuchBucket":
                return StorageError(f"{where}: bucket {self.bucket!r} does not exist")
            if code in _DENIED:
                return StorageError(f"{where}: access denied ({what}: {code})")
            message = exc.response.get("Error", {}).get("Message") or ""
            return StorageError(f"{where}: {what} failed: {code} {message}".rstrip())
        if isinstance(exc, NoCredentialsError | PartialCredentialsError | ProfileNotFound):
            return StorageError(f"{where}: no usable AWS credentials ({exc}); set "
                                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or use an "
                                "instance role")
        if isinstance(exc, EndpointConnectionError):
            reason = exc.kwargs.get("error") or exc
            return StorageError(f"{where}: cannot reach endpoint "
                                f"{self.endpoint_display or 'of AWS S3'}: {reason}")
        return StorageError(f"{where}: {what} failed: {exc}")

    async def _call(self, what: str, op: Callable[..., Awaitable[Any]], **kwargs: Any) -> Any:
        try:
            return await op(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, what) from None

    # --- operations the sinks use ------------------------------------------------------------

    async def create_upload(self, key: str) -> str:
        c = await self.client()
        resp = await self._call("CreateMultipartUpload", c.create_multipart_upload,
                                Bucket=self.bucket, Key=key,
                                ContentType="application/gzip")
        return str(resp["UploadId"])

    async def upload_part(self, key: str, upload_id: str, number: int, body: PartBuffer,
                          md5: str) -> dict[str, Any]:
        try:
            c = await self.client()
            resp = await self._call(f"UploadPart {number} of {self.url_of(key)}",
                                    c.upload_part, Bucket=self.bucket, Key=key,
                                    UploadId=upload_id, PartNumber=number, Body=body,
                                    ContentMD5=md5)
        finally:
            body.close()
        return {"PartNumber": number, "ETag": resp["ETag"]}

    async def complete_upload(self, key: str, upload_id: str,
                              parts: list[dict[str, Any]]) -> None:
        c = await self.client()
        await self._call(f"CompleteMultipartUpload of {self.url_of(key)}",
                         c.complete_multipart_upload, Bucket=self.bucket, Key=key,
                         UploadId=upload_id, MultipartUpload={"Parts": parts})

    async def abort_upload(self, key: str, upload_id: str) -> None:
        c = await self.client()
        try:
            await c.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if _code(exc) not in _NO_UPLOAD:  # already gone (completed or aborted): fine
                raise self._error(exc, "AbortMultipartUpload") from None
        except BotoCoreError as exc:
            raise self._error(exc, "AbortMultipartUpload") from None

    async def put(self, key: str, body: bytes | PartBuffer, md5: str,
                  content_type: str = "application/gzip") -> None:
        c = await self.client()
        await self._call(f"PutObject {self.url_of(key)}", c.put_object, Bucket=self.bucket,
                         Key=key, Body=body, ContentMD5=md5, ContentType=content_type)

    async def size_of(self, key: str) -> int | None:
        """The object's size, None when there is no such object."""
        c = await self.client()
        try:
            resp = await c.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                return None
            raise self._error(exc, f"HeadObject {self.url_of(key)}") from None
        except BotoCoreError as exc:
            raise self._error(exc, f"HeadObject {self.url_of(key)}") from None
        return int(resp["ContentLength"])

    async def abort_uploads(self, prefix: str, exact: bool = False) -> int:
        """Abort the incomplete multipart uploads under ``prefix`` (only of that key when
        ``exact``); returns how many."""
        c = await self.client()
        aborted = 0
        # Twice: S3 may still list an upload whose parts were in flight while it was aborted.
        for _ in range(2):
            found = []
            paginator = c.get_paginator("list_multipart_uploads")
            try:
                async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                    found += [(u["Key"], u["UploadId"]) for u in page.get("Uploads") or []
                              if not exact or u["Key"] == prefix]
            except (ClientError, BotoCoreError) as exc:
                raise self._error(exc, "ListMultipartUploads") from None
            for key, upload_id in found:
                await self.abort_upload(key, upload_id)
            aborted += len(found)
            if not found:
                break
        return aborted

    # --- the Storage interface ---------------------------------------------------------------

    async def check(self) -> None:
        """Before any download: the bucket exists, we may write under the prefix, and nothing
        of an earlier run is left uploading. One clear line (StorageError) otherwise."""
        try:
            async with contextlib.AsyncExitStack() as stack:
                quick = await self._new_client(stack, CHECK_ATTEMPTS)
                await self._check_bucket(quick)
                await self._probe_write(quick)
            aborted = await self.abort_uploads(self._layout_prefix)
        except BaseException:
            await self.close()
            raise
        log.info("storage ready", storage=self.display, endpoint=self.endpoint_display,
                 aborted_incomplete_uploads=aborted)

    async def _check_bucket(self, c: Any) -> None:
        try:
            await c.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code, status = _code(exc), _status(exc)
            where = f"storage.url {self.display}"
            if code in _NO_BUCKET or status == 404:
                raise StorageError(f"{where}: bucket {self.bucket!r} does not exist "
                                   f"at {self.endpoint_display or 'AWS S3'}") from None
            if code in _DENIED or status == 403:
                raise StorageError(f"{where}: access denied to bucket {self.bucket!r} "
                                   "(check the credentials and the bucket policy)") from None
            if status in (301, 307, 400):
                region = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get(
                    "x-amz-bucket-region")
                if region:
                    raise StorageError(f"{where}: the bucket is in region {region}; set "
                                       f"storage.region: {region}") from None
            raise self._error(exc, "HeadBucket") from None
        except BotoCoreError as exc:
            raise self._error(exc, "HeadBucket") from None

    async def _probe_write(self, c: Any) -> None:
        key = "/".join(p for p in (self.prefix, f"{WRITE_PROBE_PREFIX}{uuid.uuid4().hex}") if p)
        body = b"gio-downloader write probe\n"
        await self._call(f"PutObject {self.url_of(key)}", c.put_object, Bucket=self.bucket,
                         Key=key, Body=body, ContentMD5=_md5_b64(body))
        try:
            await c.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            # Writing is what we need; a policy without DeleteObject leaves a hidden probe.
            log.warning("could not delete the write probe", object=self.url_of(key),
                        error=str(exc))

    async def open_part(self, key: PartitionKey, index: int, verify_gzip: bool) -> PartSink:
        return await S3PartSink(self, key, index, verify_gzip).open()

    async def recover_part(self, key: PartitionKey, part: StoredPart) -> bool:
        """A part the checkpoint calls finished: its object must be there with its size."""
        object_key = self.object_key(key, part_name(part.index))
        try:
            size = await self.size_of(object_key)
        except StorageError as exc:
            # The part is downloaded again; if S3 is really unusable, storing it will say so.
            log.warning("cannot check a finished part", object=self.url_of(object_key),
                        error=str(exc))
            return False
        return size == part.size

    async def write_success(self, key: PartitionKey, manifest: dict[str, Any]) -> None:
        body = manifest_bytes(manifest)
        await self.put(self.object_key(key, SUCCESS_NAME), body, _md5_b64(body),
                       content_type="application/json")

    async def close(self) -> None:
        client, self._client = self._client, None
        stack, self._stack = self._stack, contextlib.AsyncExitStack()
        if client is not None:
            with anyio.CancelScope(shield=True):
                await stack.aclose()
        self.pool.shutdown(wait=True)
