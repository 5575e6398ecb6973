"""The YAML configuration: parsed, expanded from the environment and validated in one place.

Every mistake raises :class:`ConfigError` with one line naming the file and the key; nothing is
written before the whole file has been accepted.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

from downloader.core.constants import (
    ALL_DATA_TYPES,
    DEFAULT_DAY_LAG_MINUTES,
    DEFAULT_DOWNLOAD_CONCURRENCY,
    DEFAULT_HOUR_LAG_MINUTES,
    DEFAULT_INITIAL_BACKOFF_SECONDS,
    DEFAULT_LINK_EXPIRE_MINUTES,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_BACKOFF_SECONDS,
    DEFAULT_NIGHT_HOUR_LAG_MINUTES,
    DEFAULT_NOT_READY_GRACE_MINUTES,
    DEFAULT_PARTITION_CONCURRENCY,
    DEFAULT_RATE_LIMIT_PER_SECOND,
    DEFAULT_RETENTION_DAYS,
    EXPORT_TYPES,
    MAX_LINK_EXPIRE_MINUTES,
    NIGHT_HOURS,
)
from downloader.core.partitions import Lags


class ConfigError(Exception):
    """A configuration mistake; str() is the one line shown to the user."""


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_AI = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


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
    ai: str
    data_types: tuple[str, ...]
    export_types: tuple[str, ...]


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


@dataclass(frozen=True)
class Config:
    path: Path
    api: ApiConfig
    projects: tuple[ProjectConfig, ...]
    lags: Lags
    storage: StorageConfig
    checkpoint: Path
    downloads: int = DEFAULT_DOWNLOAD_CONCURRENCY
    partitions: int = DEFAULT_PARTITION_CONCURRENCY
    verify: str = "gzip"
    retry: RetryConfig = field(default_factory=RetryConfig)
    log_format: str = "auto"
    log_level: str = "info"
    health_listen: str | None = None
    shutdown_grace_seconds: float = 10.0

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never be printed (the redacting log processor uses them)."""
        return tuple(s for s in (self.api.token,) if s)


class _Reader:
    """Walks one mapping of the YAML document, remembering the dotted key for messages."""

    def __init__(self, file: Path, data: Any, where: str) -> None:
        self.file = file
        self.where = where
        if not isinstance(data, dict):
            self.fail(where or "top level", "must be a mapping")
        self.data: dict[str, Any] = data
        self.used: set[str] = set()

    def fail(self, key: str, message: str) -> None:
        raise ConfigError(f"{self.file}: {key}: {message}")

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def raw(self, name: str, default: Any = None, required: bool = False) -> Any:
        self.used.add(name)
        if name not in self.data or self.data[name] is None:
            if required:
                self.fail(self.key(name), "is required")
            return default
        return _expand(self.data[name], self.file, self.key(name))

    def string(self, name: str, default: str | None = None, required: bool = False) -> Any:
        value = self.raw(name, default, required)
        if value is not None and (isinstance(value, bool) or not isinstance(value, str | int)):
            self.fail(self.key(name), "must be a string")
        if value is not None:
            value = str(value)
            if required and not value.strip():
                self.fail(self.key(name), "must not be empty")
        return value

    def number(self, name: str, default: float, minimum: float, maximum: float | None = None,
               integer: bool = False) -> Any:
        value = self.raw(name, default)
        if isinstance(value, str):
            try:
                value = float(value) if not integer else int(value)
            except ValueError:
                self.fail(self.key(name), f"must be a number, not {value!r}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(self.key(name), "must be a number")
        if not math.isfinite(value):
            self.fail(self.key(name), f"must be a finite number, not {value}")
        if integer and int(value) != value:
            self.fail(self.key(name), "must be a whole number")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum:g} and {maximum:g}" if maximum is not None else \
                f"at least {minimum:g}"
            self.fail(self.key(name), f"must be {bound}, not {value}")
        return int(value) if integer else float(value)

    def section(self, name: str) -> _Reader:
        self.used.add(name)
        value = self.data.get(name)
        return _Reader(self.file, {} if value is None else value, self.key(name))

    def done(self) -> None:
        unknown = sorted(set(map(str, self.data)) - self.used)
        if unknown:
            self.fail(self.key(unknown[0]), "unknown key")


