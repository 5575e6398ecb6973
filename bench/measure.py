"""Measuring one command: ``/usr/bin/time -v`` for the command itself, ``/proc`` for the
servers it talks to (simulator, SeaweedFS) and for everything else on the machine.

The "other" CPU of a run is the machine's busy CPU during the run minus the command's and the
servers': on a shared 2-core machine it says whether something else (a test suite, a build)
was competing, so a noisy figure can be recognised instead of tuned for.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

TIME_BIN = "/usr/bin/time"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# A run that takes longer than this is a hang, not a figure.
RUN_TIMEOUT_SECONDS = 900
# The package under test: other engineers may edit it while the benchmark runs.
CODE_DIR = Path(__file__).resolve().parent.parent / "downloader"
# A run during which other user processes used more than this many cores is marked noisy.
NOISY_OTHER_CORES = 0.25

_TIME_FIELDS = {
    "Elapsed (wall clock) time": "elapsed",
    "User time (seconds)": "user",
    "System time (seconds)": "sys",
    "Maximum resident set size (kbytes)": "maxrss_kb",
    "Exit status": "exit_status",
    "Major (requiring I/O) page faults": "major_faults",
    "Voluntary context switches": "vcs",
    "Involuntary context switches": "ivcs",
    "File system outputs": "fs_outputs",
}


@dataclass
class Run:
    """One measured run. Times in seconds, memory in MiB."""

    label: str
    wall_s: float = 0.0  # "Elapsed (wall clock)" of /usr/bin/time -v
    user_s: float = 0.0
    sys_s: float = 0.0
    rss_mib: float = 0.0  # "Maximum resident set size"
    exit_code: int = 0
    wall_perf_s: float = 0.0  # the same wall time from perf_counter around the process
    server_cpu_s: dict[str, float] = field(default_factory=dict)  # per server process
    other_cpu_s: float = 0.0  # process CPU of everything else on the machine
    kernel_threads_cpu_s: float = 0.0  # the part of it used by kernel threads (writeback...)
    irq_s: float = 0.0  # irq+softirq time, charged to no process (loopback TCP, disk)
    iowait_s: float = 0.0  # machine-wide iowait during the run (both cores added)
    noisy: bool = False  # other user processes competed for the CPU (see is_noisy)
    code: str = ""  # fingerprint of downloader/*.py when the run started
    loadavg_before: float = 0.0
    flush_s: float = 0.0  # a sync() right after the run: dirty pages the tool left behind
    bytes: int = 0
    ok: bool = True
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cpu_s"] = round(self.cpu_s, 3)
        return d


def code_fingerprint() -> str:
    """A short hash of the package's source, to notice edits made while the benchmark runs."""
    h = hashlib.sha256()
    for path in sorted(CODE_DIR.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def parse_time_v(text: str) -> dict[str, float]:
    """The fields we use from GNU time's ``-v`` report."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        name, sep, value = line.strip().rpartition(": ")
        if not sep:
            continue
        for prefix, key in _TIME_FIELDS.items():
            if name.startswith(prefix):
                out[key] = _elapsed(value) if key == "elapsed" else float(value)
    return out


def _elapsed(value: str) -> float:
    """``h:mm:ss`` or ``m:ss.ss`` into seconds."""
    seconds = 0.0
    for piece in value.split(":"):
        seconds = seconds * 60 + float(piece)
    return seconds


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its threads (0 when it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = raw.rpartition(")")[2].split()
    # After the ")" the fields start at field 3 (state); utime is field 14, stime 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


KTHREADD_PID = 2


def proc_table() -> dict[int, tuple[str, float, bool]]:
    """pid -> (command name, CPU seconds, is a kernel thread) of every process now."""
    out: dict[int, tuple[str, float, bool]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                raw = (entry / "stat").read_text()
            except OSError:
                continue
            name = raw[raw.find("(") + 1:raw.rfind(")")]
            fields = raw.rpartition(")")[2].split()
            pid = int(entry.name)
            kernel = pid == KTHREADD_PID or int(fields[1]) == KTHREADD_PID
            if kernel:  # "kworker/u8:1-writeback": the part after "-" is its current job
                name = name.split("-")[0].split("/")[0]
            out[pid] = (name, (int(fields[11]) + int(fields[12])) / CLK_TCK, kernel)
    return out


def other_processes(before: dict[int, tuple[str, float, bool]],
                    after: dict[int, tuple[str, float, bool]],
                    exclude: set[int]) -> tuple[dict[str, float], float]:
    """CPU used during a run by the other processes alive at its end, by name (the biggest
    first), and how much of it was kernel threads (writeback, reclaim: often our own I/O)."""
    by_name: dict[str, float] = {}
    kernel_cpu = 0.0
    for pid, (name, cpu, kernel) in after.items():
        if pid in exclude:
            continue
        used = cpu - before[pid][1] if pid in before else cpu
        if used > 0:
            by_name[name] = by_name.get(name, 0.0) + used
            kernel_cpu += used if kernel else 0.0
    top = {n: round(c, 2) for n, c in sorted(by_name.items(), key=lambda kv: -kv[1])
           if c >= 0.1}
    return top, kernel_cpu


def machine_cpu() -> tuple[float, float, float]:
    """(process, interrupt, iowait) CPU seconds of the whole machine since boot, all cores
    added. Process time is user+nice+system; interrupt time (irq+softirq) is not charged to
    any process and includes the loopback network stack's work for our own transfers."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()
    user, nice, system, _idle, iowait, irq, softirq, steal = (int(x) for x in first[1:9])
    return ((user + nice + system + steal) / CLK_TCK, (irq + softirq) / CLK_TCK,
            iowait / CLK_TCK)


def is_noisy(run: Run) -> bool:
    """Other user processes used more than NOISY_OTHER_CORES on average during the run."""
    return run.other_cpu_s - run.kernel_threads_cpu_s > NOISY_OTHER_CORES * run.wall_s


def wait_quiet(max_wait: float, threshold: float = 0.2, window: float = 0.5) -> dict[str, float]:
    """Wait until the machine's busy CPU over ``window`` seconds is under ``threshold`` cores
    (someone else's build or test suite shares these 2 cores), at most ``max_wait`` seconds."""
    t0 = time.monotonic()
    while True:
        b0 = sum(machine_cpu()[:2])
        time.sleep(window)
        busy = (sum(machine_cpu()[:2]) - b0) / window
        waited = time.monotonic() - t0
        if busy < threshold or waited >= max_wait:
            return {"waited_s": round(waited, 1), "busy_cores_at_start": round(busy, 2)}


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def timed(label: str, cmd: list[str], *, log: Path, servers: dict[str, int] | None = None,
          env: dict[str, str] | None = None, cwd: Path | None = None,
          timeout: float = RUN_TIMEOUT_SECONDS, flush: bool = True) -> Run:
    """Run ``cmd`` under ``/usr/bin/time -v``; its output goes to ``log``.

    ``servers`` maps a name to the pid of a process serving the command; their CPU during the
    run is recorded apart. The run is killed (its whole process group) after ``timeout``.
    """
    servers = servers or {}
    fd, time_out = tempfile.mkstemp(prefix="bench-time-", suffix=".txt")
    os.close(fd)
    run = Run(label, loadavg_before=loadavg(), code=code_fingerprint())
    server_before = {name: proc_cpu_seconds(pid) for name, pid in servers.items()}
    procs0 = proc_table()
    busy0, irq0, iowait0 = machine_cpu()
    t0 = time.perf_counter()
    with log.open("ab") as out:
        out.write(f"\n=== {label}: {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen([TIME_BIN, "-v", "-o", time_out, *cmd], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=cwd, start_new_session=True)
        try:
            run.exit_code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            run.exit_code, run.ok, run.note = -9, False, f"killed after {timeout:.0f} s"
    run.wall_perf_s = time.perf_counter() - t0
    busy1, irq1, iowait1 = machine_cpu()
    others, kernel_cpu = other_processes(procs0, proc_table(), {os.getpid(), *servers.values()})
    run.server_cpu_s = {name: round(proc_cpu_seconds(pid) - server_before[name], 3)
                        for name, pid in servers.items()}
    report = Path(time_out).read_text(errors="replace")
    os.unlink(time_out)
    fields = parse_time_v(report)
    run.wall_s = fields.get("elapsed", run.wall_perf_s)
    run.user_s = fields.get("user", 0.0)
    run.sys_s = fields.get("sys", 0.0)
    run.rss_mib = round(fields.get("maxrss_kb", 0.0) / 1024, 1)
    run.extra = {k: fields[k] for k in ("major_faults", "vcs", "ivcs", "fs_outputs")
                 if k in fields}
    other = (busy1 - busy0) - run.cpu_s - sum(run.server_cpu_s.values())
    run.other_cpu_s = round(max(0.0, other), 2)
    run.iowait_s = round(iowait1 - iowait0, 2)
    run.irq_s = round(irq1 - irq0, 2)
    run.kernel_threads_cpu_s = round(min(kernel_cpu, run.other_cpu_s), 2)
    run.noisy = is_noisy(run)
    if others:
        run.extra["other_processes_cpu_s"] = others
    if run.exit_code != 0 and run.ok:
        run.ok, run.note = False, f"exit code {run.exit_code}"
    if flush:
        t1 = time.perf_counter()
        os.sync()
        run.flush_s = round(time.perf_counter() - t1, 3)
    return run


def median(values: list[float]) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def summary(runs: list[Run]) -> dict[str, Any]:
    """Median, min and max of each figure over the successful runs."""
    good = [r for r in runs if r.ok]
    if not good:
        return {"n": 0, "failed": len(runs)}
    out: dict[str, Any] = {"n": len(good), "failed": len(runs) - len(good)}
    for name, values in (("wall_s", [r.wall_s for r in good]), ("cpu_s", [r.cpu_s for r in good]),
                         ("user_s", [r.user_s for r in good]), ("sys_s", [r.sys_s for r in good]),
                         ("rss_mib", [r.rss_mib for r in good]),
                         ("other_cpu_s", [r.other_cpu_s for r in good]),
                         ("irq_s", [r.irq_s for r in good]),
                         ("flush_s", [r.flush_s for r in good])):
        out[name] = {"median": round(median(values), 3), "min": round(min(values), 3),
                     "max": round(max(values), 3)}
    out["noisy_runs"] = sum(1 for r in good if r.noisy)
    names = {n for r in good for n in r.server_cpu_s}
    out["server_cpu_s"] = {n: round(median([r.server_cpu_s.get(n, 0.0) for r in good]), 3)
                           for n in sorted(names)}
    return out
