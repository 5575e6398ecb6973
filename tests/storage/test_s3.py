"""S3 storage against a real S3-compatible server on loopback (SeaweedFS, or moto as fallback):
the CLI backfilling byte-exact into a bucket, a SIGKILL mid-upload, start-up errors, and the
part sink's multipart behaviour."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import os
import random
import signal
import sys
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aiobotocore", reason="S3 storage needs the [s3] extra")
pytest.importorskip("boto3", reason="the S3 tests read the bucket with boto3")

from conftest import hour_label, past_days, run_cli, write_config  # noqa: E402
from s3server import (  # noqa: E402
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    S3Server,
    all_keys,
    client,
    closed_port,
    empty_bucket,
    incomplete_uploads,
    start_s3,
)

from downloader.config.model import StorageConfig  # noqa: E402
from downloader.core.integrity import CorruptPart  # noqa: E402
from downloader.core.model import StoredPart as _Stored  # noqa: E402
from downloader.core.partitions import Period, parse_hour  # noqa: E402
from downloader.sim.raw.csvgen import PartSpec, target_size  # noqa: E402
from downloader.sources.raw.keys import part_name, partition_dir  # noqa: E402
from downloader.storage.base import StorageError  # noqa: E402
from downloader.storage.factory import open_storage  # noqa: E402
from downloader.storage.s3 import S3Storage  # noqa: E402
from downloader.storage.s3buffers import CRC32, MD5, PART_BYTES, Checksum  # noqa: E402

MiB = 1024 * 1024
TYPES = ["visit", "page", "custom_event"]
PREFIX = "lake/raw"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory,
              request: pytest.FixtureRequest) -> Iterator[S3Server]:
    server, note = start_s3(tmp_path_factory.mktemp("s3-server"))
    line = f"S3 tests run against {server.kind} at {server.endpoint} ({server.detail})"
    if note:
        line += f"; {note}"
    # Shown whatever the capture mode (-q, -s): which server ran is part of the result.
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            reporter.write_line(line)
    else:
        sys.stderr.write(line + "\n")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials from the environment (the standard chain), nothing from the host's AWS
    configuration. run_cli copies os.environ, so the CLI gets the same."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def s3(s3_server: S3Server) -> Any:
    return client(s3_server.endpoint)


@pytest.fixture
def bucket(s3: Any) -> Iterator[str]:
    name = f"gio-test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    yield name
    empty_bucket(s3, name)


def storage_section(server: S3Server, bucket: str, endpoint: bool = True) -> dict[str, Any]:
    section: dict[str, Any] = {"url": f"s3://{bucket}/{PREFIX}"}
    if endpoint:
        section["endpoint_url"] = server.endpoint
    return section


def partition_prefix(ai: str, data_type: str, export_type: str, label: str) -> str:
    date = f"{label[:4]}-{label[4:6]}-{label[6:8]}"
    folder = f"{PREFIX}/ai={ai}/data_type={data_type}/export_type={export_type}/date={date}"
    return folder + (f"/hour={label[8:10]}" if export_type == "hour" else "")


def assert_s3_partition_exact(s3: Any, bucket: str, sim: Any, ai: str, data_type: str,
                              export_type: str, label: str) -> int:
    """Every part object byte-exact against the simulator, a correct _SUCCESS, nothing else."""
    folder = partition_prefix(ai, data_type, export_type, label)
    expected = sim.expected_parts(ai, export_type, data_type, label)
    names = sorted(k.rsplit("/", 1)[1] for k in all_keys(s3, bucket, folder + "/"))
    assert names == sorted([f"part-{e.index:05d}.csv.gz" for e in expected] + ["_SUCCESS"]), \
        f"{folder}: {names}"
    for e in expected:
        body = s3.get_object(Bucket=bucket, Key=f"{folder}/part-{e.index:05d}.csv.gz")
        data = body["Body"].read()
        assert len(data) == e.size
        assert hashlib.sha256(data).hexdigest() == e.sha256, f"{folder} part {e.index} differs"
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"{folder}/_SUCCESS")["Body"].read())
    assert manifest["export_date"] == label
    assert [(p["name"], p["bytes"], p["sha256"]) for p in manifest["parts"]] == \
        [(f"part-{e.index:05d}.csv.gz", e.size, e.sha256) for e in expected]
    return len(expected)


def log_events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


# --- end to end through the CLI -------------------------------------------------------------


def test_backfill_into_s3_is_byte_exact(tmp_path: Path, start_sim, s3_server: S3Server, s3: Any,
                                        bucket: str) -> None:
    sim = start_sim(parts_per_type=2, part_size=300 * 1024)
    cfg = write_config(tmp_path, sim.url, storage=storage_section(s3_server, bucket),
                       projects=[{"ai": "testai01", "data_types": TYPES,
                                  "export_types": ["hour"]}])
    first = hour_label(past_days(2) + timedelta(hours=9))
    last = hour_label(past_days(2) + timedelta(hours=10))
    result = run_cli("backfill", "-c", str(cfg), "--from", first, "--to", last)
    assert result.returncode == 0, result.stderr
    parts = sum(assert_s3_partition_exact(s3, bucket, sim.sim, "testai01", t, "hour", label)
                for label in (first, last) for t in TYPES)
    assert parts == 2 * 3 * 2
    assert incomplete_uploads(s3, bucket) == []
    # Nothing but the layout under the prefix: no probe, no temporary objects.
    assert all(k.startswith(f"{PREFIX}/ai=testai01/") for k in all_keys(s3, bucket)), \
        all_keys(s3, bucket)
    assert not (tmp_path / "data").exists()
    events = log_events(result.stdout)
    done = [e for e in events if e["event"] == "partition done"]
    assert len(done) == 6
    assert all(e["location"].startswith(f"s3://{bucket}/{PREFIX}/ai=testai01/") for e in done)
    # A second run asks the API nothing and uploads nothing.
    calls = len(sim.stats.api_calls)
    again = run_cli("backfill", "-c", str(cfg), "--from", first, "--to", last)
    assert again.returncode == 0, again.stderr
    assert len(sim.stats.api_calls) == calls
    assert "6 already done" in again.stderr
    # The checkpoint lost: rebuilt from the manifests in the bucket, nothing is fetched again.
    (tmp_path / "state" / "checkpoint.db").unlink()
    rebuilt = run_cli("checkpoint", "rebuild", "-c", str(cfg))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "6 complete partitions from 6 _SUCCESS manifests" in rebuilt.stdout
    third = run_cli("backfill", "-c", str(cfg), "--from", first, "--to", last)
    assert third.returncode == 0, third.stderr
    assert len(sim.stats.api_calls) == calls and "6 already done" in third.stderr


def test_sigkill_mid_upload_then_restart_leaves_no_upload(tmp_path: Path, start_sim,
                                                          s3_server: S3Server, s3: Any,
                                                          bucket: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # Parts must be bigger than one 8 MiB UploadPart for an upload to be in flight, and S3
    # servers refuse smaller non-final parts. Hour B's part is at least 10 MiB, so killing the
    # process 9 MiB into it leaves a multipart upload holding one part.
    part_size = 16 * MiB
    day = past_days(2)

    def size(label: str) -> int:
        return target_size(PartSpec(0, "testai01", "hour", "page", label, part_size, 1), 0)

    label_b = next(hour_label(day + timedelta(hours=h)) for h in range(1, 24)
                   if size(hour_label(day + timedelta(hours=h))) >= 10 * MiB + 512 * 1024)
    label_a = hour_label(parse_hour(label_b) - timedelta(hours=1))
    sim = start_sim(parts_per_type=1, part_size=part_size)
    (part_a,) = sim.sim.expected_parts("testai01", "hour", "page", label_a)
    # The endpoint comes from AWS_ENDPOINT_URL this time, not from the config file.
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    cfg = write_config(tmp_path, sim.url, storage=storage_section(s3_server, bucket, False),
                       projects=[{"ai": "testai01", "data_types": ["page"],
                                  "export_types": ["hour"]}],
                       concurrency={"downloads": 1, "partitions": 1})
    args = ("backfill", "-c", str(cfg), "--from", label_a, "--to", label_b)

    killed = run_cli(*args, GIO_DOWNLOADER_KILL_AFTER_BYTES=str(part_a.size + 9 * MiB))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    key_a = f"{partition_prefix('testai01', 'page', 'hour', label_a)}/part-00000.csv.gz"
    key_b = f"{partition_prefix('testai01', 'page', 'hour', label_b)}/part-00000.csv.gz"
    # The crash left hour A finished and an upload of hour B's part behind, invisible.
    head_a = s3.head_object(Bucket=bucket, Key=key_a)
    assert [k for k, _ in incomplete_uploads(s3, bucket)] == [key_b]
    assert key_b not in all_keys(s3, bucket)

    restart_at = time.time()
    final = run_cli(*args)
    assert final.returncode == 0, final.stderr
    for label in (label_a, label_b):
        assert_s3_partition_exact(s3, bucket, sim.sim, "testai01", "page", "hour", label)
    assert incomplete_uploads(s3, bucket) == []
    ready = [e for e in log_events(final.stdout) if e["event"] == "storage ready"]
    assert ready and ready[0]["aborted_incomplete_uploads"] == 1
    # The finished part was neither downloaded nor uploaded again.
    again = [d for d in sim.stats.downloads if d.t >= restart_at]
    assert {(d.part_key.rsplit("/", 1)[1], d.index) for d in again} == {(label_b, 0)}
    head_a2 = s3.head_object(Bucket=bucket, Key=key_a)
    assert (head_a2["ETag"], head_a2["LastModified"]) == (head_a["ETag"], head_a["LastModified"])


def test_sigkill_between_record_and_completion(tmp_path: Path, start_sim, s3_server: S3Server,
                                              s3: Any, bucket: str) -> None:
    """The part row is written once every byte is uploaded, before the upload is completed. A
    crash exactly there (the fault seam) leaves an invisible upload that the start-up sweep
    spares and the restart completes, or, where the server cannot tell the pieces' checksums
    back, aborts and sends again. Either way: byte-exact, and no upload left behind."""
    sim = start_sim(parts_per_type=1, part_size=24 * MiB)
    cfg = write_config(tmp_path, sim.url, storage=storage_section(s3_server, bucket),
                       projects=[{"ai": "testai01", "data_types": ["page"],
                                  "export_types": ["hour"]}],
                       concurrency={"downloads": 1, "partitions": 1})
    label = hour_label(past_days(2) + timedelta(hours=7))
    args = ("backfill", "-c", str(cfg), "--from", label, "--to", label)
    key = f"{partition_prefix('testai01', 'page', 'hour', label)}/part-00000.csv.gz"
    (part,) = sim.sim.expected_parts("testai01", "hour", "page", label)
    assert part.size > PART_BYTES  # a multipart upload, not one PutObject

    killed = run_cli(*args, GIO_DOWNLOADER_KILL_BEFORE_PUBLISH="1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert key not in all_keys(s3, bucket)
    assert [k for k, _ in incomplete_uploads(s3, bucket)] == [key]

    restarted = time.time()
    final = run_cli(*args)
    assert final.returncode == 0, final.stderr
    assert_s3_partition_exact(s3, bucket, sim.sim, "testai01", "page", "hour", label)
    assert incomplete_uploads(s3, bucket) == []
    events = [e["event"] for e in log_events(final.stdout)]
    ready = [e for e in log_events(final.stdout) if e["event"] == "storage ready"]
    assert ready[0]["aborted_incomplete_uploads"] == 0  # the recorded upload was spared
    fetched = [d for d in sim.stats.downloads if d.t >= restarted]
    if "completed an upload that an earlier run had sent" in events:
        assert fetched == []
    else:
        assert s3_server.kind != "seaweedfs", "SeaweedFS uploads complete from their ETags"
        assert ready[0]["upload_checksum"] == "crc32", events
        assert "cannot complete an upload an earlier run had sent; fetching the part again" \
            in events
        assert len(fetched) == 1


@pytest.mark.parametrize("problem", ["missing bucket", "wrong endpoint", "no credentials"])
def test_storage_problem_is_one_line_before_any_download(tmp_path: Path, start_sim,
                                                         s3_server: S3Server, bucket: str,
                                                         problem: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    sim = start_sim()
    if problem == "missing bucket":
        storage = {"url": "s3://no-such-gio-bucket/raw", "endpoint_url": s3_server.endpoint}
        expected = ["no-such-gio-bucket", "does not exist"]
    elif problem == "no credentials":
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
        storage = {"url": f"s3://{bucket}/raw", "endpoint_url": s3_server.endpoint}
        expected = ["no usable AWS credentials"]
    else:
        endpoint = f"http://127.0.0.1:{closed_port()}"
        storage = {"url": "s3://some-bucket/raw", "endpoint_url": endpoint}
        expected = ["cannot reach endpoint", endpoint]
    cfg = write_config(tmp_path, sim.url, storage=storage)
    first = hour_label(past_days(2))
    started = time.monotonic()
    result = run_cli("backfill", "-c", str(cfg), "--from", first, "--to", first)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gio-downloader: error: storage.url s3://"), lines[0]
    assert all(word in lines[0] for word in expected), lines[0]
    assert ACCESS_KEY + ":" not in result.stderr and SECRET_KEY + "/" not in result.stderr
    assert sim.stats.api_calls == [] and sim.stats.downloads == []
    assert time.monotonic() - started < 20


# --- the sink, in process --------------------------------------------------------------------


@pytest.fixture
async def storage(s3_server: S3Server, bucket: str) -> AsyncIterator[S3Storage]:
    st = open_storage(StorageConfig(url=f"s3://{bucket}/unit", endpoint_url=s3_server.endpoint),
                      threads=2)
    assert isinstance(st, S3Storage)
    await st.check()
    yield st
    await st.close()


KEY = partition_dir("unitai01", "page", Period.from_label("hour", "2026112210"))


def StoredPart(index: int, size: int, sha256: str) -> _Stored:  # noqa: N802 - reads as the type
    return _Stored(index, size, sha256, part_name(index))
UNIT_PREFIX = "unit/ai=unitai01/data_type=page/export_type=hour/date=2026-11-22/hour=10"


def gzip_blob(size: int, seed: int = 1) -> bytes:
    """About ``size`` bytes of valid gzip (random data does not compress)."""
    rng = random.Random(seed)
    return gzip.compress(rng.randbytes(size), compresslevel=1)


def count_uploads(st: S3Storage, calls: list[dict[str, Any]]) -> None:
    """Wrap the storage's client so each UploadPart / PutObject is recorded."""
    c = st._client
    for name in ("upload_part", "put_object"):
        original = getattr(c, name)

        async def wrapper(*, _original: Any = original, _name: str = name,
                          **kwargs: Any) -> Any:
            body = kwargs.get("Body", b"")
            if hasattr(body, "read"):
                start = body.tell()
                data = body.read()
                body.seek(start)
            else:
                data = bytes(body)
            sent = {k: kwargs[k] for k in ("ContentMD5", "ChecksumCRC32") if k in kwargs}
            calls.append({"op": _name, "size": len(data), "sent": sent,
                          "body": {"ContentMD5": b64(hashlib.md5(data).digest()),
                                   "ChecksumCRC32": b64(zlib.crc32(data).to_bytes(4, "big"))}})
            return await _original(**kwargs)

        setattr(c, name, wrapper)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def checksum_matches(call: dict[str, Any], kind: str) -> bool:
    """The request carried exactly one checksum, of ``kind``, and it is the body's."""
    header = {"md5": "ContentMD5", "crc32": "ChecksumCRC32"}[kind]
    return list(call["sent"]) == [header] and call["sent"][header] == call["body"][header]


