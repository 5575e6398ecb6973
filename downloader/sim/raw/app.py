"""A stand-in for GrowingIO's raw data export 2.0 API (`/v2/insights`) and its download links.

Behaviour follows growingio-api.md §2; where the vendor documents nothing (bad token, over-limit
calls, link format, expiry) it mimics the most likely real behaviour (an S3-like 403 for expired
links). This module is the aiohttp app and its two handlers; endpoints, knobs and the sibling
modules are described in the package docstring (`downloader/sim/__init__.py`).

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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from downloader.sim.common import SimClock, resolve_range, take_fault
from downloader.sim.raw.api import (
    BAD_PARAM_MSG,
    DEFAULT_EXPIRE_MINUTES,
    EXPORT_FAILED_MSG,
    RATE_WINDOW_SECONDS,
    UNAUTHORIZED_BODY,
    bad_param,
    base_body,
    bend_links,
    garbage,
    json_response,
    ready_at,
    too_many,
)
from downloader.sim.raw.control import add_control_routes
from downloader.sim.raw.csvgen import PartSpec
from downloader.sim.raw.download import (
    choose_bending,
    if_range_holds,
    s3_error,
    send_part,
)
from downloader.sim.raw.faults import SimConfig
from downloader.sim.raw.links import BadLink, LinkSigner, LinkTarget
from downloader.sim.raw.partstore import ExpectedPart, PartStore, Version, Versions
from downloader.sim.raw.records import ApiCall, DownloadRecord, SimStats
from downloader.sim.raw.schema import ALL_DATA_TYPES, COLUMNS, Partition, parse_partition
from downloader.sim.thread import AppThread, start_app_thread


class Simulator:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.stats = SimStats()
        self._clock = SimClock(config.clock)
        self._lock = threading.Lock()
        self._polls: dict[str, int] = {}
        self._admitted: deque[float] = deque()
        self._signer = LinkSigner()
        self._versions = Versions()
        self._looping: set[str] = set()  # download URLs caught in a redirect loop
        cache_dir = config.cache_dir
        self._cleanup: weakref.finalize[Any, Any] | None = None
        if cache_dir is None:  # our own temp dir: removed by close() or at garbage collection
            cache_dir = Path(tempfile.mkdtemp(prefix="gio-sim-"))
            self._cleanup = weakref.finalize(self, shutil.rmtree, cache_dir, ignore_errors=True)
        self.store = PartStore(cache_dir)

    # -- clock, faults, helpers ---------------------------------------------------------------

    def now(self) -> datetime:
        return self._clock.now()

    def set_now(self, now: datetime | None) -> None:
        self._clock.set_now(now)

    def close(self) -> None:
        """Remove the part cache if the simulator made it (not a configured cache_dir)."""
        if self._cleanup is not None:
            self._cleanup()

    def _take(self, name: str) -> bool:
        """Consume one count of fault counter `name`; True if it fired."""
        return take_fault(self.config.faults, self._lock, name)

    def _admit(self, t: float) -> bool:
        """Sliding-window limiter over admitted calls (§2.9)."""
        with self._lock:
            while self._admitted and t - self._admitted[0] >= RATE_WINDOW_SECONDS:
                self._admitted.popleft()
            if len(self._admitted) >= self.config.rate_limit_per_second:
                return False
            self._admitted.append(t)
            return True

    # -- parts and their versions ---------------------------------------------------------------

    def _version(self, ai: str, partition: Partition, data_type: str) -> tuple[str, Version]:
        key = f"{ai}/{partition.export_type}/{data_type}/{partition.export_date}"
        modified = ready_at(partition, self.config).astimezone(UTC).replace(microsecond=0)
        return key, self._versions.current(key, Version(0, self.config.parts_per_type, modified))

    def _spec(self, ai: str, partition: Partition, data_type: str) -> tuple[PartSpec, Version]:
        cfg = self.config
        _, v = self._version(ai, partition, data_type)
        spec = PartSpec(
            cfg.seed,
            ai,
            partition.export_type,
            data_type,
            partition.export_date,
            cfg.part_size,
            v.parts,
            v.number,
        )
        return spec, v

    @staticmethod
    def _partition(export_type: str, data_type: str, export_date: str) -> Partition:
        partition = parse_partition(export_type, export_date)
        if partition is None or data_type not in COLUMNS:
            raise ValueError(f"bad partition or type: {export_type}/{data_type}/{export_date}")
        return partition

    def expected_parts(
        self, ai: str, export_type: str, data_type: str, export_date: str
    ) -> list[ExpectedPart]:
        """The parts the API links now for this partition and type (generated if needed)."""
        partition = self._partition(export_type, data_type, export_date)
        if data_type in self.config.empty_types:
            return []
        return self.store.parts(self._spec(ai, partition, data_type)[0])

    def part(
        self, ai: str, export_type: str, data_type: str, export_date: str, index: int
    ) -> ExpectedPart:
        """One part only (cheaper than expected_parts when a type has several big parts)."""
        partition = self._partition(export_type, data_type, export_date)
        return self.store.part(self._spec(ai, partition, data_type)[0], index)

    def reexport(
        self, ai: str, export_type: str, data_type: str, export_date: str, parts: int | None = None
    ) -> list[ExpectedPart]:
        """Make the partition's content a new version (new bytes, optionally a new part count).

        Links already handed out keep naming the same parts and serve the new bytes.
        """
        partition = self._partition(export_type, data_type, export_date)
        if data_type in self.config.empty_types:
            raise ValueError(f"{data_type} is configured empty; nothing to re-export")
        if parts is not None and (type(parts) is not int or parts < 1):
            raise ValueError(f"parts must be a positive integer, not {parts!r}")
        key, first = self._version(ai, partition, data_type)
        self._versions.bump(key, first, self.now().astimezone(UTC), parts)
        return self.expected_parts(ai, export_type, data_type, export_date)

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v2/insights/{tail:.+}", self._handle_api)
        app.router.add_get("/download/{blob}", self._handle_download)
        add_control_routes(app, self)
        return app

    # -- /v2/insights ---------------------------------------------------------------------------

    async def _handle_api(self, request: web.Request) -> web.Response:
        t = time.time()
        response, status, reason = self._api(request, t)
        if response.status == 200 and self._take("api_garbage"):
            kind = self.config.faults.api_garbage_kind
            response, status, reason = garbage(response, kind), None, f"fault_garbage_{kind}"
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
        body = base_body(export_type, data_type, partition, raw_date, now)

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

        # Lifetimes run on the monotonic clock (real seconds), however fast `now` may move.
        ttl = cfg.link_ttl_seconds if cfg.link_ttl_seconds is not None else int(expire) * 60
        expires_ms = int((now.timestamp() + ttl) * 1000)
        deadline = cfg.monotonic() + ttl
        origin = str(request.url.origin())

        def links(dtype: str) -> list[str]:
            if dtype in cfg.empty_types:
                return []
            key, version = self._version(ai, partition, dtype)
            return [
                origin + self._signer.issue(LinkTarget(key, i, deadline), expires_ms)
                for i in range(version.parts)
            ]

        body["downloadLinks"] = (
            links(data_type) if data_type else {d: links(d) for d in ALL_DATA_TYPES}
        )
        reason = bend_links(body, self._take, faults, all_types=data_type is None)
        return answer("FINISHED", reason)

    # -- /download ------------------------------------------------------------------------------

    async def _handle_download(self, request: web.Request) -> web.StreamResponse:
        t = time.time()
        faults = self.config.faults
        part_key, index, range_start = "", -1, None

        def record(status: int, sent: int, outcome: str) -> None:
            self.stats.add_download(
                DownloadRecord(t, part_key, index, range_start, status, sent, outcome)
            )

        try:
            target = self._signer.verify(
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
        part_key, index = target.part_key, target.index
        if self.config.monotonic() > target.deadline:
            record(403, 0, "expired")
            return s3_error("AccessDenied", "Request has expired")
        url = request.path_qs
        with self._lock:
            looping = url in self._looping
        if looping or self._take("redirect_loop"):
            with self._lock:
                self._looping.add(url)
            record(302, 0, "redirect_loop")
            raise web.HTTPFound(location=url)
        ai, export_type, data_type, export_date = part_key.split("/")
        try:
            part = await asyncio.to_thread(
                self.part, ai, export_type, data_type, export_date, index
            )
        except IndexError:  # a re-export with fewer parts
            record(404, 0, "not_found")
            return s3_error("NoSuchKey", "The specified key does not exist.", 404)
        partition = self._partition(export_type, data_type, export_date)
        modified = self._version(ai, partition, data_type)[1].modified
        headers = {
            "ETag": f'"{part.sha256}"',
            "Last-Modified": format_datetime(modified.astimezone(UTC), usegmt=True),
        }
        if_range = request.headers.get("If-Range")
        stale = if_range is not None and not if_range_holds(if_range, headers["ETag"], modified)
        try:  # a stale If-Range means: ignore Range, send the whole current part (200)
            span = None if stale else resolve_range(request, part.size)
        except ValueError:
            range_start = request.http_range.start  # what the client asked to resume from
            record(416, 0, "range_not_satisfiable")
            return web.Response(status=416, headers={"Content-Range": f"bytes */{part.size}"})
        range_start = span[0] if span else None
        if self._take("download_500"):
            record(500, 0, "fault_500")
            return s3_error("InternalError", "We encountered an internal error.", 500)
        # Recorded before the body goes out, so a client that has read it finds the record.
        status, (start, stop) = (206, span) if span else (200, (0, part.size))
        accept = request.headers.get("Accept-Encoding", "")
        bend, extra, outcome = choose_bending(self._take, faults, stop - start, accept)
        headers |= extra
        record(status, bend.cut_after if bend.cut_after is not None else stop - start, outcome)
        return await send_part(request, part.path, span, part.size, headers, bend)


# -- running it ---------------------------------------------------------------------------------


@dataclass
class RunningSimulator:
    url: str
    sim: Simulator
    _server: AppThread

    def stop(self) -> None:
        """Stop the server, its thread and loop, and remove the simulator's own cache."""
        if self._server.stop():
            self.sim.close()


def start_simulator(config: SimConfig, host: str = "127.0.0.1", port: int = 0) -> RunningSimulator:
    """Run a simulator in a daemon thread on a plain asyncio loop; return once it accepts.

    A plain loop (not uvloop) on purpose: aiohttp's FileResponse then uses sendfile, which costs
    far less CPU per GiB served than uvloop's path.
    """
    sim = Simulator(config)
    try:
        server = start_app_thread(sim.make_app(), host, port, "gio-simulator")
    except BaseException:
        sim.close()
        raise
    return RunningSimulator(server.url, sim, server)


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
