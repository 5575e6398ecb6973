"""Settings and fault knobs of the statistics simulator."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from downloader.sim.stats.data import Dashboard


@dataclass
class StatsFaults:
    """Injected failures. Counters mean "the next N matching requests/jobs" and count down."""

    api_500: int = 0
    api_429: int = 0
    retry_after_seconds: float = 1.0
    failed: int = 0  # the next N new jobs end `failed` instead of with a result
    unusable_result: int = 0  # the next N windowed results are an HTML page (a proxy's), 200
    download_500: int = 0
    drop: int = 0  # the next N link downloads are cut after `drop_after_bytes` body bytes
    drop_after_bytes: int = 512
    enforce_rate_limit: bool = False  # 429 a call beyond the limit, overall or per item


@dataclass
class StatsSimConfig:
    token: str = "sim-token"
    client_id: str = "sim-client"
    seed: int = 0
    doing_polls: int = 1  # `doing` answers after the first one, before the result
    doing_polls_jitter: int = 0  # plus 0..jitter more, seeded per job
    reuse_done_jobs: bool = False  # False: a GET after the result starts a new job
    link_count: int = 2  # download links of a user list
    user_rows_per_part: int = 40
    link_ttl_seconds: float | None = None  # None: the `expire` asked for
    rate_limit_per_second: int = 2
    known_ids: frozenset[str] | None = None  # None: any HashId is known
    missing_ids: frozenset[str] = frozenset()  # 404, also for project uids
    empty_items: frozenset[str] = frozenset()  # windowed items whose `data` is empty
    dashboards: dict[str, tuple[Dashboard, ...]] = field(default_factory=dict)  # per uid
    segmentations: dict[str, tuple[str, ...]] = field(default_factory=dict)  # per uid
    report_lag_minutes: int = 360  # asks before D+1 00:00 + lag are recorded as `early`
    faults: StatsFaults = field(default_factory=StatsFaults)
    clock: Callable[[], datetime] | None = None