@pytest.mark.parametrize("checksum", [CRC32, MD5])
async def test_big_part_is_split_into_checksummed_upload_parts(storage: S3Storage, s3: Any,
                                                               bucket: str,
                                                               checksum: str) -> None:
    blob = gzip_blob(20 * MiB)
    calls: list[dict[str, Any]] = []
    storage.checksum = checksum
    await storage.client()
    count_uploads(storage, calls)
    sink = await storage.open_part(KEY, part_name(3), 3, verify_gzip=True)
    assert sink.offset == 0
    # ~1 MiB chunks like the worker's, plus one 3 MiB chunk that crosses a part boundary.
    pos, sizes = 0, [MiB] * 6 + [3 * MiB]
    while pos < len(blob):
        n = sizes.pop(0) if sizes else MiB
        await sink.write([blob[pos:pos + n]])
        pos += n
    assert [k for k, _ in incomplete_uploads(s3, bucket)] == [f"{UNIT_PREFIX}/part-00003.csv.gz"]
    stored = await sink.finish(len(blob))
    await sink.publish()
    await sink.close()
    assert stored == StoredPart(3, len(blob), hashlib.sha256(blob).hexdigest())
    uploads = [c for c in calls if c["op"] == "upload_part"]
    assert [c["size"] for c in uploads] == [PART_BYTES, PART_BYTES, len(blob) - 2 * PART_BYTES]
    assert all(checksum_matches(c, checksum) for c in uploads), uploads
    assert not [c for c in calls if c["op"] == "put_object"]
    data = s3.get_object(Bucket=bucket, Key=f"{UNIT_PREFIX}/part-00003.csv.gz")["Body"].read()
    assert data == blob
    assert incomplete_uploads(s3, bucket) == []
    assert storage.location(KEY, "part-00003.csv.gz") == \
        f"s3://{bucket}/{UNIT_PREFIX}/part-00003.csv.gz"
    assert await storage.recover_part(KEY, stored)
    assert not await storage.recover_part(KEY, StoredPart(3, len(blob) + 1, stored.sha256))
    assert not await storage.recover_part(KEY, StoredPart(4, len(blob), stored.sha256))


