"""Time to the first byte and to the first complete partition of a daemon starting on a full
retention window: 15 days x 3 types of hours (about 360 jobs) due at once, 2 API calls a second.

Measured from outside, on the files: the first byte is the first non-empty temporary or part
file under the storage root, the first partition the first ``_SUCCESS``. Run from the repository
root: ``python bench/first_bytes.py`` (about a minute). Prints one JSON object per simulator
setting: ``--running-polls 0`` (every partition FINISHED at the first ask, as the vendor's older
hours are) and ``1`` (every partition RUNNING once first: nothing is finished until re-polled).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import REPO, TOKEN, free_ports, python_env  # noqa: E402

TIMEOUT_SECONDS = 120.0


def _config(tmp: Path, port: int) -> Path:
    path = tmp / "config.yaml"
    path.write_text(f"""
api: {{base_url: "http://127.0.0.1:{port}", token: {TOKEN}, rate_limit_per_second: 2}}
projects: [{{ai: bench001, data_types: [visit, page, custom_event], export_types: [hour]}}]
storage: {{url: {(tmp / "data").as_uri()}}}
checkpoint: {tmp / "state" / "checkpoint.db"}
log: {{format: json, level: warning}}
""")
    return path


def _first(data: Path) -> tuple[bool, bool]:
    if not data.exists():
        return False, False
    byte = any(p.stat().st_size > 0 for p in data.rglob("*") if p.is_file()
               and (p.name.endswith(".partial") or p.name.startswith("part-")))
    return byte, any(data.rglob("_SUCCESS"))


def measure(running_polls: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="gio-first-bytes-") as name:
        tmp = Path(name)
        port = free_ports(1)[0]
        sim = subprocess.Popen(
            [sys.executable, "-m", "downloader", "simulate", "--port", str(port), "--token",
             TOKEN, "--part-size", "65536", "--parts", "1", "--running-polls",
             str(running_polls), "--cache-dir", str(tmp / "cache")],
            cwd=REPO, env=python_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.5)
        started = time.monotonic()
        daemon = subprocess.Popen(
            [sys.executable, "-m", "downloader", "run", "-c", str(_config(tmp, port))],
            cwd=REPO, env=python_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        first_byte = first_partition = None
        try:
            while time.monotonic() - started < TIMEOUT_SECONDS and first_partition is None:
                byte, done = _first(tmp / "data")
                now = time.monotonic() - started
                if byte and first_byte is None:
                    first_byte = now
                if done:
                    first_partition = now
                time.sleep(0.05)
        finally:
            for proc in (daemon, sim):
                proc.send_signal(signal.SIGTERM if proc is daemon else signal.SIGINT)
            for proc in (daemon, sim):
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        return {"running_polls": running_polls, "days": 15, "data_types": 3,
                "first_byte_s": None if first_byte is None else round(first_byte, 2),
                "first_partition_s": None if first_partition is None
                else round(first_partition, 2)}


def main() -> int:
    for polls in (0, 1):
        print(json.dumps(measure(polls)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
