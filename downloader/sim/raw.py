"""A stand-in for GrowingIO's raw data export 2.0 API (`/v2/insights`) and its download links.

Tests, the demo and benchmarks run it on loopback. Behaviour follows growingio-api.md §2; where
the vendor documents nothing (bad token, over-limit calls, link format, expiry) it mimics the
most likely real behaviour (an S3-like 403 for expired links). Part bytes come from `csvgen`.

Endpoints:
- `GET /v2/insights/{export_type}/{data_type}/{ai}/{export_date}.json?expire=N` (one type)
- `GET /v2/insights/{export_type}/{ai}/{export_date}.json?expire=N` (all types)
- `GET /download/{opaque}?Expires=..&Signature=..` (a part; Range supported)
- `GET /_sim/stats`, `POST /_sim/faults`, `POST /_sim/clock`,
  `GET /_sim/parts/{ai}/{export_type}/{data_type}/{export_date}` (control from other processes)

CLI entry point: `await serve(config, host, port, on_ready=None)` runs until cancelled.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import shutil
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from downloader.sim.csvgen import (
    ALL_DATA_TYPES,
    BEIJING,
    COLUMNS,
    EXPORT_TYPES,
    ExpectedPart,
    Partition,
    PartSpec,
    PartStore,
    parse_partition,
)

__all__ = [
    "ALL_DATA_TYPES",
    "COLUMNS",
    "ApiCall",
    "DownloadRecord",
    "ExpectedPart",
    "Faults",
    "RunningSimulator",
    "SimConfig",
    "SimStats",
    "Simulator",
    "serve",
    "start_simulator",
]

# §2.2: `expire` is in minutes, default 5, at most 7 days.
DEFAULT_EXPIRE_MINUTES = 5
MAX_EXPIRE_MINUTES = 7 * 24 * 60
# §2.6 (new docs): hours starting 23:00, 00:00 and 01:00 take the longer night lag.
NIGHT_HOURS = frozenset({23, 0, 1})
# Error texts; the first is the vendor's wording for bad parameters, the second for failed jobs.
BAD_PARAM_MSG = "请求参数不合法，"
EXPORT_FAILED_MSG = "下载出错，请您稍后重试"
# §1.6: the only documented auth-error body (from rules.csv); reused for /v2/insights.
UNAUTHORIZED_BODY = {"message": "Unauthorized", "errors": []}
# The parts are .gz files served as is, as S3 serves an object: no Content-Encoding.
PART_CONTENT_TYPE = "application/octet-stream"
# Read size when streaming a part by hand (faults, throttling).
STREAM_CHUNK = 256 * 1024
# A throttled download writes this many slices per second, so the rate is smooth.
THROTTLE_SLICES_PER_SECOND = 20
# Bytes inverted in the middle of a corrupted body: one run is enough to break the gzip CRC.
CORRUPT_RUN_BYTES = 64
# Rate-limit window (§2.9: "at most 2 calls per second").
RATE_WINDOW_SECONDS = 1.0
NONCE_BYTES = 16


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


@dataclass(frozen=True)
class ApiCall:
    t: float
    path: str
    status_code: int
    status: str | None
    reason: str


@dataclass(frozen=True)
class DownloadRecord:
    t: float
    part_key: str
    index: int
    range_start: int | None
    status_code: int
    bytes_sent: int
    outcome: str


@dataclass
class SimStats:
    api_calls: list[ApiCall] = field(default_factory=list)
    downloads: list[DownloadRecord] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add_call(self, call: ApiCall) -> None:
        with self._lock:
            self.api_calls.append(call)

    def add_download(self, record: DownloadRecord) -> None:
        with self._lock:
            self.downloads.append(record)

    def clear(self) -> None:
        with self._lock:
            self.api_calls.clear()
            self.downloads.clear()

    def max_calls_in_any_window(self, seconds: float = 1.0) -> int:
        """Most API calls whose timestamps fit in one half-open window of `seconds`."""
        with self._lock:
            times = sorted(c.t for c in self.api_calls)
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while t - times[lo] >= seconds:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            calls = [asdict(c) for c in self.api_calls]
            downloads = [asdict(d) for d in self.downloads]
        return {
            "api_calls": calls,
            "downloads": downloads,
            "max_calls_in_any_window": self.max_calls_in_any_window(),
        }


def ready_at(partition: Partition, config: SimConfig) -> datetime:
    """When the vendor would have finished exporting `partition` (§2.6)."""
    if partition.export_type == "hour":
        night = partition.start.hour in NIGHT_HOURS
        lag = config.night_hour_lag_minutes if night else config.hour_lag_minutes
        return partition.end + timedelta(minutes=lag)
    return partition.end + timedelta(minutes=config.day_lag_minutes)


class _BadLink(Exception):
    pass


class _LinkSigner:
    """Opaque, expiring, HMAC-signed download links; the secret lives only in this process.

    The part identity is encrypted (HMAC-SHA256 keystream keyed by a per-link nonce), so link
    text reveals nothing and differs on every issuance.
    """

    def __init__(self) -> None:
        secret = secrets.token_bytes(32)
        self._enc_key = hmac.digest(secret, b"enc", "sha256")
        self._mac_key = hmac.digest(secret, b"mac", "sha256")

    def _keystream(self, nonce: bytes, length: int) -> bytes:
        blocks = (
            hmac.digest(self._enc_key, nonce + i.to_bytes(4, "big"), "sha256")
            for i in range(length // 32 + 1)
        )
        return b"".join(blocks)[:length]

    def _sign(self, nonce: bytes, plain: bytes, expires_ms: int) -> str:
        msg = nonce + plain + b"|" + str(expires_ms).encode()
        return hmac.new(self._mac_key, msg, hashlib.sha256).hexdigest()

    def issue(self, part_key: str, index: int, expires_ms: int) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        plain = f"{part_key}|{index}".encode()
        cipher = bytes(
            a ^ b for a, b in zip(plain, self._keystream(nonce, len(plain)), strict=True)
        )
        blob = base64.urlsafe_b64encode(nonce + cipher).decode().rstrip("=")
        signature = self._sign(nonce, plain, expires_ms)
        return f"/download/{blob}?Expires={expires_ms}&Signature={signature}"

    def verify(self, blob: str, expires: str, signature: str) -> tuple[str, int, int]:
        """Return (part_key, index, expires_ms) or raise _BadLink."""
        try:
            raw = base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4))
            expires_ms = int(expires)
        except ValueError as exc:
            raise _BadLink from exc
        nonce, cipher = raw[:NONCE_BYTES], raw[NONCE_BYTES:]
        plain = bytes(
            a ^ b for a, b in zip(cipher, self._keystream(nonce, len(cipher)), strict=True)
        )
        if len(nonce) != NONCE_BYTES or not hmac.compare_digest(
            self._sign(nonce, plain, expires_ms), signature
        ):
            raise _BadLink
        part_key, _, index = plain.decode().rpartition("|")
        return part_key, int(index), expires_ms


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers, dumps=_dumps)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _too_many(retry_after: float) -> web.Response:
    # §2.9 documents no over-limit response; an HTTP 429 with Retry-After (seconds, "%g" so a
    # fractional test value stays readable) is the common convention.
    body = {"message": "Too Many Requests", "errors": []}
    return _json(body, 429, {"Retry-After": f"{retry_after:g}"})


def _bad_param(
    export_type: str,
    data_type: str | None,
    ai: str,
    raw_date: str,
    partition: Partition | None,
    expire: str,
) -> str | None:
    """The first request value that is not valid, or None when all are."""
    if export_type not in EXPORT_TYPES:
        return export_type
    if data_type is not None and data_type not in COLUMNS:
        return data_type
    if not (ai.isascii() and ai.replace("-", "").replace("_", "").isalnum()):
        return ai
    if partition is None:
        return raw_date
    if not (expire.isascii() and expire.isdigit() and 0 < int(expire) <= MAX_EXPIRE_MINUTES):
        return expire
    return None


def _s3_error(code: str, message: str, status: int = 403) -> web.Response:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{message}</Message></Error>"
    )
    return web.Response(status=status, text=body, content_type="application/xml")


class Simulator:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.stats = SimStats()
        self._now_override: datetime | None = None
        self._lock = threading.Lock()
        self._polls: dict[str, int] = {}
        self._admitted: deque[float] = deque()
        self._signer = _LinkSigner()
        cache_dir = config.cache_dir
        self._cleanup: weakref.finalize[Any, Any] | None = None
        if cache_dir is None:  # our own temp dir: removed by close() or at garbage collection
            cache_dir = Path(tempfile.mkdtemp(prefix="gio-sim-"))
            self._cleanup = weakref.finalize(self, shutil.rmtree, cache_dir, ignore_errors=True)
        self.store = PartStore(cache_dir)

    # -- clock, faults, helpers ---------------------------------------------------------------

    def now(self) -> datetime:
        if self._now_override is not None:
            return self._now_override
        if self.config.clock is not None:
            return self.config.clock()
        return datetime.now(UTC)

    def set_now(self, now: datetime | None) -> None:
        if now is not None and now.tzinfo is None:
            raise ValueError("set_now needs an aware datetime")
        self._now_override = now

    def close(self) -> None:
        """Remove the part cache if the simulator made it (not a configured cache_dir)."""
        if self._cleanup is not None:
            self._cleanup()

    def _take(self, name: str) -> bool:
        """Consume one count of fault counter `name`; True if it fired."""
        with self._lock:
            left = getattr(self.config.faults, name)
            if left > 0:
                setattr(self.config.faults, name, left - 1)
                return True
            return False

    def _admit(self, t: float) -> bool:
        """Sliding-window limiter over admitted calls (§2.9)."""
        with self._lock:
            while self._admitted and t - self._admitted[0] >= RATE_WINDOW_SECONDS:
                self._admitted.popleft()
            if len(self._admitted) >= self.config.rate_limit_per_second:
                return False
            self._admitted.append(t)
            return True

    def _spec(self, ai: str, partition: Partition, data_type: str) -> PartSpec:
        cfg = self.config
        return PartSpec(
            cfg.seed,
            ai,
            partition.export_type,
            data_type,
            partition.export_date,
            cfg.part_size,
            cfg.parts_per_type,
        )

    def expected_parts(
        self, ai: str, export_type: str, data_type: str, export_date: str
    ) -> list[ExpectedPart]:
        """The parts the API would link for this partition and type (generating them if needed)."""
        partition = parse_partition(export_type, export_date)
        if partition is None or data_type not in COLUMNS:
            raise ValueError(f"bad partition or type: {export_type}/{data_type}/{export_date}")
        if data_type in self.config.empty_types:
            return []
        return self.store.parts(self._spec(ai, partition, data_type))

    def part(
        self, ai: str, export_type: str, data_type: str, export_date: str, index: int
    ) -> ExpectedPart:
        """One part only (cheaper than expected_parts when a type has several big parts)."""
        partition = parse_partition(export_type, export_date)
        if partition is None or data_type not in COLUMNS:
            raise ValueError(f"bad partition or type: {export_type}/{data_type}/{export_date}")
        return self.store.part(self._spec(ai, partition, data_type), index)

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v2/insights/{tail:.+}", self._handle_api)
        app.router.add_get("/download/{blob}", self._handle_download)
        app.router.add_get("/_sim/stats", self._handle_stats)
        app.router.add_post("/_sim/faults", self._handle_faults)
        app.router.add_post("/_sim/clock", self._handle_clock)
        app.router.add_get(
            "/_sim/parts/{ai}/{export_type}/{data_type}/{export_date}", self._handle_parts
        )
        return app

    # -- /v2/insights ---------------------------------------------------------------------------

    async def _handle_api(self, request: web.Request) -> web.Response:
        t = time.time()
        response, status, reason = self._api(request, t)
        self.stats.add_call(ApiCall(t, request.path, response.status, status, reason))
        return response

    def _api(self, request: web.Request, t: float) -> tuple[web.Response, str | None, str]:
        cfg, faults = self.config, self.config.faults
        if cfg.token is not None and request.headers.get("Authorization") != f"Token {cfg.token}":
            return _json(UNAUTHORIZED_BODY, 401), None, "unauthorized"
        if self._take("api_500"):
            return web.Response(status=500, text="Internal Server Error"), None, "fault_500"
        if self._take("api_429"):
            return _too_many(faults.retry_after_seconds), None, "fault_429"
        if faults.enforce_rate_limit and not self._admit(t):
            return _too_many(RATE_WINDOW_SECONDS), None, "rate_limited"

        segments = request.match_info["tail"].split("/")
        if len(segments) not in (3, 4) or not segments[-1].endswith(".json"):
            return _json({"message": "Not Found", "errors": []}, 404), None, "not_found"
        export_type, ai, raw_date = segments[0], segments[-2], segments[-1][: -len(".json")]
        data_type = segments[1] if len(segments) == 4 else None
        now = self.now()
        partition = parse_partition(export_type, raw_date)
        body: dict[str, Any] = {
            "status": "",
            "downloadLinks": [] if data_type else {},
            "exportType": export_type,
        }
        if data_type is not None:
            body["dataType"] = data_type
        body |= {
            "exportDate": partition.export_date if partition else raw_date,
            "exportVersion": "v2",
            "requestTime": now.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M"),
            "errorMsg": "",
        }

        def answer(status: str, reason: str, error: str = "") -> tuple[web.Response, str, str]:
            body["status"], body["errorMsg"] = status, error
            return _json(body), status, reason

        expire = request.query.get("expire", str(DEFAULT_EXPIRE_MINUTES))
        bad = _bad_param(export_type, data_type, ai, raw_date, partition, expire)
        if bad is not None or partition is None:
            return answer("ERROR", "bad_request", f"{BAD_PARAM_MSG}{bad}")
        if partition.start < now - timedelta(days=cfg.retention_days):
            return answer("NOT_EXISTS", "retention")
        if now < ready_at(partition, cfg):
            return answer("NOT_EXISTS", "not_due")
        poll_key = f"{export_type}/{data_type or '*'}/{ai}/{partition.export_date}"
        with self._lock:
            polls = self._polls[poll_key] = self._polls.get(poll_key, 0) + 1
        if polls <= cfg.running_polls:
            return answer("RUNNING", "running")
        if self._take("api_error"):
            return answer("ERROR", "fault_error", EXPORT_FAILED_MSG)

        ttl = cfg.link_ttl_seconds if cfg.link_ttl_seconds is not None else int(expire) * 60
        expires_ms = int((now.timestamp() + ttl) * 1000)
        origin = str(request.url.origin())

        def links(dtype: str) -> list[str]:
            if dtype in cfg.empty_types:
                return []
            key = f"{ai}/{partition.export_type}/{dtype}/{partition.export_date}"
            return [
                origin + self._signer.issue(key, i, expires_ms) for i in range(cfg.parts_per_type)
            ]

        body["downloadLinks"] = (
            links(data_type) if data_type else {d: links(d) for d in ALL_DATA_TYPES}
        )
        return answer("FINISHED", "ok")

    # -- /download ------------------------------------------------------------------------------

    async def _handle_download(self, request: web.Request) -> web.StreamResponse:
        t = time.time()
        part_key, index, range_start = "", -1, None

        def record(status: int, sent: int, outcome: str) -> None:
            self.stats.add_download(
                DownloadRecord(t, part_key, index, range_start, status, sent, outcome)
            )

        try:
            part_key, index, expires_ms = self._signer.verify(
                request.match_info["blob"],
                request.query.get("Expires", ""),
                request.query.get("Signature", ""),
            )
        except _BadLink:
            record(403, 0, "bad_signature")
            return _s3_error(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        if self.now().timestamp() * 1000 > expires_ms:
            record(403, 0, "expired")
            return _s3_error("AccessDenied", "Request has expired")
        ai, export_type, data_type, export_date = part_key.split("/")
        try:
            part = await asyncio.to_thread(
                self.part, ai, export_type, data_type, export_date, index
            )
        except IndexError:
            record(404, 0, "not_found")
            return _s3_error("NoSuchKey", "The specified key does not exist.", 404)
        try:
            span = _resolve_range(request, part.size)
        except ValueError:
            record(416, 0, "range_not_satisfiable")
            return web.Response(status=416, headers={"Content-Range": f"bytes */{part.size}"})
        range_start = span[0] if span else None
        if self._take("download_500"):
            record(500, 0, "fault_500")
            return _s3_error("InternalError", "We encountered an internal error.", 500)
        # Recorded before the body goes out, so a client that has read it finds the record.
        status, (start, stop) = (206, span) if span else (200, (0, part.size))
        faults = self.config.faults
        rate = faults.throttle_bytes_per_second
        if self._take("drop"):  # always fewer bytes than the body, so the break is visible
            to_send = min(faults.drop_after_bytes, stop - start - 1)
            record(status, to_send, "dropped")
            return await _stream(request, part, span, to_send, rate=rate, cut=True)
        if self._take("corrupt"):
            record(status, stop - start, "corrupt")
            return await _stream(request, part, span, stop - start, rate=rate, corrupt=True)
        record(status, stop - start, "ok")
        if rate:
            return await _stream(request, part, span, stop - start, rate=rate)
        return web.FileResponse(part.path, headers={"Content-Type": PART_CONTENT_TYPE})

    # -- control endpoints ----------------------------------------------------------------------

    async def _handle_stats(self, request: web.Request) -> web.Response:
        return _json(self.stats.to_json())

    async def _handle_faults(self, request: web.Request) -> web.Response:
        changes = await request.json()
        known = {f.name for f in fields(Faults)}
        if not isinstance(changes, dict) or not set(changes) <= known:
            return _json({"error": f"expected an object with keys from {sorted(known)}"}, 400)
        with self._lock:
            for name, value in changes.items():
                setattr(self.config.faults, name, value)
            return _json(asdict(self.config.faults))

    async def _handle_clock(self, request: web.Request) -> web.Response:
        body = await request.json()
        try:
            raw = body["now"]
            self.set_now(None if raw is None else datetime.fromisoformat(raw))
        except (KeyError, TypeError, ValueError) as exc:
            return _json({"error": f"expected {{'now': iso8601-with-offset | null}}: {exc}"}, 400)
        return _json({"now": self.now().isoformat()})

    async def _handle_parts(self, request: web.Request) -> web.Response:
        m = request.match_info
        try:
            parts = await asyncio.to_thread(
                self.expected_parts, m["ai"], m["export_type"], m["data_type"], m["export_date"]
            )
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)
        return _json([{"index": p.index, "size": p.size, "sha256": p.sha256} for p in parts])


def _resolve_range(request: web.Request, size: int) -> tuple[int, int] | None:
    """The [start, stop) a Range header asks for, as FileResponse reads it; None without one.

    Raises ValueError when the range is malformed or not satisfiable (416).
    """
    rng = request.http_range
    if rng.start is None:
        return None
    if rng.start < 0:
        start, stop = max(0, size + rng.start), size
    else:
        start, stop = rng.start, min(size, rng.stop if rng.stop is not None else size)
    if start >= size:
        raise ValueError("range not satisfiable")
    return start, stop


async def _stream(
    request: web.Request,
    part: ExpectedPart,
    span: tuple[int, int] | None,
    to_send: int,
    *,
    rate: int | None,
    cut: bool = False,
    corrupt: bool = False,
) -> web.StreamResponse:
    """Serve a part by hand, at most `rate` bytes per second when that is set.

    `cut`: send `to_send` bytes (fewer than the body), then end the connection mid-body.
    `corrupt`: invert a run of bytes in the middle of the body; the length stays right.
    """
    start, stop = span or (0, part.size)
    length = stop - start
    response = web.StreamResponse(status=206 if span else 200)
    response.content_type = PART_CONTENT_TYPE
    response.content_length = length
    response.headers["Accept-Ranges"] = "bytes"
    if span:
        response.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{part.size}"
    await response.prepare(request)
    flip_lo = length // 2
    flip_hi = min(length, flip_lo + CORRUPT_RUN_BYTES) if corrupt else flip_lo
    chunk = max(1, min(STREAM_CHUNK, rate // THROTTLE_SLICES_PER_SECOND)) if rate else STREAM_CHUNK
    began, sent = time.monotonic(), 0
    with part.path.open("rb") as f:
        f.seek(start)
        while sent < to_send:
            data = f.read(min(chunk, to_send - sent))
            if sent < flip_hi and sent + len(data) > flip_lo:
                buf = bytearray(data)
                for i in range(max(flip_lo, sent), min(flip_hi, sent + len(data))):
                    buf[i - sent] ^= 0xFF
                data = bytes(buf)
            await response.write(data)
            sent += len(data)
            if rate:
                delay = began + sent / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
    if cut:
        # End the connection mid-body. close() (unlike abort()) first flushes what was written,
        # so the client gets exactly `to_send` bytes before the break, as on a real reset.
        if request.transport is not None:
            request.transport.close()
    else:
        await response.write_eof()
    return response


# -- running it ---------------------------------------------------------------------------------


@dataclass
class RunningSimulator:
    url: str
    sim: Simulator
    _loop: asyncio.AbstractEventLoop
    _runner: web.AppRunner
    _thread: threading.Thread

    def stop(self) -> None:
        """Stop the server, its thread and loop, and remove the simulator's own cache."""
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self.sim.close()


