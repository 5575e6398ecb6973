"""Reading a configuration file: parsed, expanded from the environment and validated in one
place.

Every mistake raises :class:`ConfigError` with one line naming the file and the key; nothing is
written before the whole file has been accepted.
"""

from __future__ import annotations

import os
import socket
import tempfile
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from downloader.config import exports
from downloader.config.model import ApiConfig, Config, ConfigError, RetryConfig, StorageConfig
from downloader.config.reader import Reader, check_url
from downloader.core.constants import (
    DEFAULT_BACKFILL_RUNNING_WAIT_MINUTES,
    DEFAULT_DAY_LAG_MINUTES,
    DEFAULT_DOWNLOAD_CONCURRENCY,
    DEFAULT_HOUR_LAG_MINUTES,
    DEFAULT_INITIAL_BACKOFF_SECONDS,
    DEFAULT_LINK_EXPIRE_MINUTES,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_BACKOFF_SECONDS,
    DEFAULT_MAX_JOB_ATTEMPTS,
    DEFAULT_NIGHT_HOUR_LAG_MINUTES,
    DEFAULT_NOT_READY_GRACE_MINUTES,
    DEFAULT_PARTITION_CONCURRENCY,
    DEFAULT_RATE_LIMIT_PER_SECOND,
    DEFAULT_READ_TIMEOUT_SECONDS,
    DEFAULT_REPORT_LAG_MINUTES,
    DEFAULT_RETENTION_DAYS,
    DEFAULT_RUNNING_POLL_MAX_SECONDS,
    MAX_LINK_EXPIRE_MINUTES,
    NIGHT_HOURS,
)
from downloader.core.partitions import Lags
from downloader.core.sharding import INDEX_ENV, Shard, index_from_environment

# The most instances one config can be split over (a sanity bound, not a design limit).
MAX_SHARDS = 1024


def _storage(reader: Reader) -> StorageConfig:
    url = reader.string("url", required=True)
    endpoint = reader.string("endpoint_url")
    region = reader.string("region")
    reader.done()
    if "://" not in url:
        url = Path(url).expanduser().absolute().as_uri()
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            reader.fail(reader.key("url"), f"{url!r} must be file:///absolute/path")
    elif parts.scheme == "s3":
        if not parts.netloc:
            reader.fail(reader.key("url"), f"{url!r} must name a bucket: s3://bucket/prefix")
    else:
        reader.fail(reader.key("url"), f"{url!r}: scheme must be file:// or s3://")
    if endpoint is not None:
        check_url(reader, "endpoint_url", endpoint, ("http", "https"))
    return StorageConfig(url=url, endpoint_url=endpoint, region=region)


def _api(top: Reader, required: bool) -> ApiConfig | None:
    present = top.data.get("api") is not None
    api_r = top.section("api")
    if not present and not required:
        return None
    base_url = api_r.string("base_url", "https://www.growingio.com")
    check_url(api_r, "base_url", base_url, ("http", "https"))
    api = ApiConfig(
        base_url=base_url.rstrip("/"),
        token=api_r.secret("token", required=True),
        client_id=api_r.secret("client_id") or None,
        rate_limit_per_second=api_r.number("rate_limit_per_second",
                                           DEFAULT_RATE_LIMIT_PER_SECOND, 0.01, 100),
        link_expire_minutes=api_r.number("link_expire_minutes", DEFAULT_LINK_EXPIRE_MINUTES, 1,
                                         MAX_LINK_EXPIRE_MINUTES, integer=True),
        timeout_seconds=api_r.number("timeout_seconds", 60.0, 1, 3600),
    )
    api_r.done()
    return api


def _sharding(top: Reader, override: tuple[int, int] | None) -> Shard:
    """``sharding: {count, index, rate_share}``. ``override`` (index, count) comes from a
    command line's ``--shard I/N`` and wins over the file and the environment."""
    sh = top.section("sharding")
    count = sh.number("count", 1, 1, MAX_SHARDS, integer=True)
    given = sh.raw("index")
    share = sh.raw("rate_share")
    if share is not None:
        share = sh.number("rate_share", 1.0, 0.0001, 1.0)
    sh.done()
    if override is not None:
        index, count = override
    elif given is not None:
        index = sh.number("index", 0, 0, MAX_SHARDS, integer=True)
    elif count == 1:
        index = 0
    else:
        found = index_from_environment(os.environ, socket.gethostname())
        if found is None:
            sh.fail(sh.key("index"), f"not given, and neither {INDEX_ENV} (a Kubernetes "
                    "Indexed Job) nor a host name ending in -<n> (a StatefulSet pod) gives "
                    f"one; set it to 0..{count - 1}")
        index = int(found or 0)
    if index >= count:
        sh.fail(sh.key("index"), f"{index} is not below sharding.count ({count})")
    return Shard(count=count, index=index,
                 rate_share=float(share) if share is not None else 1.0 / count)


