"""The contenders and how to check what they wrote: the downloader's backfill (local or S3),
curl --parallel and aria2c over the same links, and the plain S3 upload baseline."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from servers import TOKEN

AI = "bench0001"
DATA_TYPE = "page"
CONCURRENCY = 8
S3_BUCKET = "bench"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1"}
HASH_BLOCK = 4 * 1024 * 1024


def part_name(index: int) -> str:
    return f"part-{index:05d}.csv.gz"


@dataclass(frozen=True)
class Partition:
    """The partition every contender fetches: its links and the bytes expected."""

    ai: str
    data_type: str
    hour: datetime  # Beijing
    links: tuple[str, ...]
    expected: tuple[dict[str, Any], ...]  # {"index", "size", "sha256"} from /_sim/parts

    @property
    def hour_arg(self) -> str:
        return self.hour.strftime("%Y%m%d%H")

    @property
    def total_bytes(self) -> int:
        return sum(int(p["size"]) for p in self.expected)


def write_config(path: Path, *, api_url: str, storage_url: str, checkpoint: Path, verify: str,
                 ai: str = AI, data_types: tuple[str, ...] = (DATA_TYPE,),
                 endpoint_url: str | None = None) -> Path:
    """A downloader config. JSON is YAML, so no YAML writer is needed."""
    storage: dict[str, Any] = {"url": storage_url}
    if endpoint_url:
        storage["endpoint_url"] = endpoint_url
        storage["region"] = AWS_ENV["AWS_DEFAULT_REGION"]
    cfg = {
        "api": {"base_url": api_url, "token": TOKEN, "rate_limit_per_second": 2},
        "projects": [{"ai": ai, "data_types": list(data_types), "export_types": ["hour"]}],
        "storage": storage,
        "checkpoint": str(checkpoint),
        "concurrency": {"downloads": CONCURRENCY},
        "download": {"verify": verify},
        "log": {"format": "json", "level": "info"},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cfg, indent=2) + "\n")
    return path


def backfill_cmd(config: Path, first: str, last: str) -> list[str]:
    return [sys.executable, "-m", "downloader", "backfill", "-c", str(config),
            "--from", first, "--to", last]


def curl_cmd(part: Partition, out_dir: Path, cfg_path: Path) -> list[str]:
    lines = []
    for i, url in enumerate(part.links):
        lines += [f'url = "{url}"', f'output = "{out_dir / part_name(i)}"']
    cfg_path.write_text("\n".join(lines) + "\n")
    return ["curl", "--parallel", "--parallel-max", str(CONCURRENCY), "-sS", "--fail",
            "-K", str(cfg_path)]


def aria2c_cmd(part: Partition, out_dir: Path, list_path: Path) -> list[str]:
    lines = []
    for i, url in enumerate(part.links):
        lines += [url, f"  out={part_name(i)}"]
    list_path.write_text("\n".join(lines) + "\n")
    return ["aria2c", f"-j{CONCURRENCY}", "-x1", "--file-allocation=none", "-i", str(list_path),
            "-d", str(out_dir), "--allow-overwrite=true", "--auto-file-renaming=false", "-q"]


def plain_client_cmd(part: Partition, out_dir: Path, sha256: bool) -> list[str]:
    return [sys.executable, str(Path(__file__).with_name("plainclient.py")),
            *(["--sha256"] if sha256 else []), str(out_dir), *part.links]


def s3_upload_cmd(endpoint: str, prefix: str, files: list[Path]) -> list[str]:
    return [sys.executable, str(Path(__file__).with_name("s3tool.py")), "upload",
            "--endpoint", endpoint, "--bucket", S3_BUCKET, "--prefix", prefix,
            *map(str, files)]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def check_sizes_and_hashes(found: dict[str, int], expected: tuple[dict[str, Any], ...],
                           hashes: dict[str, str] | None) -> tuple[bool, str]:
    """Compare part names → sizes (and sha256 when given) with what the simulator serves."""
    want = {part_name(int(p["index"])): p for p in expected}
    if set(found) != set(want):
        missing = sorted(set(want) - set(found))
        extra = sorted(set(found) - set(want))
        return False, f"parts differ: missing {missing[:3]} extra {extra[:3]}"
    for name, p in want.items():
        if found[name] != int(p["size"]):
            return False, f"{name}: {found[name]} bytes, expected {p['size']}"
        if hashes is not None and hashes.get(name) != p["sha256"]:
            return False, f"{name}: sha256 differs"
    return True, ""


def verify_local(root: Path, part: Partition, sha: bool,
                 want_success: bool = False) -> tuple[bool, str, int]:
    """Check the parts under ``root`` (any depth). Returns (ok, note, bytes found)."""
    files = {p.name: p for p in root.rglob("part-*.csv.gz")}
    found = {name: p.stat().st_size for name, p in files.items()}
    hashes = None
    if sha:
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            hashes = dict(zip(files, pool.map(sha256_file, files.values()), strict=True))
    ok, note = check_sizes_and_hashes(found, part.expected, hashes)
    if ok and want_success and not any(root.rglob("_SUCCESS")):
        ok, note = False, "no _SUCCESS manifest"
    return ok, note, sum(found.values())


def verify_s3(listing: dict[str, Any], part: Partition, sha: bool) -> tuple[bool, str, int]:
    """The same check on an ``s3tool.py check`` listing (object key → size, sha256)."""
    parts = {k.rsplit("/", 1)[-1]: v for k, v in listing.items()
             if k.rsplit("/", 1)[-1].startswith("part-")}
    found = {name: int(v["size"]) for name, v in parts.items()}
    hashes = {name: v.get("sha256", "") for name, v in parts.items()} if sha else None
    ok, note = check_sizes_and_hashes(found, part.expected, hashes)
    if ok and listing and not any(k.endswith("_SUCCESS") for k in listing) and \
            any("ai=" in k for k in listing):
        ok, note = False, "no _SUCCESS manifest"
    return ok, note, sum(found.values())


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def log_tail(log: Path, lines: int = 400) -> str:
    """The most telling line near the end of a run's log (an error, else the last line)."""
    try:
        tail = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    for line in reversed(tail):
        low = line.lower()
        if "error" in low or "failed" in low or "traceback" in low or "stopped" in low:
            return line.strip()[:300]
    return tail[-1].strip()[:300] if tail else ""