async def test_small_and_empty_parts_use_one_put(storage: S3Storage, s3: Any,
                                                 bucket: str) -> None:
    calls: list[dict[str, Any]] = []
    await storage.client()
    count_uploads(storage, calls)
    empty = await storage.open_part(KEY, part_name(0), 0, verify_gzip=False)
    assert await empty.finish(0) == StoredPart(0, 0, hashlib.sha256(b"").hexdigest())
    assert calls == []  # sent when published, after the worker has recorded the part
    await empty.publish()
    await empty.close()
    small_blob = gzip_blob(100 * 1024)
    small = await storage.open_part(KEY, part_name(1), 1, verify_gzip=True)
    await small.write([small_blob])
    assert (await small.finish(len(small_blob))).size == len(small_blob)
    await small.publish()
    await small.close()
    assert [(c["op"], c["size"]) for c in calls] == [("put_object", 0),
                                                      ("put_object", len(small_blob))]
    assert all(checksum_matches(c, storage.checksum) for c in calls), calls
    head = s3.head_object(Bucket=bucket, Key=f"{UNIT_PREFIX}/part-00000.csv.gz")
    assert head["ContentLength"] == 0
    await storage.write_success(KEY, {"parts": []})
    manifest = s3.get_object(Bucket=bucket, Key=f"{UNIT_PREFIX}/_SUCCESS")["Body"].read()
    assert json.loads(manifest) == {"parts": []}


