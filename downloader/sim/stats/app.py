"""A stand-in for GrowingIO's V3 statistics exporter and the v1 statistics lists.

Behaviour follows exports-spec.md §3 to the letter and growingio-api.md §4/§5 for shapes; the
accepted queries are in `requests`, the content in `data`, the links in `links`.

Endpoints (every API call needs `Authorization: Token <token>` and `X-Client-Id`):
- `GET /v3/exporter/projects/{uid}/{charts|funnels|retentions|frequencies}/{id}?startTime&endTime`
  (+`interval` for charts): `doing` for a few polls of the same query, then the result body.
- `GET /v3/exporter/projects/{uid}/{segmentations|tags}/{id}/users?expire[&parameters]`:
  `doing`, then `done` with signed links under `/buckets/stats-download-jobs/`.
- `GET /projects/{uid}/dashboards.json`, `/projects/{uid}/dashboards/{id}.json`,
  `/projects/{uid}/segmentations.json`, `/projects/{uid}/rules.csv`.
- Control: `GET {prefix}/stats`, `POST {prefix}/faults`, `POST {prefix}/clock` (prefix `/_sim`
  by default; give another one when mounting onto the raw simulator's app, which owns `/_sim`).
Any other path under `/v3/`, `/projects/` or `/v2/projects/` is a 404 recorded as `unknown_path`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta

from aiohttp import web

from downloader.core.constants import BEIJING
from downloader.sim.common import (
    SimClock,
    change_faults,
    clock_setting,
    fault_error,
    resolve_range,
    take_fault,
)
from downloader.sim.stats import data
from downloader.sim.stats.config import StatsFaults, StatsSimConfig
from downloader.sim.stats.data import Dashboard, DashboardChart
from downloader.sim.stats.links import BadLink, LinkSigner, PartRef, serve_bytes
from downloader.sim.stats.outcome import (
    Outcome,
    bad_request,
    json_response,
    raw_response,
    too_many,
    with_early,
)
from downloader.sim.stats.records import LinkDownload, StatsCall, StatsSimStats
from downloader.sim.stats.requests import (
    HASH_ID,
    BadRequest,
    parse_plain,
    parse_users,
    parse_windowed,
)
from downloader.sim.stats.state import Job, JobBook, SlidingWindowAdmission, Step

__all__ = [
    "Dashboard",
    "DashboardChart",
    "LinkDownload",
    "StatsCall",
    "StatsFaults",
    "StatsSimConfig",
    "StatsSimStats",
    "StatsSimulator",
]

UNAUTHORIZED_BODY = {"message": "Unauthorized", "errors": []}  # growingio-api.md §1.6
NOT_FOUND_BODY = {"message": "Not Found", "errors": []}
JOB_FAILED_MSG = "下载出错，请您稍后重试"
RATE_WINDOW_SECONDS = 1.0  # "2 a second" in any sliding 1-second window (exports-spec.md §0)
UNUSABLE_RESULT = b"<html><body>502 Bad Gateway (a proxy's page)</body></html>"


class StatsSimulator:
    def __init__(self, config: StatsSimConfig) -> None:
        self.config = config
        self.stats = StatsSimStats()
        self._clock = SimClock(config.clock)
        self._lock = threading.Lock()
        self._jobs = JobBook(config.seed)
        self._admission = SlidingWindowAdmission(config.rate_limit_per_second, RATE_WINDOW_SECONDS)
        self._signer = LinkSigner()

    # -- clock, expected content -----------------------------------------------------------------

    def now(self) -> datetime:
        return self._clock.now()

    def set_now(self, now: datetime | None) -> None:
        self._clock.set_now(now)

    def today(self) -> date:
        """The Beijing day of the simulator's clock: the day of a user-list snapshot."""
        return self.now().astimezone(BEIJING).date()

    def expected_result(
        self, uid: str, kind: str, item_id: str, day: date, interval_ms: int = data.DAY_MS
    ) -> bytes:
        """The result body served for a windowed item and day, byte for byte."""
        cfg = self.config
        empty = item_id in cfg.empty_items
        return data.result_body(cfg.seed, uid, kind, item_id, day, interval_ms, empty=empty)

    def expected_user_parts(
        self, uid: str, kind: str, item_id: str, day: date, parameters: tuple[str, ...] = ()
    ) -> list[bytes]:
        """The bytes behind each download link of a user list on a day, in link order."""
        return [
            self._part(PartRef(kind, uid, item_id, day, parameters, n))
            for n in range(self.config.link_count)
        ]

    def expected_rules(self, uid: str) -> bytes:
        return data.rules_csv(self.config.seed, uid)

    def dashboards_of(self, uid: str) -> tuple[Dashboard, ...]:
        if uid in self.config.dashboards:
            return self.config.dashboards[uid]
        return data.default_dashboards(self.config.seed, uid)

    def segmentations_of(self, uid: str) -> tuple[str, ...]:
        if uid in self.config.segmentations:
            return self.config.segmentations[uid]
        return data.default_segmentations(self.config.seed, uid)

    def _part(self, ref: PartRef) -> bytes:
        cfg = self.config
        return data.user_part(
            cfg.seed,
            ref.uid,
            ref.kind,
            ref.item_id,
            ref.day,
            ref.index,
            ref.parameters,
            cfg.user_rows_per_part,
        )

    def _known(self, *ids: str) -> bool:
        cfg = self.config
        return all(
            HASH_ID.fullmatch(i) is not None
            and i not in cfg.missing_ids
            and (cfg.known_ids is None or i in cfg.known_ids)
            for i in ids
        )

    # -- routes ----------------------------------------------------------------------------------

    def add_routes(self, app: web.Application, *, control_prefix: str = "/_sim") -> None:
        """Register the API, link and control routes on `app` (e.g. the raw simulator's)."""
        r, api = app.router, self._api_handler
        kinds, users = "|".join(data.WINDOWED_KINDS), "|".join(data.USER_KINDS)
        v3 = "/v3/exporter/projects/{uid}"
        r.add_get(f"{v3}/{{kind:{kinds}}}/{{item}}", api(self._answer_windowed))
        r.add_get(f"{v3}/{{kind:{users}}}/{{item}}/users", api(self._answer_users))
        r.add_get("/projects/{uid}/dashboards.json", api(self._answer_dashboards))
        r.add_get("/projects/{uid}/dashboards/{item:[^/.]+}.json", api(self._answer_dashboard))
        r.add_get("/projects/{uid}/segmentations.json", api(self._answer_segmentations))
        r.add_get("/projects/{uid}/rules.csv", api(self._answer_rules))
        unknown = api(lambda _: Outcome(json_response(NOT_FOUND_BODY, 404), "unknown_path"))
        for prefix in ("/v3/", "/projects/", "/v2/projects/"):
            r.add_route("*", prefix + "{tail:.*}", unknown)
        r.add_get("/buckets/stats-download-jobs/{tail:.+}", self._download)
        r.add_get(f"{control_prefix}/stats", self._handle_stats)
        r.add_post(f"{control_prefix}/faults", self._handle_faults)
        r.add_post(f"{control_prefix}/clock", self._handle_clock)

    def make_app(self) -> web.Application:
        app = web.Application()
        self.add_routes(app)
        return app

    # -- the common gate: auth, ids, faults, rate --------------------------------------------------

    def _api_handler(
        self, answer: Callable[[web.Request], Outcome]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            return self._call(request, answer)

        return handler

    def _call(
        self, request: web.Request, answer: Callable[[web.Request], Outcome]
    ) -> web.Response:
        """Answer one API call (auth, ids, faults, rate first) and record it."""
        t = time.time()
        item = request.match_info.get("item")
        outcome = self._gate(request, item, t) or answer(request)
        self.stats.add_call(
            StatsCall(
                t,
                request.path,
                request.query_string,
                item,
                outcome.response.status,
                outcome.status,
                outcome.reason,
                outcome.early,
            )
        )
        return outcome.response

    def _gate(self, request: web.Request, item: str | None, t: float) -> Outcome | None:
        cfg, faults = self.config, self.config.faults
        headers = request.headers
        if (
            headers.get("Authorization") != f"Token {cfg.token}"
            or headers.get("X-Client-Id") != cfg.client_id
        ):
            return Outcome(json_response(UNAUTHORIZED_BODY, 401), "unauthorized")
        if "tail" in request.match_info:
            return None  # an unknown path: answered by its own handler
        uid = request.match_info["uid"]
        if not self._known(uid, *([item] if item is not None else [])):
            return Outcome(json_response(NOT_FOUND_BODY, 404), "not_found")
        if self._take("api_500"):
            return Outcome(web.Response(status=500, text="Internal Server Error"), "fault_500")
        if self._take("api_429"):
            return Outcome(too_many(faults.retry_after_seconds), "fault_429")
        if faults.enforce_rate_limit and not self._admission.admit(t, item):
            return Outcome(too_many(RATE_WINDOW_SECONDS), "rate_limited")
        return None

    def _take(self, name: str) -> bool:
        """Consume one count of fault counter `name`; True if it fired."""
        return take_fault(self.config.faults, self._lock, name)

    # -- V3 jobs -------------------------------------------------------------------------------

    def _job_step(self, request: web.Request) -> tuple[Job, Step]:
        """Advance the job of this exact GET (path and query, in any order)."""
        cfg = self.config
        key = (request.path, "&".join(sorted(f"{k}={v}" for k, v in request.query.items())))
        return self._jobs.step(
            key,
            cfg.doing_polls,
            cfg.doing_polls_jitter,
            lambda: self._take("failed"),
            cfg.reuse_done_jobs,
        )

    @staticmethod
    def _doing_or_failed(job: Job, step: Step) -> Outcome:
        if step == "doing":
            return Outcome(json_response({"id": job.id, "status": "doing"}), "doing", "doing")
        body = {"id": job.id, "status": "failed", "errorMsg": JOB_FAILED_MSG}
        return Outcome(json_response(body), "failed", "failed")

    def _answer_windowed(self, request: web.Request) -> Outcome:
        m = request.match_info
        try:
            ask = parse_windowed(m["kind"], list(request.query.items()))
        except BadRequest as exc:
            return bad_request(exc)
        due = datetime.combine(ask.day + timedelta(days=1), datetime.min.time(), BEIJING)
        early = self.now() < due + timedelta(minutes=self.config.report_lag_minutes)
        job, step = self._job_step(request)
        if step != "finished":
            return with_early(self._doing_or_failed(job, step), early)
        if self._take("unusable_result"):
            page = raw_response(UNUSABLE_RESULT, content_type="text/html")
            return Outcome(page, "unusable_result", None, early)
        body = self.expected_result(m["uid"], m["kind"], m["item"], ask.day, ask.interval_ms)
        return Outcome(raw_response(body), "result", None, early)

    def _answer_users(self, request: web.Request) -> Outcome:
        m = request.match_info
        try:
            ask = parse_users(list(request.query.items()))
        except BadRequest as exc:
            return bad_request(exc)
        job, step = self._job_step(request)
        if step != "finished":
            return self._doing_or_failed(job, step)
        cfg, now = self.config, self.now()
        ttl = cfg.link_ttl_seconds if cfg.link_ttl_seconds is not None else ask.expire_minutes * 60
        expires_ms = int((now.timestamp() + ttl) * 1000)
        day = self.today()
        origin = str(request.url.origin())
        links = [
            origin
            + self._signer.issue(
                PartRef(m["kind"], m["uid"], m["item"], day, ask.parameters, n), expires_ms
            )
            for n in range(cfg.link_count)
        ]
        body = {"id": job.id, "status": "done", "downloadLinks": links, "errorMsg": ""}
        return Outcome(json_response(body), "done", "done")

    # -- v1 ------------------------------------------------------------------------------------

    def _plain(self, request: web.Request, answer: Callable[[], Outcome]) -> Outcome:
        try:
            parse_plain(list(request.query.items()))
        except BadRequest as exc:
            return bad_request(exc)
        return answer()

    def _answer_dashboards(self, request: web.Request) -> Outcome:
        body = data.dashboards_body(self.dashboards_of(request.match_info["uid"]))
        return self._plain(request, lambda: Outcome(raw_response(body), "ok"))

    def _answer_dashboard(self, request: web.Request) -> Outcome:
        uid, item = request.match_info["uid"], request.match_info["item"]
        listed = {d.id: d for d in self.dashboards_of(uid)}
        dashboard = listed.get(item) or data.derived_dashboard(self.config.seed, uid, item)
        body = data.dashboard_body(dashboard)
        return self._plain(request, lambda: Outcome(raw_response(body), "ok"))

    def _answer_segmentations(self, request: web.Request) -> Outcome:
        body = data.segmentations_body(self.segmentations_of(request.match_info["uid"]))
        return self._plain(request, lambda: Outcome(raw_response(body), "ok"))

    def _answer_rules(self, request: web.Request) -> Outcome:
        body = self.expected_rules(request.match_info["uid"])
        csv = raw_response(body, content_type="text/csv")
        return self._plain(request, lambda: Outcome(csv, "ok"))

    # -- links ---------------------------------------------------------------------------------

    async def _download(self, request: web.Request) -> web.StreamResponse:
        t = time.time()
        ref: PartRef | None = None
        span: tuple[int, int] | None = None

        def record(status: int, sent: int, outcome: str) -> None:
            self.stats.add_download(
                LinkDownload(
                    t,
                    request.path,
                    ref.index if ref else -1,
                    span[0] if span else None,
                    status,
                    sent,
                    outcome,
                )
            )

        try:
            ref, expires_ms = self._signer.verify(
                request.path, request.query.get("sign", ""), request.query.get("expires", "")
            )
        except BadLink:
            record(403, 0, "bad_signature")
            return web.Response(status=403, text="SignatureDoesNotMatch")
        if self.now().timestamp() * 1000 > expires_ms:
            record(403, 0, "expired")
            return web.Response(status=403, text="Request has expired")
        body = self._part(ref)
        try:
            span = resolve_range(request, len(body))
        except ValueError:
            record(416, 0, "range_not_satisfiable")
            return web.Response(status=416, headers={"Content-Range": f"bytes */{len(body)}"})
        if self._take("download_500"):
            record(500, 0, "fault_500")
            return web.Response(status=500, text="InternalError")
        start, stop = span or (0, len(body))
        status = 206 if span else 200
        if self._take("drop"):  # always fewer bytes than the body, so the break is visible
            cut = max(0, min(self.config.faults.drop_after_bytes, stop - start - 1))
            record(status, cut, "dropped")
            return await serve_bytes(request, body, span, cut)
        record(status, stop - start, "ok")
        return await serve_bytes(request, body, span, None)

    # -- control endpoints ----------------------------------------------------------------------

    async def _handle_stats(self, request: web.Request) -> web.Response:
        return json_response(self.stats.to_json())

    async def _handle_faults(self, request: web.Request) -> web.Response:
        knobs = change_faults(self.config.faults, self._lock, await request.json())
        if knobs is None:
            return json_response(fault_error(self.config.faults), 400)
        return json_response(knobs)

    async def _handle_clock(self, request: web.Request) -> web.Response:
        try:
            self.set_now(clock_setting(await request.json()))
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response({"now": self.now().isoformat()})
