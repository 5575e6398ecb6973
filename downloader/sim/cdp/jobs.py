"""Export jobs of the CDP simulator: ids, stage progression, result uris and file bytes.

Modelled on the vendor's examples (API §6.4, §6.5, seed 004): a mutation answers a long
base64-like id (`base64("TagUserExportJobDto:" + short id)`), while `jobResult` answers the
short 8-character id; segment and tag results live under `/jobs/results/<job name>/`, analysis
results under `/jobs-results/downloads/`. File bytes are a pure function of (seed, uri, charset),
so tests can compare stored files byte for byte.
"""

from __future__ import annotations

import base64
import codecs
import csv
import hashlib
import io
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from downloader.core.constants import BEIJING
from downloader.sim.cdp.state import CdpSimConfig

__all__ = [
    "STAGES",
    "ExpectedFile",
    "JobBook",
    "SimJob",
    "UnknownJob",
    "file_bytes",
    "stage_at",
]

STAGES = ("NONE", "READY", "RUNNING", "DATA_READY")
FINISH, ERROR = "FINISH", "ERROR"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Messages in the vendor's language; the text is ours (the vendor documents none).
SUBMIT_ERROR = {"code": "EXPORT_FAILED", "message": "导出任务提交失败：分群尚未计算完成"}
JOB_ERROR_MESSAGE = "导出任务执行失败"
# Kinds of job: the prefix of their names (API §6.4) and the type name inside their long id.
# The vendor shows no name for analysis jobs; "DEA" is ours, and their long id holds the
# analysis type and a hex digest instead (seed 004: base64("CHARTS:bcdbc65b...")).
_KIND_NAME = {
    "tag": ("DET", "TagUserExportJobDto"),
    "segment": ("DES", "SegmentUserExportJobDto"),
    "analysis": ("DEA", ""),
}
# Columns of the generated user lists, and values to draw from (non-ASCII on purpose).
_HEADER = ("用户ID", "姓名", "城市", "消费金额", "备注")
_NAMES = ("张伟", "王芳", "李娜", "刘洋", "欧阳娜娜", "O'Brien")
_CITIES = ("北京", "上海", "广州", "深圳", "杭州")
_NOTES = ("", "VIP", 'says "hi"', "a,b", "第一行\n第二行")


class UnknownJob(LookupError):
    """No job has this id (the short `JobResult.id` is not one either)."""


