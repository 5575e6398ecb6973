"""Alternating measured runs: A B C A B C ... after one untimed warm-up of each contender, each
run into a fresh place that is checked and then removed."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from measure import Run, median, summary, timed
from tools import log_tail


@dataclass
class Contender:
    name: str  # key in the results
    label: str  # one line for the table
    command: Callable[[Path], list[str]]  # run folder -> command (writes its config there)
    verify: Callable[[Path, bool], tuple[bool, str, int]]  # (run folder, sha256?) -> ok, note, n
    cleanup: Callable[[Path], None]  # after the run is checked (the folder is made fresh before)
    env: dict[str, str] | None = None
    cwd: Path | None = None
    warmup: bool = True  # False when an earlier contender already warmed the same path
    max_rounds: int | None = None  # fewer measured runs for a slow variant


@dataclass
class Outcome:
    warmups: dict[str, Run] = field(default_factory=dict)
    runs: dict[str, list[Run]] = field(default_factory=dict)  # measured, in round order
    verified_sha: dict[str, bool] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # contender -> reason

    def as_dict(self) -> dict[str, Any]:
        return {
            "warmups": {k: v.as_dict() for k, v in self.warmups.items()},
            "runs": {k: [r.as_dict() for r in v] for k, v in self.runs.items()},
            "summary": {k: summary(v) for k, v in self.runs.items()},
            "summary_clean": {k: summary([r for r in v if not r.noisy])
                              for k, v in self.runs.items()},
            "verified_sha256": self.verified_sha,
            "unavailable": self.unavailable,
        }


Probe = Callable[[], dict[str, float]]


def _one(c: Contender, run_dir: Path, label: str, logs: Path, servers: dict[str, int],
         probe: Probe | None, sha: bool) -> Run:
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    cmd = c.command(run_dir)
    before = probe() if probe else {}
    log = logs / f"{c.name}.log"
    run = timed(label, cmd, log=log, servers=servers, env=c.env, cwd=c.cwd)
    if probe:
        after = probe()
        run.extra.update({k: after[k] - before.get(k, 0) for k in after})
    ok, note, n = c.verify(run_dir, sha and run.ok)
    run.bytes = n
    if run.ok and not ok:
        run.ok, run.note = False, f"wrong output: {note}"
    if not run.ok and run.exit_code != 0:
        run.note += f": {log_tail(log)}"
    c.cleanup(run_dir)
    return run


def _others(run: Run) -> str:
    top = list(run.extra.get("other_processes_cpu_s", {}).items())[:2]
    return " (" + ", ".join(f"{n} {c:.1f}" for n, c in top) + ")" if top else ""


def alternate(contenders: list[Contender], rounds: int, work: Path, logs: Path,
              servers: dict[str, int], probe: Probe | None = None,
              report: Callable[[str], None] = print, warmup: bool = True,
              quiet: Callable[[], dict[str, float] | None] | None = None,
              extra_rounds: int = 0) -> Outcome:
    """Warm up each contender once, then ``rounds`` rounds in a fixed order. The first measured
    run of each is checked byte for byte (sha256), every run by size. A contender whose warm-up
    fails is reported unavailable and left out of the rounds. ``quiet`` is called before each
    measured run (to let the machine calm down first). When other processes competed during
    some runs (``Run.noisy``), up to ``extra_rounds`` more rounds are run, of the contenders
    still short of ``rounds`` clean runs: all runs are kept and reported, noisy or not."""
    out = Outcome()
    live = []
    for c in contenders:
        out.runs[c.name] = []
        if not warmup or not c.warmup:
            live.append(c)
            continue
        run = _one(c, work / f"{c.name}-warmup", f"{c.name} warm-up", logs, servers, probe,
                   False)
        out.warmups[c.name] = run
        report(f"  warm-up {c.label:<38} {run.wall_s:7.2f} s  {'ok' if run.ok else run.note}")
        if run.ok:
            live.append(c)
        else:
            out.unavailable[c.name] = run.note
            report("    -> not available; left out of the rounds")
    def short_of_clean(c: Contender) -> bool:
        want = min(rounds, c.max_rounds or rounds)
        return sum(1 for x in out.runs[c.name] if x.ok and not x.noisy) < want

    r = 0
    while r < rounds or (r < rounds + extra_rounds and any(short_of_clean(c) for c in live)):
        if r == rounds:
            report(f"  (noisy runs: up to {extra_rounds} more round(s) for a clean figure)")
        for c in live:
            if r >= rounds and c.max_rounds is not None and not short_of_clean(c):
                continue  # extra rounds are whole rounds (for pairs), but not for slow extras
            if r < rounds and c.max_rounds is not None and r >= c.max_rounds:
                continue
            calm = quiet() if quiet is not None else None
            sha = not out.verified_sha.get(c.name, False)
            run = _one(c, work / f"{c.name}-r{r}", f"{c.name} round {r + 1}", logs, servers,
                       probe, sha)
            run.extra["round"] = r + 1
            if calm:
                run.extra["quiet"] = calm
            if sha and run.ok:
                out.verified_sha[c.name] = True
            out.runs[c.name].append(run)
            report(f"  round {r + 1} {c.label:<38} {run.wall_s:7.2f} s  cpu {run.cpu_s:6.2f} s  "
                   f"rss {run.rss_mib:6.1f} MiB  other-cpu {run.other_cpu_s:5.2f} s"
                   f"{_others(run)}{'  NOISY' if run.noisy else ''}"
                   f"{'' if run.ok else '  FAILED: ' + run.note}")
        r += 1
    return out


def ratios(out: Outcome, a: str, b: str) -> dict[str, Any] | None:
    """Median of a/b over the rounds in which both ran well, for wall, CPU and RSS; and the
    wall ratio over the clean pairs only (neither run disturbed by other processes)."""
    rb = {x.extra.get("round"): x for x in out.runs.get(b, []) if x.ok}
    pairs = [(x, rb[x.extra.get("round")]) for x in out.runs.get(a, [])
             if x.ok and x.extra.get("round") in rb]
    if not pairs:
        return None
    walls = [x.wall_s / y.wall_s for x, y in pairs if y.wall_s > 0]
    cpus = [x.cpu_s / y.cpu_s for x, y in pairs if y.cpu_s > 0]
    rss = [x.rss_mib / y.rss_mib for x, y in pairs if y.rss_mib > 0]
    clean = [x.wall_s / y.wall_s for x, y in pairs if not x.noisy and not y.noisy and y.wall_s]
    return {"pairs": len(pairs),
            "wall": round(median(walls), 3), "wall_all": [round(w, 3) for w in walls],
            "cpu": round(median(cpus), 3), "rss": round(median(rss), 3),
            "clean_pairs": len(clean),
            "wall_clean": round(median(clean), 3) if clean else None}
