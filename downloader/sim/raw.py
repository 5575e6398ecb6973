"""A stand-in for GrowingIO's raw data export 2.0 API (`/v2/insights`) and its download links.

Tests, the demo and benchmarks run it on loopback. Behaviour follows growingio-api.md §2; where
the vendor documents nothing (bad token, over-limit calls, link format, expiry) it mimics the
most likely real behaviour (an S3-like 403 for expired links). The endpoints and the fault
knobs are listed in the package docstring (`downloader/sim/__init__.py`).

This module holds the aiohttp app and its handlers; the pieces live in sibling modules:
`schema` (data types, partitions), `csvgen` (part content), `partstore` (cached parts),
`faults` (configuration and knobs), `stats` (records), `links` (signed links), `api` (answer
bodies) and `download` (serving bytes).

Entry points: `start_simulator(config)` runs it in a thread; `await serve(config, host, port)`
runs it on the current loop until cancelled (the CLI's `simulate`).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from downloader.sim.api import (
    BAD_PARAM_MSG,
    DEFAULT_EXPIRE_MINUTES,
    EXPORT_FAILED_MSG,
    RATE_WINDOW_SECONDS,
    UNAUTHORIZED_BODY,
    bad_param,
    json_response,
    ready_at,
    too_many,
)
from downloader.sim.csvgen import PartSpec
from downloader.sim.download import PART_CONTENT_TYPE, resolve_range, s3_error, stream_part
from downloader.sim.faults import Faults, SimConfig
from downloader.sim.links import BadLink, LinkSigner
from downloader.sim.partstore import ExpectedPart, PartStore
from downloader.sim.schema import ALL_DATA_TYPES, BEIJING, COLUMNS, Partition, parse_partition
from downloader.sim.stats import ApiCall, DownloadRecord, SimStats


class Simulator:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.stats = SimStats()
        self._now_override: datetime | None = None
        self._lock = threading.Lock()
        self._polls: dict[str, int] = {}
        self._admitted: deque[float] = deque()
        self._signer = LinkSigner()
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
            return json_response(UNAUTHORIZED_BODY, 401), None, "unauthorized"
        if self._take("api_500"):
            return web.Response(status=500, text="Internal Server Error"), None, "fault_500"
        if self._take("api_429"):
            return too_many(faults.retry_after_seconds), None, "fault_429"
        if faults.enforce_rate_limit and not self._admit(t):
            return too_many(RATE_WINDOW_SECONDS), None, "rate_limited"

        segments = request.match_info["tail"].split("/")
        if len(segments) not in (3, 4) or not segments[-1].endswith(".json"):
            return json_response({"message": "Not Found", "errors": []}, 404), None, "not_found"
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
            return json_response(body), status, reason

        expire = request.query.get("expire", str(DEFAULT_EXPIRE_MINUTES))
        bad = bad_param(export_type, data_type, ai, raw_date, partition, expire)
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
        except BadLink:
            record(403, 0, "bad_signature")
            return s3_error(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        if self.now().timestamp() * 1000 > expires_ms:
            record(403, 0, "expired")
            return s3_error("AccessDenied", "Request has expired")
        ai, export_type, data_type, export_date = part_key.split("/")
        try:
            part = await asyncio.to_thread(
                self.part, ai, export_type, data_type, export_date, index
            )
        except IndexError:
            record(404, 0, "not_found")
            return s3_error("NoSuchKey", "The specified key does not exist.", 404)
        try:
            span = resolve_range(request, part.size)
        except ValueError:
            record(416, 0, "range_not_satisfiable")
            return web.Response(status=416, headers={"Content-Range": f"bytes */{part.size}"})
        range_start = span[0] if span else None
        if self._take("download_500"):
            record(500, 0, "fault_500")
            return s3_error("InternalError", "We encountered an internal error.", 500)
        # Recorded before the body goes out, so a client that has read it finds the record.
        status, (start, stop) = (206, span) if span else (200, (0, part.size))
        faults = self.config.faults
        rate = faults.throttle_bytes_per_second
        if self._take("drop"):  # always fewer bytes than the body, so the break is visible
            to_send = min(faults.drop_after_bytes, stop - start - 1)
            record(status, to_send, "dropped")
            return await stream_part(request, part, span, to_send, rate=rate, cut=True)
        if self._take("corrupt"):
            record(status, stop - start, "corrupt")
            return await stream_part(request, part, span, stop - start, rate=rate, corrupt=True)
        record(status, stop - start, "ok")
        if rate:
            return await stream_part(request, part, span, stop - start, rate=rate)
        return web.FileResponse(part.path, headers={"Content-Type": PART_CONTENT_TYPE})

    # -- control endpoints ----------------------------------------------------------------------

    async def _handle_stats(self, request: web.Request) -> web.Response:
        return json_response(self.stats.to_json())

    async def _handle_faults(self, request: web.Request) -> web.Response:
        changes = await request.json()
        known = {f.name for f in fields(Faults)}
        if not isinstance(changes, dict) or not set(changes) <= known:
            return json_response(
                {"error": f"expected an object with keys from {sorted(known)}"}, 400
            )
        with self._lock:
            for name, value in changes.items():
                setattr(self.config.faults, name, value)
            return json_response(asdict(self.config.faults))

    async def _handle_clock(self, request: web.Request) -> web.Response:
        body = await request.json()
        try:
            raw = body["now"]
            self.set_now(None if raw is None else datetime.fromisoformat(raw))
        except (KeyError, TypeError, ValueError) as exc:
            return json_response(
                {"error": f"expected {{'now': iso8601-with-offset | null}}: {exc}"}, 400
            )
        return json_response({"now": self.now().isoformat()})

    async def _handle_parts(self, request: web.Request) -> web.Response:
        m = request.match_info
        try:
            parts = await asyncio.to_thread(
                self.expected_parts, m["ai"], m["export_type"], m["data_type"], m["export_date"]
            )
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response(
            [{"index": p.index, "size": p.size, "sha256": p.sha256} for p in parts]
        )


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
