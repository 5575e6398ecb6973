"""The daemon's optional HTTP listener: ``/healthz``, ``/readyz``, Prometheus ``/metrics``, and
the status page (``/``, ``/status``; :mod:`downloader.service.page`) with its data
(``/status.json``, what ``status --json`` prints).

Pure core, thin shell: :func:`metric_families` turns one snapshot (the live :class:`Stats`, the
``status --json`` report, the heartbeat age) into Prometheus metric families and is tested
without a server; :class:`HealthServer` is a small aiohttp adapter that runs on the caller's event
loop. The exposition text is written by ``prometheus_client``, never by hand.

The status report reads the SQLite checkpoint, synchronously (the checkpoint connection belongs to
the event-loop thread). It is cached for :data:`STATUS_CACHE_SECONDS`, so a burst of scrapes (two
Prometheus replicas, a curl by hand) costs one read; stats and the heartbeat are always live.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Iterable
from typing import Any, Protocol

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from downloader import __version__
from downloader.core.stats import Stats

log = structlog.get_logger("gio.health")

PREFIX = "gio_downloader_"
# A heartbeat older than this means the main loop is wedged (the loop answering /healthz is
# alive by construction, so only the heartbeat can tell).
DEFAULT_STALE_AFTER_SECONDS = 30.0
# /readyz probes the API and the storage; a probe that hangs must answer 503, not hang the
# orchestrator's probe (Kubernetes' default probe timeout is 1 s, most set a few seconds).
READY_TIMEOUT_SECONDS = 5.0
# build_status walks every checkpoint row of the retention window; Prometheus scrapes every
# 15-60 s, so 5 s of staleness is invisible while bursts of scrapes cost one read.
STATUS_CACHE_SECONDS = 5.0
# Health requests are short; a daemon shutting down must not wait long for one.
SHUTDOWN_TIMEOUT_SECONDS = 1.0

STATES = ("done", "pending", "failed")
# The status page loads nothing and runs nothing: a value that escaped escaping still could not
# run a script or call home.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                           "base-uri 'none'; form-action 'none'",
                "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}

FRESHNESS_HELP = (
    "Seconds between now and the end of the newest Beijing hour partition that is done for "
    "every configured data type of the project: how old the freshest complete hour in the lake "
    "is. THE number to watch. Healthy: from the hour lag to the lag plus one hour (30-90 min "
    "with the default lags, up to 120 min around midnight); it keeps growing when downloads "
    "stall. Absent until one hour is complete for every type (or when the project exports no "
    "hours). Same value as status --json (computed at most 5 s before the scrape)."
)


class HealthSource(Protocol):
    """What the daemon exposes to the listener."""

    def stats(self) -> Stats:
        """Live counters of this process."""
        ...

    def status_report(self) -> dict[str, Any]:
        """Exactly what :func:`downloader.status.build_status` returns."""
        ...

    async def readiness(self) -> list[tuple[str, bool, str]]:
        """``(check name, ok, detail)`` per dependency, e.g. ``("api", False, "refused")``."""
        ...

    def heartbeat_age(self) -> float:
        """Seconds since the daemon's main loop last ticked."""
        ...


# --- pure core ---------------------------------------------------------------------------------


