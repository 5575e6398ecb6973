"""The configuration as frozen dataclasses: what every layer reads, parsed once by ``load``."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from downloader.core.constants import (
    DEFAULT_BACKFILL_RUNNING_WAIT_MINUTES,
    DEFAULT_DOWNLOAD_CONCURRENCY,
    DEFAULT_INITIAL_BACKOFF_SECONDS,
    DEFAULT_LINK_EXPIRE_MINUTES,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_BACKOFF_SECONDS,
    DEFAULT_MAX_JOB_ATTEMPTS,
    DEFAULT_NOT_READY_GRACE_MINUTES,
    DEFAULT_PARTITION_CONCURRENCY,
    DEFAULT_RATE_LIMIT_PER_SECOND,
    DEFAULT_READ_TIMEOUT_SECONDS,
    DEFAULT_REPORT_LAG_MINUTES,
    DEFAULT_RUNNING_POLL_MAX_SECONDS,
)
from downloader.core.partitions import Lags
from downloader.core.sharding import Shard


class ConfigError(Exception):
    """A configuration mistake; str() is the one line shown to the user."""


@dataclass(frozen=True)
class ApiConfig:
    base_url: str
    token: str = field(repr=False)
    client_id: str | None = None
    rate_limit_per_second: float = DEFAULT_RATE_LIMIT_PER_SECOND
    link_expire_minutes: int = DEFAULT_LINK_EXPIRE_MINUTES
    timeout_seconds: float = 60.0


@dataclass(frozen=True)
class ProjectConfig:
    """Raw exports of one project (``projects:``)."""

    ai: str
    data_types: tuple[str, ...]
    export_types: tuple[str, ...]


@dataclass(frozen=True)
class ReportConfig:
    """Statistics exports of one project (one entry of ``reports:``). ``dashboards`` and
    ``segments`` hold ids, or are None for ``all`` (expanded through the v1 lists)."""

    project_uid: str
    charts: tuple[str, ...] = ()
    funnels: tuple[str, ...] = ()
    retentions: tuple[str, ...] = ()
    frequencies: tuple[str, ...] = ()
    dashboards: tuple[str, ...] | None = ()
    segments: tuple[str, ...] | None = ()
    tags: tuple[str, ...] = ()
    user_variables: tuple[str, ...] = ()
    rules: bool = False
    interval: str = "day"


@dataclass(frozen=True)
class CdpExport:
    """One export job of the CDP platform (one entry of ``cdp.exports``). ``kind`` is
    segment_users, tag_users or analysis; ``ident`` is the id that names its folder (segment_id,
    tag_id or tag_key, or the analysis id)."""

    kind: str
    ident: str
    project_id: str | None = None
    segment_id: str | None = None
    tag_id: str | None = None
    tag_key: str | None = None
    analysis_type: str | None = None
    tags: tuple[str, ...] = ()
    properties: tuple[str, ...] = ()
    detail: bool | None = None


@dataclass(frozen=True)
class CdpConfig:
    base_url: str
    api_key: str = field(repr=False)
    charset: str | None = None
    exports: tuple[CdpExport, ...] = ()


@dataclass(frozen=True)
class StorageConfig:
    url: str
    endpoint_url: str | None = None
    region: str | None = None

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def local_root(self) -> Path:
        return Path(unquote(urlsplit(self.url).path))


@dataclass(frozen=True)
class RetryConfig:
    initial_backoff_seconds: float = DEFAULT_INITIAL_BACKOFF_SECONDS
    max_backoff_seconds: float = DEFAULT_MAX_BACKOFF_SECONDS
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    not_ready_grace_minutes: float = DEFAULT_NOT_READY_GRACE_MINUTES
    max_job_attempts: int = DEFAULT_MAX_JOB_ATTEMPTS


@dataclass(frozen=True)
class Config:
    path: Path
    api: ApiConfig | None
    projects: tuple[ProjectConfig, ...]
    lags: Lags
    storage: StorageConfig
    checkpoint: Path
    reports: tuple[ReportConfig, ...] = ()
    cdp: CdpConfig | None = None
    report_lag_minutes: int = DEFAULT_REPORT_LAG_MINUTES
    running_poll_max_seconds: float = DEFAULT_RUNNING_POLL_MAX_SECONDS
    backfill_running_wait_minutes: float = DEFAULT_BACKFILL_RUNNING_WAIT_MINUTES
    downloads: int = DEFAULT_DOWNLOAD_CONCURRENCY
    partitions: int = DEFAULT_PARTITION_CONCURRENCY
    verify: str = "gzip"
    read_timeout_seconds: float = DEFAULT_READ_TIMEOUT_SECONDS
    retry: RetryConfig = field(default_factory=RetryConfig)
    log_format: str = "auto"
    log_level: str = "info"
    health_listen: str | None = None
    shutdown_grace_seconds: float = 10.0
    sharding: Shard = field(default_factory=Shard)

    @property
    def rate_limit_per_second(self) -> float:
        """The token's budget per API host, as configured (shared by every shard)."""
        return self.api.rate_limit_per_second if self.api else DEFAULT_RATE_LIMIT_PER_SECOND

    @property
    def instance_rate_per_second(self) -> float:
        """What this instance may spend of it: the budget times ``sharding.rate_share``."""
        return self.rate_limit_per_second * self.sharding.rate_share

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never be printed (the redacting log processor uses them)."""
        values = [self.api.token if self.api else ""]
        if self.cdp is not None and self.cdp.api_key:
            values += [self.cdp.api_key, base64.b64encode(self.cdp.api_key.encode()).decode()]
        return tuple(s for s in values if s)