async def test_corrupt_part_is_discarded_and_nothing_is_left(storage: S3Storage, s3: Any,
                                                             bucket: str) -> None:
    blob = gzip_blob(9 * MiB, seed=2)
    bad = bytearray(blob)
    bad[len(bad) // 2: len(bad) // 2 + 64] = bytes(64)  # breaks the gzip CRC or the stream
    sink = await storage.open_part(KEY, part_name(5), 5, verify_gzip=True)
    with pytest.raises(CorruptPart):
        for pos in range(0, len(bad), MiB):
            await sink.write([bytes(bad[pos:pos + MiB])])
        await sink.finish(len(bad))
    assert incomplete_uploads(s3, bucket) != []
    await sink.reset()
    assert sink.offset == 0
    assert incomplete_uploads(s3, bucket) == []
    for pos in range(0, len(blob), MiB):
        await sink.write([blob[pos:pos + MiB]])
    with pytest.raises(CorruptPart, match="Content-Length"):
        await sink.finish(len(blob) + 1)
    stored = await sink.finish(len(blob))
    await sink.publish()
    await sink.close()
    assert stored.sha256 == hashlib.sha256(blob).hexdigest()
    assert incomplete_uploads(s3, bucket) == []
    assert s3.get_object(Bucket=bucket, Key=f"{UNIT_PREFIX}/part-00005.csv.gz")["Body"].read() \
        == blob


@pytest.mark.parametrize("checksum", [MD5, CRC32])
async def test_a_recorded_upload_is_completed_not_sent_again(storage: S3Storage, s3: Any,
                                                             bucket: str, checksum: str) -> None:
    """finish() sends every byte but shows nothing; a part left there (the process died after
    the checkpoint recorded it) is completed by recover_part from the parts the server lists.
    Completing a CRC32 upload needs each piece's CRC32, which SeaweedFS's ListParts omits:
    there the part is refused, fetched again, and its upload aborted when it is reopened."""
    storage.checksum = checksum
    blob = gzip_blob(20 * MiB, seed=5)
    key = f"{UNIT_PREFIX}/part-00008.csv.gz"
    sink = await storage.open_part(KEY, part_name(8), 8, verify_gzip=True)
    for pos in range(0, len(blob), MiB):
        await sink.write([blob[pos:pos + MiB]])
        if pos == 9 * MiB:  # an UploadPart is in flight or done: readiness must not touch it
            await storage.check()
            assert storage.checksum == checksum  # chosen once, not again under an upload
    stored = await sink.finish(len(blob))
    await sink.close()  # no publish: as if the process had died there
    assert all_keys(s3, bucket, key) == []
    assert [k for k, _ in incomplete_uploads(s3, bucket)] == [key]
    assert not await storage.recover_part(KEY, StoredPart(8, len(blob) - 1, stored.sha256))
    assert [k for k, _ in incomplete_uploads(s3, bucket)] == [key]
    calls: list[dict[str, Any]] = []
    count_uploads(storage, calls)
    recovered = await storage.recover_part(KEY, stored)
    assert calls == []  # nothing is sent again by recovery
    if recovered:
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == blob
        assert incomplete_uploads(s3, bucket) == []
        return
    assert checksum == CRC32 and storage.declare_crc32, \
        "an upload that did not declare CRC32 completes from its pieces' ETags alone"
    assert all_keys(s3, bucket, key) == []
    reopened = await storage.open_part(KEY, part_name(8), 8, verify_gzip=True)
    assert incomplete_uploads(s3, bucket) == []
    await reopened.close()


async def test_abandoned_and_leftover_uploads_are_aborted(storage: S3Storage, s3: Any,
                                                          bucket: str) -> None:
    key = f"{UNIT_PREFIX}/part-00007.csv.gz"
    # A part abandoned in this run (failure, cancel): close() aborts its upload.
    sink = await storage.open_part(KEY, part_name(7), 7, verify_gzip=False)
    await sink.write([b"x" * (PART_BYTES + 10)])
    await sink.settle()
    assert [k for k, _ in incomplete_uploads(s3, bucket)] == [key]
    await sink.close()
    assert incomplete_uploads(s3, bucket) == []
    # An upload a crashed run left behind: opening the part aborts it and starts at 0.
    s3.create_multipart_upload(Bucket=bucket, Key=key)
    s3.create_multipart_upload(Bucket=bucket, Key=f"{UNIT_PREFIX}/part-00070.csv.gz")
    sink = await storage.open_part(KEY, part_name(7), 7, verify_gzip=False)
    assert sink.offset == 0
    assert [k for k, _ in incomplete_uploads(s3, bucket)] == [f"{UNIT_PREFIX}/part-00070.csv.gz"]
    await sink.close()
    # The start-up sweep takes the rest under <prefix>/ai=, and nothing outside it, nor the
    # uploads of parts the checkpoint has recorded (``keep``).
    s3.create_multipart_upload(Bucket=bucket, Key="elsewhere/file")
    recorded = f"{UNIT_PREFIX}/part-00071.csv.gz"
    s3.create_multipart_upload(Bucket=bucket, Key=recorded)
    await storage.check()  # the readiness check touches no upload
    assert len(incomplete_uploads(s3, bucket)) == 3
    await storage.sweep({storage.location(KEY, "part-00071.csv.gz")}, roots=["ai="])
    assert sorted(k for k, _ in incomplete_uploads(s3, bucket)) == ["elsewhere/file", recorded]
    assert all_keys(s3, bucket, "unit/.gio") == []  # the write probe is gone


async def test_a_sharded_sweep_leaves_other_instances_uploads(storage: S3Storage, s3: Any,
                                                              bucket: str) -> None:
    """Instances sharing a bucket (sharding) sweep only the folders they own: another
    instance's upload in flight is not aborted under it."""
    other = partition_dir("otherai1", "page", Period.from_label("hour", "2026112210"))
    mine_key, theirs_key = f"unit/{KEY}/part-00001.csv.gz", f"unit/{other}/part-00001.csv.gz"
    s3.create_multipart_upload(Bucket=bucket, Key=mine_key)
    s3.create_multipart_upload(Bucket=bucket, Key=theirs_key)
    assert await storage.sweep(set(), roots=["ai="], only={KEY}) == 1
    assert [k for k, _ in incomplete_uploads(s3, bucket)] == [theirs_key]


@pytest.mark.parametrize("kind", [CRC32, MD5])
async def test_a_wrong_upload_checksum_is_refused(storage: S3Storage, s3_server: S3Server,
                                                  s3: Any, bucket: str, kind: str) -> None:
    """Whatever checksum the start-up probe chose, the server verifies it; Content-MD5 always
    (but on moto, the fallback server, which does not check it)."""
    if kind == MD5 and s3_server.kind == "moto":
        pytest.skip("moto does not check Content-MD5")
    if kind == CRC32 and storage.checksum != CRC32:
        assert s3_server.kind != "seaweedfs", "SeaweedFS verifies x-amz-checksum-crc32"
        pytest.skip(f"{s3_server.kind} does not verify CRC32; the probe chose Content-MD5")
    body = b"some bytes that are not what the checksum says\n"
    key = f"{UNIT_PREFIX}/part-00042.csv.gz"
    with pytest.raises(CorruptPart, match="BadDigest|InvalidDigest|ChecksumMismatch"):
        await storage.put(key, body, Checksum.of(kind, body + b"x"))
    assert all_keys(s3, bucket, key) == []
    await storage.put(key, body, Checksum.of(kind, body))
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body


@pytest.mark.parametrize(("put", "part", "checksum", "declared"), [
    ("BadDigest", "BadDigest", CRC32, False),  # SeaweedFS: pieces checked without declaring
    ("BadDigest", "InvalidRequest", CRC32, True),  # AWS S3: an upload must declare CRC32
    ("BadDigest", None, CRC32, True),  # pieces of undeclared uploads not checked: declare
    ("XAmzContentChecksumMismatch", "XAmzContentChecksumMismatch", CRC32, False),  # MinIO
    ("InvalidArgument", "-", MD5, False),  # a server that does not know the header
    ("NotImplemented", "-", MD5, False),
    (None, "-", MD5, False),  # accepted: the header was ignored
])
async def test_checksum_probe_reads_the_servers_answers(put: str | None, part: str | None,
                                                         checksum: str, declared: bool) -> None:
    calls: list[str] = []

    def answer(code: str | None) -> None:
        if code is not None:
            raise client_error(code, 501 if code == "NotImplemented" else 400)

    class Client:
        async def put_object(self, **kwargs: Any) -> None:
            assert "ChecksumCRC32" in kwargs and "ContentMD5" not in kwargs
            calls.append("put")
            answer(put)

        async def create_multipart_upload(self, **kwargs: Any) -> dict[str, str]:
            assert "ChecksumAlgorithm" not in kwargs
            calls.append("create")
            return {"UploadId": "u1"}

        async def upload_part(self, **kwargs: Any) -> None:
            assert "ChecksumCRC32" in kwargs and kwargs["UploadId"] == "u1"
            calls.append("part")
            answer(part)

        async def abort_multipart_upload(self, **kwargs: Any) -> None:
            calls.append("abort")

    st = S3Storage(StorageConfig(url="s3://b/p", endpoint_url="http://s3.test:9000"), threads=1)
    try:
        await st._choose_checksum(Client(), "p/.probe", b"probe")
        assert (st.checksum, st.declare_crc32) == (checksum, declared)
        assert calls == (["put"] if checksum == MD5 else ["put", "create", "part", "abort"])
    finally:
        await st.close()


async def test_a_part_buffer_is_sent_as_one_view_from_its_read_position() -> None:
    """aiohttp picks the buffer's own payload even through aiobotocore's body proxy, and sends
    the bytes from where botocore rewound it (a retry resends the whole piece)."""
    from aiobotocore._endpoint_helpers import _IOBaseWrapper
    from aiohttp import payload

    from downloader.storage.s3buffers import PartBuffer, PartBufferPayload

    buf = PartBuffer(1024)
    buf.append(memoryview(b"0123456789"))
    buf.seek(3)

    class Writer:
        def __init__(self) -> None:
            self.sent: list[Any] = []

        async def write(self, data: Any) -> None:
            self.sent.append(data)

    body = payload.get_payload(_IOBaseWrapper(buf))
    assert isinstance(body, PartBufferPayload) and body.size == 7
    writer = Writer()
    await body.write_with_length(writer, None)
    assert len(writer.sent) == 1 and isinstance(writer.sent[0], memoryview)
    assert bytes(writer.sent[0]) == b"3456789"
    del writer
    buf.seek(0)  # botocore's rewind before a retry
    again = Writer()
    await payload.get_payload(_IOBaseWrapper(buf)).write_with_length(again, 4)
    assert [bytes(v) for v in again.sent] == [b"0123"]
    del again
    buf.clear()
    assert buf.size == 0 and buf.read() == b""
    buf.close()


async def test_a_failed_check_leaves_the_storage_usable() -> None:
    """The daemon's readiness check runs check() on the live storage: a failure (S3 down for a
    moment) must only be reported, not close what the running downloads use."""
    st = S3Storage(StorageConfig(url="s3://gio-bucket/p",
                                 endpoint_url=f"http://127.0.0.1:{closed_port()}"), threads=1)
    try:
        with pytest.raises(StorageError, match="cannot reach endpoint"):
            await st.check()
        assert st.pool.submit(lambda: 42).result(timeout=5) == 42
    finally:
        await st.close()


def test_missing_aiobotocore_is_a_storage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "downloader.storage.s3", None)
    with pytest.raises(StorageError, match=r"install the s3 extra: pip install '\.\[s3\]'"):
        open_storage(StorageConfig(url="s3://bucket/prefix"), threads=1)