def metric_families(stats: Stats, report: dict[str, Any] | None, heartbeat_age: float,
                    version: str = __version__) -> list[GaugeMetricFamily | CounterMetricFamily]:
    """Every metric of one scrape, from one snapshot. ``report`` is None when the status report
    could not be built: the partition and freshness metrics are then left out and
    ``status_report_ok`` is 0, the live counters are still served."""
    out: list[GaugeMetricFamily | CounterMetricFamily] = []

    def counter(name: str, doc: str, value: float) -> None:
        out.append(CounterMetricFamily(PREFIX + name, doc, value=value))

    # A part recovered from disk after a restart is counted in parts_done but was not fetched.
    counter("parts_downloaded_total",
            "Parts downloaded, verified and published by this process (not counting parts "
            "found complete on disk after a restart).",
            max(0, stats.parts_done - stats.parts_recovered))
    counter("bytes_downloaded_total",
            "Bytes downloaded by this process (not counting bytes resumed from disk).",
            stats.bytes_done)
    api = CounterMetricFamily(PREFIX + "api_calls_total",
                              "Calls to the vendor's APIs by this process, by source (raw, "
                              "reports, cdp) and answer (export status, HTTP status or "
                              "no_answer).", labels=["source", "status"])
    for (source, status), count in sorted(stats.api_calls.items()):
        api.add_metric([source, status], count)
    out.append(api)
    counter("link_refreshes_total", "Times fresh download links were fetched for a partition.",
            stats.link_refreshes)
    counter("retries_total", "Retries after transient failures (API or download).",
            stats.retries)

    beat = GaugeMetricFamily(PREFIX + "heartbeat_age_seconds",
                             "Seconds since the daemon's main loop last ticked.")
    beat.add_metric([], heartbeat_age)
    out.append(beat)
    info = GaugeMetricFamily(PREFIX + "build_info", "Always 1; the version as a label.",
                             labels=["version"])
    info.add_metric([version], 1)
    out.append(info)
    ok = GaugeMetricFamily(PREFIX + "status_report_ok",
                           "1 when the checkpoint status report behind the partition and "
                           "freshness metrics could be built at this scrape, else 0.")
    ok.add_metric([], 0 if report is None else 1)
    out.append(ok)
    if report is None:
        return out

    parts = GaugeMetricFamily(PREFIX + "partitions",
                              "Due partitions inside the retention window, by checkpoint state "
                              "(same counts as status --json).",
                              labels=["state", "ai", "data_type", "export_type"])
    fresh = GaugeMetricFamily(PREFIX + "freshness_seconds", FRESHNESS_HELP, labels=["ai"])
    known: list[float] = []
    projects = report.get("projects", [])
    for project in projects:
        for t in project["types"]:
            for state in STATES:
                parts.add_metric([state, project["ai"], t["data_type"], t["export_type"]],
                                 t[state])
        freshness = project.get("freshness_seconds")
        if freshness is not None:
            fresh.add_metric([project["ai"]], freshness)
            known.append(freshness)
    out.extend([parts, fresh])
    items = GaugeMetricFamily(PREFIX + "item_partitions",
                              "Due partitions of the statistics and CDP sources inside the "
                              "window, by checkpoint state, per item (same as status --json).",
                              labels=["source", "item", "state"])
    for source, rows in sorted(report.get("sources", {}).items()):
        for row in rows:
            for state in STATES:
                items.add_metric([source, row["item"], state], row[state])
    out.append(items)
    if projects and len(known) == len(projects):
        worst = GaugeMetricFamily(PREFIX + "freshness_seconds_max",
                                  "The largest gio_downloader_freshness_seconds across "
                                  "projects: how old the newest complete hour of the stalest "
                                  "project is (alert on this). Absent while any project has "
                                  "no freshness.")
        worst.add_metric([], max(known))
        out.append(worst)
    return out


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9108`` for IPv6) → (host, port). Port 0 means any free port."""
    host, sep, port = listen.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"health listen address {listen!r} must be host:port")
    return host, int(port)


# --- thin shell --------------------------------------------------------------------------------


class _SnapshotCollector(Collector):
    """Reads one snapshot per scrape (``generate_latest`` calls ``collect`` once)."""

    def __init__(self, server: HealthServer) -> None:
        self._server = server

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        source = self._server.source
        try:
            heartbeat = source.heartbeat_age()
        except Exception:
            heartbeat = math.nan  # /healthz says why; the other metrics are still worth serving
        return metric_families(source.stats(), self._server.cached_status_report(), heartbeat)


class HealthServer:
    """``/healthz``, ``/readyz`` and ``/metrics`` on ``listen``, served on the caller's loop."""

    def __init__(self, listen: str, source: HealthSource,
                 stale_after: float = DEFAULT_STALE_AFTER_SECONDS, *,
                 ready_timeout: float = READY_TIMEOUT_SECONDS,
                 status_cache_seconds: float = STATUS_CACHE_SECONDS) -> None:
        self.listen = listen
        self.host, self.port = parse_listen(listen)
        self.source = source
        self.stale_after = stale_after
        self.ready_timeout = ready_timeout
        self.status_cache_seconds = status_cache_seconds
        self._status: tuple[float, dict[str, Any]] | None = None  # (monotonic time, report)
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_SnapshotCollector(self))
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` actually bound (the real port when started with port 0)."""
        if self._url is None:
            raise RuntimeError("the health listener is not started")
        return self._url

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/", self._page)
        app.router.add_get("/status", self._page)
        app.router.add_get("/status.json", self._status_json)
        return app

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("the health listener is already started")
        # access_log=None: a scrape every 15 s must not flood the daemon's logs.
        runner = web.AppRunner(self._app(), access_log=None,
                               shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as exc:
            await runner.cleanup()
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise OSError(exc.errno, f"health listener cannot listen on {self.listen}: "
                                     f"{reason}") from None
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self._url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        log.info("health listener started", url=self._url)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            log.info("health listener stopped", url=self._url)
        self._url = None

    def cached_status_report(self) -> dict[str, Any] | None:
        """The status report, at most ``status_cache_seconds`` old; None when it fails (the
        failure is logged and not cached, so the next scrape tries again)."""
        now = time.monotonic()
        if self._status is not None and now - self._status[0] < self.status_cache_seconds:
            return self._status[1]
        try:
            report = self.source.status_report()
        except Exception as exc:
            log.warning("status report failed (metrics, status page)",
                        error=f"{type(exc).__name__}: {exc}")
            return None
        self._status = (now, report)
        return report

    # --- handlers ------------------------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        try:
            age = self.source.heartbeat_age()
        except Exception as exc:
            return web.Response(status=503, text=f"heartbeat unknown: {type(exc).__name__}\n")
        if age < self.stale_after:  # also False for NaN
            return web.Response(text="ok\n")
        shown = "never" if math.isinf(age) else f"{age:.1f} s ago"
        return web.Response(status=503, text=f"main loop stalled: last heartbeat {shown} "
                                             f"(limit {self.stale_after:g} s)\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(self.ready_timeout):
                results = await self.source.readiness()
            checks = [{"name": str(name), "ok": bool(ok), "detail": str(detail)}
                      for name, ok, detail in results]
        except TimeoutError:
            checks = [{"name": "readiness", "ok": False,
                       "detail": f"checks did not finish within {self.ready_timeout:g} s"}]
        except Exception as exc:
            checks = [{"name": "readiness", "ok": False,
                       "detail": f"checks raised {type(exc).__name__}: {exc}"}]
        ready = all(c["ok"] for c in checks)
        return web.Response(status=200 if ready else 503, content_type="application/json",
                            text=json.dumps({"ready": ready, "checks": checks}))

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self._registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _page(self, request: web.Request) -> web.Response:
        from downloader.service.page import render_page, render_unavailable

        report = self.cached_status_report()
        if report is None:
            return web.Response(status=503, content_type="text/html", headers=PAGE_HEADERS,
                                text=render_unavailable("the checkpoint could not be read",
                                                        __version__))
        # Tens of milliseconds for a thousand rows: off the loop, which keeps downloading.
        text = await asyncio.to_thread(render_page, report, __version__)
        return web.Response(content_type="text/html", text=text, headers=PAGE_HEADERS)

    async def _status_json(self, request: web.Request) -> web.Response:
        report = self.cached_status_report()
        if report is None:
            return web.Response(status=503, content_type="application/json",
                                text=json.dumps({"error": "the checkpoint could not be read"}))
        return web.Response(content_type="application/json", headers={"Cache-Control": "no-store"},
                            text=json.dumps(report, indent=2, ensure_ascii=False) + "\n")