def _expand(value: Any, file: Path, key: str) -> Any:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in strings from the environment."""
    if not isinstance(value, str):
        return value

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name)
        # Like the shell: ${VAR:-default} also applies when VAR is set but empty.
        if default is not None and not value:
            return default
        if value is not None:
            return value
        raise ConfigError(f"{file}: {key}: environment variable {name} is not set")

    return _ENV_REF.sub(sub, value)


def _string_list(reader: _Reader, name: str, allowed: tuple[str, ...],
                 all_word: bool) -> tuple[str, ...]:
    value = reader.raw(name, list(allowed) if name == "export_types" else None,
                       required=name == "data_types")
    key = reader.key(name)
    if all_word and value == "all":
        return allowed
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        reader.fail(key, "must be a non-empty list" + (" or the word all" if all_word else ""))
    out: list[str] = []
    for item in value:
        if item not in allowed:
            reader.fail(key, f"unknown value {item!r} (expected one of {', '.join(allowed)})")
        if item not in out:
            out.append(item)
    # Keep the vendor's order so a type list is a stable key.
    return tuple(t for t in allowed if t in out)


def _check_url(reader: _Reader, name: str, value: str, schemes: tuple[str, ...]) -> None:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not (parts.netloc or parts.scheme == "file"):
        reader.fail(reader.key(name), f"{value!r} is not a {'/'.join(schemes)} URL")


def _storage(reader: _Reader) -> StorageConfig:
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
        _check_url(reader, "endpoint_url", endpoint, ("http", "https"))
    return StorageConfig(url=url, endpoint_url=endpoint, region=region)


def _projects(reader: _Reader) -> tuple[ProjectConfig, ...]:
    reader.used.add("projects")
    items = reader.data.get("projects")
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{reader.file}: projects: must be a non-empty list of projects")
    out: list[ProjectConfig] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        proj = _Reader(reader.file, item, f"projects[{i}]")
        ai = proj.string("ai", required=True)
        if not _AI.match(ai):
            proj.fail(proj.key("ai"), f"{ai!r} is not a project ID (letters and digits)")
        if ai in seen:
            proj.fail(proj.key("ai"), f"project {ai!r} is listed twice")
        seen.add(ai)
        data_types = _string_list(proj, "data_types", ALL_DATA_TYPES, all_word=True)
        export_types = _string_list(proj, "export_types", EXPORT_TYPES, all_word=False)
        proj.done()
        out.append(ProjectConfig(ai, data_types, export_types))
    return tuple(out)


def parse_config(text: str, path: Path) -> Config:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    if data is None:
        raise ConfigError(f"{path}: the file is empty")
    top = _Reader(path, data, "")

    api_r = top.section("api")
    base_url = api_r.string("base_url", "https://www.growingio.com")
    _check_url(api_r, "base_url", base_url, ("http", "https"))
    api = ApiConfig(
        base_url=base_url.rstrip("/"),
        token=api_r.string("token", required=True),
        client_id=api_r.string("client_id") or None,
        rate_limit_per_second=api_r.number("rate_limit_per_second",
                                           DEFAULT_RATE_LIMIT_PER_SECOND, 0.01, 100),
        link_expire_minutes=api_r.number("link_expire_minutes", DEFAULT_LINK_EXPIRE_MINUTES, 1,
                                         MAX_LINK_EXPIRE_MINUTES, integer=True),
        timeout_seconds=api_r.number("timeout_seconds", 60.0, 1, 3600),
    )
    api_r.done()

    projects = _projects(top)

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
    top.done()
    return Config(
        path=path, api=api, projects=projects, lags=lags, storage=storage,
        checkpoint=checkpoint, downloads=downloads, partitions=partitions, verify=verify,
        retry=retry, log_format=log_format, log_level=log_level, health_listen=listen,
        shutdown_grace_seconds=grace,
    )


def load_config(path: str | Path) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config file: {getattr(exc, 'strerror', exc)}") \
            from None
    return parse_config(text, p)


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
        raise ConfigError(f"{what}: {base} is not writable ({exc.strerror})") from None
    if not is_dir and path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{what}: {path} is not writable")