async def test_memory_per_part_is_bounded_whatever_its_size(
        storage: S3Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    """At most two 8 MiB buffers per part, and the second only within the storage's budget;
    reused while parts are open, and given back to the OS when none is."""
    import downloader.storage.s3buffers as s3mod

    live: set[Any] = set()
    most = [0]
    created = [0]

    class Counted(s3mod.PartBuffer):
        def __init__(self, capacity: int) -> None:
            super().__init__(capacity)
            created[0] += 1

        def append(self, data: memoryview) -> None:
            super().append(data)
            live.add(self)
            most[0] = max(most[0], len(live))

        def close(self) -> None:
            live.discard(self)
            super().close()

    monkeypatch.setattr(s3mod, "PartBuffer", Counted)
    blobs = [gzip_blob(20 * MiB, seed=3), gzip_blob(20 * MiB, seed=4)]

    async def one(index: int, blob: bytes) -> StoredPart:
        sink = await storage.open_part(KEY, part_name(10 + index), 10 + index, verify_gzip=True)
        try:
            for pos in range(0, len(blob), MiB):
                await sink.write([blob[pos:pos + MiB]])
            stored = await sink.finish(len(blob))
            await sink.publish()
            return stored
        finally:
            await sink.close()

    stored = await asyncio.gather(*(one(i, b) for i, b in enumerate(blobs)))
    assert [s.sha256 for s in stored] == [hashlib.sha256(b).hexdigest() for b in blobs]
    # Two parts in flight, the storage (2 threads) allows one spare buffer: at most 3 at once.
    assert most[0] <= 3, most[0]
    # 2 x 20 MiB is six 8 MiB pieces: the buffers were reused, not made anew for each.
    assert created[0] <= 3, created[0]
    # No part is open any more: every buffer went back to the OS.
    assert not live


def client_error(code: str, status: int, headers: dict[str, str] | None = None) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": "x"},
                        "ResponseMetadata": {"HTTPStatusCode": status,
                                             "HTTPHeaders": headers or {}}}, "HeadBucket")


