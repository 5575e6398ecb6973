"""One ``s3://bucket/prefix`` through one aiobotocore client: the requests S3 storage makes,
their errors as one line for the user, and the start-up checks (the bucket exists, we may write
under the prefix, and which upload checksum the server verifies).

Every request that carries data carries a checksum the server verifies (CRC32 where the start-up
probe shows the server checks it, else Content-MD5), so a byte changed on the way is refused.
Credentials come from the standard AWS chain only, never from the config.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable, Collection
from typing import Any
from urllib.parse import urlsplit

import anyio
import structlog
from aiobotocore.session import get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
)

from downloader.config.model import StorageConfig
from downloader.core.integrity import CorruptPart
from downloader.storage.base import StorageError
from downloader.storage.s3buffers import CRC32, MD5, Checksum, PartBuffer
from downloader.storage.s3settings import (
    BAD_CHECKSUM,
    CHECK_ATTEMPTS,
    DEFAULT_REGION,
    DENIED,
    MAX_ATTEMPTS,
    NO_BUCKET,
    NO_UPLOAD,
    NOT_FOUND,
    RETRY_PART,
    WRITE_PROBE_NAME,
    client_config,
    error_code,
    http_status,
    without_userinfo,
)

log = structlog.get_logger("gio.s3")

class S3Bucket:
    """The requests to ``s3://bucket/prefix``, through one aiobotocore client (made on first
    use, with ``connections`` of them at most)."""

    def __init__(self, cfg: StorageConfig, connections: int) -> None:
        url = urlsplit(cfg.url)
        self.bucket = url.netloc
        self.prefix = url.path.strip("/")
        self.display = f"s3://{self.bucket}/{self.prefix}" if self.prefix else \
            f"s3://{self.bucket}"
        # botocore reads AWS_ENDPOINT_URL(_S3) itself in recent versions; resolving it here too
        # works with older ones and tells us to use path-style addressing.
        self.endpoint = cfg.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or \
            os.environ.get("AWS_ENDPOINT_URL") or None
        self.endpoint_display = without_userinfo(self.endpoint) if self.endpoint else None
        self.region = cfg.region
        self._connections = connections
        self._checked = False  # the first check() passed
        # The upload checksum: Content-MD5 unless the first check() finds that the server
        # verifies CRC32. Chosen once, so the readiness checks that follow cannot change it
        # under an upload in flight (whose pieces and completion must agree).
        self.checksum = MD5
        self.declare_crc32 = False  # whether a CRC32 multipart upload says so when created
        self._checksum_chosen = False
        self._session = get_session()
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._lock = asyncio.Lock()

    def url_of(self, object_key: str) -> str:
        return f"s3://{self.bucket}/{object_key}"

    # --- client ------------------------------------------------------------------------------

    def _region(self) -> str:
        return self.region or self._session.get_config_variable("region") or DEFAULT_REGION

    async def _new_client(self, stack: contextlib.AsyncExitStack, attempts: int) -> Any:
        try:
            return await stack.enter_async_context(self._session.create_client(
                "s3", region_name=self._region(), endpoint_url=self.endpoint,
                config=client_config(attempts, self._connections, self.endpoint is not None)))
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
            code = error_code(exc)
            if code in RETRY_PART:
                return CorruptPart(f"{what}: {code}: {exc.response['Error'].get('Message', '')}")
            if code == "NoSuchBucket":
                return StorageError(f"{where}: bucket {self.bucket!r} does not exist")
            if code in DENIED:
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

    # --- operations --------------------------------------------------------------------------

    @property
    def _declares_crc32(self) -> bool:
        """Multipart uploads say they carry CRC32 (and list each piece's when completed)."""
        return self.checksum == CRC32 and self.declare_crc32

    async def create_upload(self, key: str) -> str:
        c = await self.client()
        extra = {"ChecksumAlgorithm": "CRC32"} if self._declares_crc32 else {}
        resp = await self._call("CreateMultipartUpload", c.create_multipart_upload,
                                Bucket=self.bucket, Key=key,
                                ContentType="application/gzip", **extra)
        return str(resp["UploadId"])

    async def upload_part(self, key: str, upload_id: str, number: int, body: PartBuffer,
                          checksum: Checksum) -> dict[str, Any]:
        """Send one buffer; what CompleteMultipartUpload needs to list it is returned."""
        args = checksum.request_args()
        c = await self.client()
        resp = await self._call(f"UploadPart {number} of {self.url_of(key)}",
                                c.upload_part, Bucket=self.bucket, Key=key,
                                UploadId=upload_id, PartNumber=number, Body=body, **args)
        # CompleteMultipartUpload lists each part's checksum when the upload declared one.
        return {"PartNumber": number, "ETag": resp["ETag"],
                **(args if self._declares_crc32 else {})}

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
            if error_code(exc) not in NO_UPLOAD:  # already gone (completed or aborted): fine
                raise self._error(exc, "AbortMultipartUpload") from None
        except BotoCoreError as exc:
            raise self._error(exc, "AbortMultipartUpload") from None

    async def put(self, key: str, body: bytes | PartBuffer, checksum: Checksum,
                  content_type: str = "application/gzip") -> None:
        c = await self.client()
        await self._call(f"PutObject {self.url_of(key)}", c.put_object, Bucket=self.bucket,
                         Key=key, Body=body, ContentType=content_type,
                         **checksum.request_args())

    async def size_of(self, key: str) -> int | None:
        """The object's size, None when there is no such object."""
        c = await self.client()
        try:
            resp = await c.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) in NOT_FOUND:
                return None
            raise self._error(exc, f"HeadObject {self.url_of(key)}") from None
        except BotoCoreError as exc:
            raise self._error(exc, f"HeadObject {self.url_of(key)}") from None
        return int(resp["ContentLength"])

    async def object_keys(self, prefix: str) -> list[str]:
        """The keys of the objects under ``prefix``."""
        c = await self.client()
        found: list[str] = []
        try:
            async for page in c.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=prefix):
                found += [o["Key"] for o in page.get("Contents") or []]
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, f"ListObjectsV2 {self.url_of(prefix)}") from None
        return found

    async def get(self, key: str) -> bytes:
        c = await self.client()
        resp = await self._call(f"GetObject {self.url_of(key)}", c.get_object,
                                Bucket=self.bucket, Key=key)
        async with resp["Body"] as body:
            data: bytes = await body.read()
        return data

    async def delete(self, key: str) -> None:
        await self._call(f"DeleteObject {self.url_of(key)}", (await self.client()).delete_object,
                         Bucket=self.bucket, Key=key)

    async def _uploads(self, prefix: str) -> list[tuple[str, str]]:
        """(key, upload id) of the incomplete multipart uploads under ``prefix``."""
        c = await self.client()
        found: list[tuple[str, str]] = []
        try:
            async for page in c.get_paginator("list_multipart_uploads").paginate(
                    Bucket=self.bucket, Prefix=prefix):
                found += [(u["Key"], u["UploadId"]) for u in page.get("Uploads") or []]
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "ListMultipartUploads") from None
        return found

    async def abort_uploads(self, prefix: str, exact: bool = False,
                            keep: Collection[str] = (),
                            within: Collection[str] | None = None) -> int:
        """Abort the incomplete multipart uploads under ``prefix`` (only of that key when
        ``exact``), but those whose ``s3://`` URL is in ``keep`` and, given ``within`` (object
        key prefixes of folders), those of objects in no such folder; returns how many."""
        aborted = 0
        # Twice: S3 may still list an upload whose parts were in flight while it was aborted.
        for _ in range(2):
            found = [(k, u) for k, u in await self._uploads(prefix)
                     if (not exact or k == prefix) and self.url_of(k) not in keep
                     and (within is None or k.rpartition("/")[0] in within)]
            for key, upload_id in found:
                await self.abort_upload(key, upload_id)
            aborted += len(found)
            if not found:
                break
        return aborted

    async def _complete_leftover(self, key: str, size: int) -> bool:
        """Complete an upload that an earlier run had sent in full (and recorded in the
        checkpoint) but not completed, if its parts add up to ``size``."""
        c = await self.client()
        for upload_key, upload_id in await self._uploads(key):
            if upload_key != key:
                continue
            parts: list[dict[str, Any]] = []
            try:
                async for page in c.get_paginator("list_parts").paginate(
                        Bucket=self.bucket, Key=key, UploadId=upload_id):
                    parts += page.get("Parts") or []
            except (ClientError, BotoCoreError) as exc:
                raise self._error(exc, f"ListParts of {self.url_of(key)}") from None
            numbers = [int(p["PartNumber"]) for p in parts]
            if numbers != list(range(1, len(parts) + 1)) or \
                    sum(int(p["Size"]) for p in parts) != size:
                continue  # not the one that was recorded: reopening the part aborts it
            await self.complete_upload(key, upload_id, [
                {k: p[k] for k in ("PartNumber", "ETag", "ChecksumCRC32") if k in p}
                for p in parts])
            return await self.size_of(key) == size
        return False

    # --- start-up checks ---------------------------------------------------------------------

    async def check(self) -> None:
        """The bucket exists and we may write under the prefix (which also tells which upload
        checksum the server verifies, on the first call). One clear line (StorageError)
        otherwise. It touches no part's upload: the daemon's readiness check calls it while
        parts are uploading."""
        if self._checked:  # later checks (the daemon's readiness) use the one client
            c = await self.client()
            await self._check_bucket(c)
            await self._probe_write(c)
            return
        async with contextlib.AsyncExitStack() as stack:
            # The first check retries little, so that a wrong endpoint is said within seconds.
            quick = await self._new_client(stack, CHECK_ATTEMPTS)
            await self._check_bucket(quick)
            await self._probe_write(quick)
        self._checked = True

    async def _check_bucket(self, c: Any) -> None:
        try:
            await c.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code, status = error_code(exc), http_status(exc)
            where = f"storage.url {self.display}"
            if code in NO_BUCKET or status == 404:
                raise StorageError(f"{where}: bucket {self.bucket!r} does not exist "
                                   f"at {self.endpoint_display or 'AWS S3'}") from None
            if code in DENIED or status == 403:
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
        """We may write under the prefix; and which upload checksum the server verifies."""
        # One name per process: instances sharing the bucket (sharding) must not delete each
        # other's probe between its PutObject and its checksum test.
        name = f"{WRITE_PROBE_NAME}-{socket.gethostname()}-{os.getpid()}"
        key = "/".join(p for p in (self.prefix, name) if p)
        body = b"gio-downloader write probe\n"
        await self._call(f"PutObject {self.url_of(key)}", c.put_object, Bucket=self.bucket,
                         Key=key, Body=body, **Checksum.of(MD5, body).request_args())
        if not self._checksum_chosen:  # once: every upload of a run uses the same kind
            await self._choose_checksum(c, key, body)
            self._checksum_chosen = True
        try:
            await c.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            # Writing is what we need; a policy without DeleteObject leaves a hidden probe.
            log.warning("could not delete the write probe", object=self.url_of(key),
                        error=str(exc))

    async def _refuses_wrong_crc32(self, request: Callable[..., Awaitable[Any]],
                                   **kwargs: Any) -> bool:
        """Whether the server refused a request whose x-amz-checksum-crc32 is wrong (a server
        that ignores the header takes it; one that does not know it answers another error)."""
        try:
            await request(**kwargs, **Checksum.of(CRC32, b"not the body").request_args())
        except ClientError as exc:
            return error_code(exc) in BAD_CHECKSUM
        except BotoCoreError:
            return False
        return False

    async def _choose_checksum(self, c: Any, key: str, body: bytes) -> None:
        """CRC32 where the server verifies it, else Content-MD5. And whether a multipart upload
        must declare CRC32 when it is created: where the server verifies the pieces' CRC32
        without it (SeaweedFS), it is not declared, so that an upload left by a crash can be
        completed from the pieces' ETags alone (which ListParts always gives back); where it
        must be declared (AWS S3), completing one needs the pieces' CRC32 from ListParts."""
        self.checksum, self.declare_crc32 = MD5, False
        if not await self._refuses_wrong_crc32(c.put_object, Bucket=self.bucket, Key=key,
                                               Body=body):
            return
        self.checksum = CRC32
        upload_id = (await self._call("CreateMultipartUpload", c.create_multipart_upload,
                                      Bucket=self.bucket, Key=key))["UploadId"]
        try:
            self.declare_crc32 = not await self._refuses_wrong_crc32(
                c.upload_part, Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=1,
                Body=body)
        finally:
            with contextlib.suppress(ClientError, BotoCoreError):
                await c.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    async def close(self) -> None:
        """Close the client and its connections (shielded: cancelling the run cannot leak them)."""
        client, self._client = self._client, None
        stack, self._stack = self._stack, contextlib.AsyncExitStack()
        if client is not None:
            with anyio.CancelScope(shield=True):
                await stack.aclose()
