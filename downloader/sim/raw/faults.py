"""The simulator's configuration and its injected failures (the knobs of `POST /_sim/faults`).

Each knob is described, with a curl example, in the package docstring (`downloader/sim`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

# Allowed values of the knobs that pick a shape (see the package docstring).
LINK_SHAPES = ("string", "object")
GARBAGE_KINDS = ("html", "truncated", "no_status")
_CHOICES = {"links_wrong_shape_kind": LINK_SHAPES, "api_garbage_kind": GARBAGE_KINDS}


@dataclass
class Faults:
    """Injected failures. Counters mean "the next N matching requests" and count down."""

    # /v2/insights answers
    api_500: int = 0
    api_429: int = 0
    retry_after_seconds: float = 1.0
    api_error: int = 0
    api_garbage: int = 0
    api_garbage_kind: str = "html"
    finished_without_links: int = 0
    links_wrong_shape: int = 0
    links_wrong_shape_kind: str = "string"
    type_missing: int = 0
    enforce_rate_limit: bool = False
    # downloads
    download_500: int = 0
    drop: int = 0
    drop_after_bytes: int = 65536
    corrupt: int = 0
    stall: int = 0
    stall_after_bytes: int = 1024
    stall_seconds: float = 30.0
    huge_header: int = 0
    redirect_loop: int = 0
    gzip_transfer: bool = False
    throttle_bytes_per_second: int | None = None


def check_changes(changes: Any) -> str | None:
    """Why a `POST /_sim/faults` body cannot be applied, or None when it can."""
    types = {f.name: f.type for f in fields(Faults)}
    if not isinstance(changes, dict) or not set(changes) <= set(types):
        return f"expected an object with keys from {sorted(types)}"
    for name, value in changes.items():
        if name in _CHOICES and value not in _CHOICES[name]:
            return f"{name} must be one of {list(_CHOICES[name])}"
        if types[name] == "int" and (type(value) is not int or value < 0):
            return f"{name} must be a non-negative integer"
    return None


@dataclass
class SimConfig:
    token: str | None = "sim-token"
    part_size: int = 256 * 1024
    parts_per_type: int = 2
    empty_types: tuple[str, ...] = ()
    running_polls: int = 1
    hour_lag_minutes: int = 30
    night_hour_lag_minutes: int = 60
    day_lag_minutes: int = 240
    retention_days: int = 15
    # Link lifetime in real seconds; None: the request's `expire` minutes (also real seconds).
    link_ttl_seconds: float | None = None
    rate_limit_per_second: int = 2
    seed: int = 0
    cache_dir: Path | None = None
    faults: Faults = field(default_factory=Faults)
    # The export clock (due times, retention, requestTime); may run fast in rehearsals.
    clock: Callable[[], datetime] | None = None
    # The clock link lifetimes are measured on: real seconds, whatever `clock` does.
    monotonic: Callable[[], float] = time.monotonic
