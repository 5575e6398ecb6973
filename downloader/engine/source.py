"""What a source is to the engine: the one protocol an export family implements.

Every export family has the same life cycle — ask, poll until ready, obtain files, stream each,
verify, commit atomically, seal with ``_SUCCESS``, record in the checkpoint — and the engine owns
all of it once. A source supplies only what differs: which partitions exist and when each is due
(pure, over ``now``), one call to its API that says where a job stands (:meth:`Source.ask`), where
a partition's files go, and what its manifest says about them.

A source labels answers (:class:`~downloader.core.policy.Decision`); it never sleeps, retries,
writes files or touches the checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from yarl import URL

from downloader.config.model import Config
from downloader.core.model import DoneSet, PartitionKey
from downloader.core.policy import Decision


@dataclass(frozen=True)
class Job:
    """What one ask serves: one or more partitions of one source that a single API answer
    covers (the raw export answers for every data type of a project's hour at once). ``slot``
    names the job among its source's jobs: at most one job per slot is queued or running.
    ``start`` is the beginning of the data's time span (queues run the oldest data first),
    ``due`` the moment it could first be asked for."""

    source: str
    slot: str
    keys: tuple[PartitionKey, ...]
    start: datetime
    due: datetime

    def __str__(self) -> str:
        return self.slot


@dataclass(frozen=True)
class FileSpec:
    """One file of a finished partition: fetched from ``url``, or given whole as ``data`` (a
    result that came inline in the API's answer). ``name`` is its final name in the partition
    folder; ``gzip`` marks a gzip file that ``download.verify: gzip`` checks; ``extra`` are more
    fields of its entry in the manifest. Links carry signatures: never logged.

    ``url`` is a ``str`` (aiohttp normalises its quoting) or a ``yarl.URL`` built with
    ``encoded=True`` by a source that has encoded it exactly as the server must see it: it is
    sent as is."""

    name: str
    url: str | URL | None = field(default=None, repr=False)
    data: bytes | None = field(default=None, repr=False)
    gzip: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)
    auth: bool = False  # needs the source's download_headers()
    ranged: bool = True  # the server honours Range: a broken body resumes where it broke


@dataclass(frozen=True)
class Answer:
    """Where a job stands after one ask. With ``Action.DOWNLOAD``: the files of every asked
    partition, and ``info`` the source wants kept for its manifest (strings, stored in the
    checkpoint). With ``Action.FAIL``: files given inline are kept for a person to look at
    (stored, never sealed)."""

    decision: Decision
    files: Mapping[PartitionKey, tuple[FileSpec, ...]] = field(default_factory=dict)
    info: Mapping[PartitionKey, Mapping[str, str]] = field(default_factory=dict)
    # The vendor's id of the export job this answer is about, for sources whose jobs must be
    # polled again after a restart (recorded in the checkpoint; None: nothing to remember).
    job_ref: str | None = None


@dataclass
class Plan:
    """The jobs a source has in a window, oldest first, and what it left out (as text for the
    log and the summary)."""

    jobs: list[Job] = field(default_factory=list)
    not_due: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    already_done: int = 0
    # Lines a person should see at the default log level (e.g. past snapshot days skipped).
    notes: list[str] = field(default_factory=list)
    # What the source could not even plan (e.g. a dashboard whose item list is gone), with the
    # reason: a backfill reports them as failed and exits 1.
    failed: dict[PartitionKey, str] = field(default_factory=dict)


@runtime_checkable
class Rebuildable(Protocol):
    """A source that can tell a partition from its ``_SUCCESS`` manifest, so that a lost or
    corrupt checkpoint can be rebuilt from the storage (``checkpoint rebuild``)."""

    def key_of(self, folder: str, manifest: Mapping[str, Any]
               ) -> tuple[PartitionKey, dict[str, str]] | None:
        """The key and the ``info`` the manifest was written from; None if not this
        source's."""
        ...


class Source(Protocol):
    name: str  # "raw", "reports", "cdp": the checkpoint's source column

    @property
    def root(self) -> str:
        """The first path element of every folder it writes ("ai=", "reports/", "cdp/")."""
        ...

    @property
    def poll_first_seconds(self) -> float:
        """Re-polling a job that is being built: the first delay..."""
        ...

    @property
    def poll_max_seconds(self) -> float:
        """... and the cap, in seconds."""
        ...

    def plan(self, first_hour: datetime, last_hour: datetime, now: datetime,
             done: DoneSet) -> Plan:
        """Jobs for every due partition in the Beijing hours ``first_hour..last_hour`` that is
        not in ``done``. Pure: no I/O, ``now`` is given."""
        ...

    def next_due(self, now: datetime) -> datetime | None:
        """The next moment after ``now`` at which a partition becomes due, if the source
        knows one; the daemon sleeps until the earliest of its sources'."""
        ...

    def folder(self, key: PartitionKey) -> str:
        """The partition's folder below the storage root (Hive style, ``a=1/b=2``)."""
        ...

    def manifest(self, key: PartitionKey, info: Mapping[str, str]) -> dict[str, Any]:
        """The source's fields of the ``_SUCCESS`` manifest; the engine adds ``fetched_at``,
        ``parts``, ``total_bytes`` and ``written_by``."""
        ...

    def reconfigure(self, cfg: Config) -> None:
        """A reloaded configuration (SIGHUP): items, lags and retries may have changed; the
        API client's settings (base URL, credentials) stay until a restart."""
        ...

    async def ask(self, job: Job, keys: Sequence[PartitionKey], job_ref: str | None) -> Answer:
        """One call to the source's API about ``keys`` (a subset of ``job.keys``: those not
        done yet): submit a job, or poll the one ``job_ref`` names (recorded from an earlier
        answer, maybe by an earlier process). Never raises for HTTP or network trouble: the
        answer's decision says what happened."""
        ...

    async def download_headers(self, stale: bool) -> Mapping[str, str]:
        """Headers a file download needs (``FileSpec.auth``); ``stale``: the last ones were
        refused (401), get new ones."""
        ...


@runtime_checkable
class Owned(Protocol):
    """An optional capability for sharding (``sharding:``): the *ownership unit* of a key, the
    string whose hash picks the instance that downloads it. Without it a key's unit is its
    ``item``. Every key of one :class:`Job` must have the same unit (one API call is made by
    one instance): the raw source, whose call serves every data type of a project, names the
    project."""

    def owner(self, key: PartitionKey) -> str:
        ...


@runtime_checkable
class Preparing(Protocol):
    """An optional capability: asynchronous set-up the runner awaits before the first plan, for
    a source whose items depend on API calls (the statistics source expands ``dashboards: all``
    through list calls). The engine retries it like any call; the source keeps what it already
    learned, so another try repeats only what failed."""

    async def prepare(self) -> Decision | None:
        """None when ready (items that cannot be known go to :attr:`Plan.failed`); otherwise
        the decision about the call that failed: RETRY (back off, call again) or STOP."""
        ...