def connection_error() -> Exception:
    from botocore.exceptions import EndpointConnectionError

    return EndpointConnectionError(endpoint_url="http://127.0.0.1:9/b", error="refused")


def no_credentials() -> Exception:
    from botocore.exceptions import NoCredentialsError

    return NoCredentialsError()


@pytest.mark.parametrize(("error", "message"), [
    (lambda: client_error("404", 404), "bucket 'b' does not exist at http://s3.test:9000"),
    (lambda: client_error("NoSuchBucket", 404), "bucket 'b' does not exist"),
    (lambda: client_error("403", 403), "access denied to bucket 'b'"),
    (lambda: client_error("AccessDenied", 403), "access denied to bucket 'b'"),
    (lambda: client_error("301", 301, {"x-amz-bucket-region": "eu-west-1"}),
     "the bucket is in region eu-west-1; set storage.region: eu-west-1"),
    (lambda: client_error("500", 500), "HeadBucket failed: 500"),
    (connection_error, "cannot reach endpoint http://s3.test:9000: refused"),
    (no_credentials, "no usable AWS credentials"),
])
async def test_head_bucket_errors_map_to_one_line(error: Any, message: str) -> None:
    """The start-up check's answers, row by row (no server needed)."""

    class Client:
        async def head_bucket(self, **_: Any) -> None:
            raise error()

    st = S3Storage(StorageConfig(url="s3://b/p", endpoint_url="http://s3.test:9000"), threads=1)
    try:
        with pytest.raises(StorageError) as info:
            await st._check_bucket(Client())
    finally:
        await st.close()
    text = str(info.value)
    assert text.startswith("storage.url s3://b/p: ") and message in text, text
    assert "\n" not in text
