"""The CDP simulator's settings, injected faults and the record of every call it answered.

Stats name tokens by their serial number (1 for the first issued), never by their text, so
nothing secret reaches a test log or `GET /_sim/stats`.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from downloader.sim.common import max_in_window

__all__ = [
    "CLIENT_FAULTS",
    "CdpCall",
    "CdpFaults",
    "CdpSimConfig",
    "CdpStats",
    "Outcome",
]


@dataclass
class CdpFaults:
    """Injected failures. Counters mean "the next N matching requests (or jobs)" and count down."""

    token_500: int = 0
    graphql_500: int = 0
    # The next N /graphql calls answer 200 with a GraphQL `errors` list and no data.
    graphql_errors: int = 0
    # The next N mutations answer stage ERROR at once, with an `error.message`.
    submit_error: int = 0
    # The next N submitted jobs end in ERROR instead of FINISH.
    job_error: int = 0
    # The next N finished jobs list, as their first uri, a relative one / one with a '..'.
    relative_uri: int = 0
    dotdot_uri: int = 0
    download_500: int = 0
    # The next N downloads end the connection after `drop_after_bytes` (always mid-body).
    drop: int = 0
    drop_after_bytes: int = 1024


@dataclass
class CdpSimConfig:
    # The deployment's system API key, the only valid `client_secret` (API §6.2).
    api_key: str = field(default="sim-api-key", repr=False)
    # A token serves this many /graphql and /download requests, then answers 401 (None: no cap).
    token_max_uses: int | None = None
    # A token dies this many seconds (by the simulator's clock) after it was issued.
    token_ttl_seconds: float | None = None
    # jobResult polls until FINISH: NONE → READY → RUNNING → DATA_READY spread over the polls
    # before. 0: the mutation already answers FINISH (as the vendor's analysis example does).
    polls_to_finish: int = 4
    uris_per_job: int = 1
    # File names holding a space, `%`, `&`, `+`, `#` and Chinese characters.
    special_names: bool = False
    # Extension of result file names; "" gives names without one.
    file_ext: str = "csv"
    rows_per_file: int = 20
    # Encode every result file with this charset (e.g. "GBK") whatever the job asked for;
    # None: the job's own `charset`, UTF-8 when it sent none.
    serve_charset: str | None = None
    seed: int = 0
    faults: CdpFaults = field(default_factory=CdpFaults)
    clock: Callable[[], datetime] | None = None


class Outcome:
    """What a call came to, as recorded in the stats."""

    OK = "ok"
    FAULT_500 = "fault_500"
    FAULT_ERRORS = "fault_errors"
    BAD_REQUEST = "bad_request"
    WRONG_API_KEY = "wrong_api_key"
    NO_TOKEN = "no_token"  # no Authorization header, or not of the form `Token <t>`
    UNKNOWN_TOKEN = "unknown_token"
    DEAD_TOKEN = "dead_token"  # used up or past its lifetime: the client should get a new one
    INVALID_DOCUMENT = "invalid_document"  # syntax or schema validation errors
    INVALID_VARIABLES = "invalid_variables"  # variable values not of their declared types
    UNKNOWN_JOB = "unknown_job"
    GRAPHQL_ERROR = "graphql_error"  # another error while executing (e.g. unknown charset)
    NOT_FOUND = "not_found"
    ENCODED_TWICE = "encoded_twice"  # the file parameter decodes to a known uri only twice
    FLAWED_URI = "flawed_uri"  # a relative or '..' uri that the client should have refused
    DROPPED = "dropped"


# Outcomes that only a client bug produces: tests of a correct client assert none of them.
CLIENT_FAULTS = frozenset(
    {
        Outcome.BAD_REQUEST,
        Outcome.NO_TOKEN,
        Outcome.UNKNOWN_TOKEN,
        Outcome.INVALID_DOCUMENT,
        Outcome.INVALID_VARIABLES,
        Outcome.UNKNOWN_JOB,
        Outcome.ENCODED_TWICE,
        Outcome.FLAWED_URI,
    }
)


@dataclass(frozen=True)
class CdpCall:
    t: float
    path: str
    status: int
    outcome: str
    # The root field of a GraphQL call (`submitTagUserExportJob`, `jobResult`, ...).
    operation: str | None = None
    # Serial number of the token presented (None: none, or one never issued), and whether it
    # was live.
    token: int | None = None
    token_ok: bool | None = None
    # The decoded `file` parameter of a download, or the job id of a GraphQL call.
    subject: str | None = None
    bytes_sent: int = 0


@dataclass
class CdpStats:
    calls: list[CdpCall] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, call: CdpCall) -> None:
        with self._lock:
            self.calls.append(call)

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()

    def snapshot(self, path: str | None = None) -> list[CdpCall]:
        with self._lock:
            return [c for c in self.calls if path is None or c.path == path]

    def count(self, outcome: str, path: str | None = None) -> int:
        return sum(1 for c in self.snapshot(path) if c.outcome == outcome)

    def outcomes(self, path: str | None = None) -> Counter[str]:
        return Counter(c.outcome for c in self.snapshot(path))

    def client_faults(self) -> list[CdpCall]:
        """Calls that a correct client never makes (see CLIENT_FAULTS)."""
        return [c for c in self.snapshot() if c.outcome in CLIENT_FAULTS]

    def refusals_per_token(self) -> dict[int, int]:
        """How many 401s each dead token got: more than a handful means a client kept using it."""
        counts: Counter[int] = Counter(
            c.token for c in self.snapshot() if c.outcome == Outcome.DEAD_TOKEN and c.token
        )
        return dict(counts)

    def max_calls_in_any_window(self, seconds: float = 1.0) -> int:
        """Most token and GraphQL calls (not downloads) in one half-open window of `seconds`."""
        return max_in_window((c.t for c in self.snapshot() if c.path != "/download"), seconds)

    def to_json(self) -> dict[str, Any]:
        calls = self.snapshot()
        return {
            "calls": [asdict(c) for c in calls],
            "outcomes": dict(Counter(c.outcome for c in calls)),
            "client_faults": len([c for c in calls if c.outcome in CLIENT_FAULTS]),
            "max_calls_in_any_window": self.max_calls_in_any_window(),
        }
