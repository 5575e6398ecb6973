"""The simulator's configuration and its injected failures (the knobs of `POST /_sim/faults`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path


@dataclass
class Faults:
    """Injected failures. Counters mean "the next N matching requests" and count down."""

    api_500: int = 0
    api_429: int = 0
    retry_after_seconds: float = 1.0
    api_error: int = 0
    download_500: int = 0
    drop: int = 0
    drop_after_bytes: int = 65536
    corrupt: int = 0
    throttle_bytes_per_second: int | None = None
    enforce_rate_limit: bool = False


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
    link_ttl_seconds: float | None = None
    rate_limit_per_second: int = 2
    seed: int = 0
    cache_dir: Path | None = None
    faults: Faults = field(default_factory=Faults)
    clock: Callable[[], datetime] | None = None