def parse_config(text: str, path: Path, shard: tuple[int, int] | None = None) -> Config:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    if data is None:
        raise ConfigError(f"{path}: the file is empty")
    top = Reader(path, data, "")
    if not any(top.data.get(k) is not None for k in ("projects", "reports", "cdp")):
        raise ConfigError(f"{path}: nothing to download: give projects: (raw exports), "
                          "reports: (statistics) or cdp: (CDP exports)")
    projects = exports.projects(top) if top.data.get("projects") is not None else ()
    reports = exports.reports(top) if top.data.get("reports") is not None else ()
    cdp = exports.cdp(top) if top.data.get("cdp") is not None else None
    # The api: block serves raw exports and statistics; a CDP-only config needs none.
    api = _api(top, required=bool(projects or reports))

    sch = top.section("schedule")
    night_hours = sch.raw("night_hours", sorted(NIGHT_HOURS))
    if not isinstance(night_hours, list) or not all(
            isinstance(h, int) and 0 <= h <= 23 for h in night_hours):
        sch.fail(sch.key("night_hours"), "must be a list of hours 0-23")
    lags = Lags(
        hour=timedelta(minutes=sch.number("hour_lag_minutes", DEFAULT_HOUR_LAG_MINUTES, 0, 1440)),
        night_hour=timedelta(minutes=sch.number(
            "night_hour_lag_minutes", DEFAULT_NIGHT_HOUR_LAG_MINUTES, 0, 1440)),
        night_hours=frozenset(night_hours),
        day=timedelta(minutes=sch.number("day_lag_minutes", DEFAULT_DAY_LAG_MINUTES, 0, 2880)),
        retention=timedelta(days=sch.number("retention_days", DEFAULT_RETENTION_DAYS, 1, 365,
                                            integer=True)),
    )
    report_lag = sch.number("report_lag_minutes", DEFAULT_REPORT_LAG_MINUTES, 0, 1_000_000,
                            integer=True)
    running_poll_max = sch.number("running_poll_max_seconds", DEFAULT_RUNNING_POLL_MAX_SECONDS,
                                  0.01, 86400)
    running_wait = sch.number("backfill_running_wait_minutes",
                              DEFAULT_BACKFILL_RUNNING_WAIT_MINUTES, 0, 100000)
    sch.done()

    storage = _storage(top.section("storage"))

    checkpoint_raw = top.string("checkpoint", required=True)
    checkpoint = Path(checkpoint_raw).expanduser().absolute()

    conc = top.section("concurrency")
    downloads = conc.number("downloads", DEFAULT_DOWNLOAD_CONCURRENCY, 1, 256, integer=True)
    partitions = conc.number("partitions", DEFAULT_PARTITION_CONCURRENCY, 1, 256, integer=True)
    conc.done()

    dl = top.section("download")
    verify = dl.string("verify", "gzip")
    if verify not in ("gzip", "size"):
        dl.fail(dl.key("verify"), f"must be gzip or size, not {verify!r}")
    read_timeout = dl.number("read_timeout_seconds", DEFAULT_READ_TIMEOUT_SECONDS, 1, 3600)
    dl.done()

    rt = top.section("retry")
    retry = RetryConfig(
        initial_backoff_seconds=rt.number("initial_backoff_seconds",
                                          DEFAULT_INITIAL_BACKOFF_SECONDS, 0.01, 3600),
        max_backoff_seconds=rt.number("max_backoff_seconds", DEFAULT_MAX_BACKOFF_SECONDS,
                                      0.01, 86400),
        max_attempts=rt.number("max_attempts", DEFAULT_MAX_ATTEMPTS, 1, 1000, integer=True),
        not_ready_grace_minutes=rt.number("not_ready_grace_minutes",
                                          DEFAULT_NOT_READY_GRACE_MINUTES, 0, 100000),
        max_job_attempts=rt.number("max_job_attempts", DEFAULT_MAX_JOB_ATTEMPTS, 1, 100,
                                   integer=True),
    )
    rt.done()

    log = top.section("log")
    log_format = log.string("format", "auto")
    if log_format not in ("auto", "json", "console"):
        log.fail(log.key("format"), f"must be auto, json or console, not {log_format!r}")
    log_level = log.string("level", "info").lower()
    if log_level not in ("debug", "info", "warning", "error"):
        log.fail(log.key("level"), f"must be debug, info, warning or error, not {log_level!r}")
    log.done()

    health = top.section("health")
    listen = health.string("listen")
    if listen is not None:
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            health.fail(health.key("listen"), f"{listen!r} must be host:port")
    health.done()

    grace = top.number("shutdown_grace_seconds", 10.0, 0, 3600)
    sharding = _sharding(top, shard)
    top.done()
    return Config(
        path=path, api=api, projects=projects, lags=lags, storage=storage,
        checkpoint=checkpoint, reports=reports, cdp=cdp, report_lag_minutes=report_lag,
        read_timeout_seconds=read_timeout, running_poll_max_seconds=running_poll_max,
        backfill_running_wait_minutes=running_wait,
        downloads=downloads, partitions=partitions, verify=verify,
        retry=retry, log_format=log_format, log_level=log_level, health_listen=listen,
        shutdown_grace_seconds=grace, sharding=sharding,
    )


def load_config(path: str | Path, shard: tuple[int, int] | None = None) -> Config:
    """The validated config; ``shard`` (index, count) overrides ``sharding:``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config file: {getattr(exc, 'strerror', exc)}") \
            from None
    return parse_config(text, p, shard)


def first_existing_parent(path: Path) -> Path:
    cur = path
    while not cur.exists() and cur != cur.parent:
        cur = cur.parent
    return cur


def check_writable(path: Path, what: str, is_dir: bool) -> None:
    """Fail with one line if ``path`` (or the folder it would be made in) cannot be written."""
    target = path if is_dir else path.parent
    if target.exists():
        if not target.is_dir():
            raise ConfigError(f"{what}: {target} is not a folder")
        base = target
    else:
        base = first_existing_parent(target)
        if not base.is_dir():
            raise ConfigError(f"{what}: {base} is not a folder, cannot create {target}")
    # A real probe rather than os.access: root passes access() on read-only mounts and
    # pseudo file systems where creating a file still fails.
    try:
        fd, probe = tempfile.mkstemp(prefix=".gio-write-probe-", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"{what}: cannot create files in {base} ({exc.strerror})") from None
    if not is_dir and path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{what}: {path} is not writable")