def stage_at(polls: int, polls_to_finish: int) -> str:
    """The stage a job shows after `polls` jobResult calls (0: the mutation's answer)."""
    if polls >= polls_to_finish:
        return FINISH
    return STAGES[min(len(STAGES) - 1, polls * len(STAGES) // polls_to_finish)]


@dataclass(frozen=True)
class ExpectedFile:
    uri: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class SimJob:
    job_id: str
    short_id: str
    name: str
    kind: str  # "tag", "segment" or "analysis"
    charset: str | None
    ends_in_error: bool
    polls: int = 0
    error: dict[str, str] | None = None
    uris: tuple[str, ...] = ()

    @property
    def encoding(self) -> str:
        return self.charset or "UTF-8"


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def file_bytes(seed: int, uri: str, encoding: str, rows: int) -> bytes:
    """The content of the file at `uri`: a CSV user list, encoded as asked.

    Characters the charset lacks become its replacement character, as a lossy export would.
    """
    rng = _rng(seed, uri)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(_HEADER)
    for n in range(rows):
        writer.writerow(
            (
                f"u{rng.randrange(10**9):09d}",
                rng.choice(_NAMES),
                rng.choice(_CITIES),
                f"{rng.randrange(100000) / 100:.2f}",
                _NOTES[n % len(_NOTES)],
            )
        )
    return out.getvalue().encode(encoding, errors="replace")


@dataclass
class JobBook:
    """Every job submitted, and every result file a finished job made available."""

    config: CdpSimConfig
    now: Callable[[], datetime]
    take: Callable[[str], bool]  # consume one count of a fault counter; True if it fired
    _jobs: dict[str, SimJob] = field(default_factory=dict, repr=False)
    _files: dict[str, str] = field(default_factory=dict, repr=False)  # uri -> encoding
    _flawed: set[str] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _short_id(self, n: int) -> str:
        rng = _rng(self.config.seed, "job", n)
        return "".join(rng.choice(_BASE62) for _ in range(8))

    def submit(self, kind: str, charset: str | None, analysis_type: str = "") -> SimJob:
        """A new job; its first stage answers the mutation. LookupError: unknown charset."""
        if charset is not None:
            codecs.lookup(charset)
        fail_now = self.take("submit_error")
        fail_later = not fail_now and self.take("job_error")
        with self._lock:
            n = len(self._jobs) + 1
            short = self._short_id(n)
            stamp = self.now().astimezone(BEIJING).strftime("%Y%m%d%H%M")
            prefix, dto = _KIND_NAME[kind]
            name = f"{prefix}-{stamp}-{self.config.seed:04d}{n:010d}"
            if kind == "analysis":
                payload = f"{analysis_type}:{hashlib.sha256(name.encode()).hexdigest()[:32]}"
            else:
                payload = f"{dto}:{short}"
            job_id = base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")
            job = SimJob(job_id, short, name, kind, charset, fail_later)
            if fail_now:
                job.error = dict(SUBMIT_ERROR)
            self._jobs[job_id] = job
            self._advance(job, polled=False)
            return job

    def stage(self, job: SimJob) -> str:
        if job.error is not None:
            return ERROR
        return FINISH if job.uris else stage_at(job.polls, self.config.polls_to_finish)

    def poll(self, job_id: str) -> SimJob:
        """One jobResult call: the job moves one step on. UnknownJob for an unknown id."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise UnknownJob(f"job {job_id!r} not found")
            self._advance(job, polled=True)
            return job

    def _advance(self, job: SimJob, *, polled: bool) -> None:
        if job.error is not None or job.uris:
            return
        if polled:
            job.polls += 1
        if stage_at(job.polls, self.config.polls_to_finish) != FINISH:
            return
        if job.ends_in_error:
            job.error = {"code": "JOB_FAILED", "message": JOB_ERROR_MESSAGE}
            return
        job.uris = self._finish(job)

    def _finish(self, job: SimJob) -> tuple[str, ...]:
        cfg = self.config
        encoding = cfg.serve_charset or job.encoding
        if job.kind == "analysis":
            folder, prefix = "/jobs-results/downloads", f"{job.short_id}-"
        else:
            folder, prefix = f"/jobs/results/{job.name}", ""
        uris = []
        for i in range(cfg.uris_per_job):
            uri = f"{folder}/{prefix}{self._file_stem(job, i)}"
            if cfg.file_ext:
                uri += f".{cfg.file_ext}"
            self._files[uri] = encoding
            uris.append(uri)
        if uris and self.take("relative_uri"):
            uris[0] = uris[0].lstrip("/")
            self._flawed.add(uris[0])
        elif uris and self.take("dotdot_uri"):
            uris[0] = f"{folder}/../../{job.short_id}/secret.csv"
            self._flawed.add(uris[0])
        return tuple(uris)

    def _file_stem(self, job: SimJob, index: int) -> str:
        if self.config.special_names:
            # Every character a careless encoder gets wrong: space & # + % and non-ASCII, and
            # a literal "%20" that a client guessing "already encoded" would leave as it is.
            return f"下载用户列表 {index} 50%20off 100%&a+b#c=d"
        rng = _rng(self.config.seed, job.job_id, index)
        hexes = f"{rng.getrandbits(128):032x}"
        return f"{hexes[:8]}-{hexes[8:12]}-{hexes[12:16]}-{hexes[16:20]}-{hexes[20:]}"

    # -- files ---------------------------------------------------------------------------------

    def is_flawed(self, uri: str) -> bool:
        with self._lock:
            return uri in self._flawed

    def has_file(self, uri: str) -> bool:
        with self._lock:
            return uri in self._files

    def content(self, uri: str) -> bytes:
        """The bytes served for `uri`; KeyError when no finished job made that file."""
        with self._lock:
            encoding = self._files[uri]
        return file_bytes(self.config.seed, uri, encoding, self.config.rows_per_file)

    def job(self, job_id: str) -> SimJob:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise UnknownJob(f"job {job_id!r} not found")
        return job

    def expected_files(self, job_id: str) -> list[ExpectedFile]:
        """The downloadable files of a finished job, in uri order (flawed uris left out)."""
        job = self.job(job_id)
        return [ExpectedFile(u, self.content(u)) for u in job.uris if self.has_file(u)]

    @property
    def submitted(self) -> int:
        with self._lock:
            return len(self._jobs)
