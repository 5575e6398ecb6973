"""How the S3 client is set up and how its errors read: the timeouts and retries, the client
configuration that S3-compatible servers accept, and the error codes the storage tells apart."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError

from downloader import __version__

# For a custom endpoint the region is only a signing name; S3-compatible servers accept this one.
DEFAULT_REGION = "us-east-1"
# Retries of one S3 request (botocore's "standard" mode: throttling, 5xx, resets, timeouts).
MAX_ATTEMPTS = 5
# The start-up check retries little, so that a wrong endpoint is reported within seconds.
CHECK_ATTEMPTS = 2
CONNECT_TIMEOUT_SECONDS = 10
READ_TIMEOUT_SECONDS = 120
# The start-up write probe; the leading "." keeps readers (Spark, Hive, DuckDB) off it.
# One fixed key, overwritten by every check: a policy that forbids DeleteObject leaves one.
WRITE_PROBE_NAME = ".gio-write-probe"

DENIED = frozenset({"AccessDenied", "403", "Forbidden", "AllAccessDisabled",
                     "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccountProblem"})
NO_BUCKET = frozenset({"NoSuchBucket", "404", "NotFound"})
NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
NO_UPLOAD = frozenset({"NoSuchUpload", "404", "NotFound"})
# The server got other bytes than the ones we sent, or lost the upload: fetch the part again.
RETRY_PART = frozenset({"BadDigest", "InvalidDigest", "NoSuchUpload", "InvalidPart",
                         "InvalidPartOrder", "IncompleteBody", "XAmzContentChecksumMismatch"})
# How servers refuse a body whose checksum header does not match it (AWS and SeaweedFS say
# BadDigest; MinIO has its own name for the x-amz-checksum-* headers).
BAD_CHECKSUM = frozenset({"BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch"})


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "")) or \
        str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


def http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def without_userinfo(url: str) -> str:
    """The URL as it may be shown: never a user or password written into it."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    return parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")
                          if parts.hostname else "").geturl()


def client_config(attempts: int, pool: int, path_style: bool) -> AioConfig:
    options: dict[str, Any] = {
        "retries": {"max_attempts": attempts, "mode": "standard"},
        "max_pool_connections": pool,
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "read_timeout": READ_TIMEOUT_SECONDS,
        "user_agent_extra": f"gio-downloader/{__version__}",
    }
    # Every request that carries data has a checksum header (signed), which the server checks,
    # so botocore need not hash each 8 MiB body again on the event loop to sign it (it does so
    # on plain-http endpoints otherwise).
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