def start_simulator(config: SimConfig, host: str = "127.0.0.1", port: int = 0) -> RunningSimulator:
    """Run a simulator in a daemon thread on a plain asyncio loop; return once it accepts.

    A plain loop (not uvloop) on purpose: aiohttp's FileResponse then uses sendfile, which costs
    far less CPU per GiB served than uvloop's path.
    """
    sim = Simulator(config)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(sim.make_app(), access_log=None)
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, host, port).start())
        except BaseException as exc:  # reported to the caller below
            failure.append(exc)
            started.set()
            loop.close()
            return
        started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    thread = threading.Thread(target=run, name="gio-simulator", daemon=True)
    thread.start()
    started.wait()
    if failure:
        sim.close()
        raise failure[0]
    bound_host, bound_port = runner.addresses[0][:2]
    return RunningSimulator(
        f"http://{_url_host(bound_host)}:{bound_port}", sim, loop, runner, thread
    )


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def serve(
    config: SimConfig,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run the simulator on the current loop until cancelled (for the CLI's `simulate`).

    `on_ready(url)` is called once the socket is listening (useful with port 0).
    """
    sim = Simulator(config)
    runner = web.AppRunner(sim.make_app(), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound_host, bound_port = runner.addresses[0][:2]
        if on_ready is not None:
            on_ready(f"http://{_url_host(bound_host)}:{bound_port}")
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        sim.close()
