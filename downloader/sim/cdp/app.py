"""A stand-in for the on-premise CDP platform's export API (growingio-api.md §6, exports-spec §4).

Tests run it on loopback. Where the vendor documents nothing (token lifetime, error bodies,
whether downloads need the header, how uris must be encoded) it takes the strict reading, so
a client that works here works on the real platform.

Endpoints:
- `POST /accounts/oauth/access_token` (form: grant_type, client_id=api, client_secret, scope)
- `POST /graphql` (`Authorization: Token <t>`; documents validated against the §6 SDL)
- `GET /download?file=<uri percent-encoded once>` (same header; no Range: always the whole body)
- `GET /_sim/stats`, `POST /_sim/faults`, `POST /_sim/clock`, `POST /_sim/tokens/expire`,
  `GET /_sim/jobs/{job_id}/files` (control from other processes)
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

from aiohttp import web

from downloader.sim.cdp.graphql import GraphQLEndpoint
from downloader.sim.cdp.jobs import ExpectedFile, JobBook, SimJob
from downloader.sim.cdp.state import CdpCall, CdpFaults, CdpSimConfig, CdpStats, Outcome
from downloader.sim.cdp.tokens import TokenBook, TokenCheck
from downloader.sim.common import (
    SimClock,
    change_faults,
    clock_setting,
    fault_error,
    take_fault,
)
from downloader.sim.thread import AppThread, start_app_thread

__all__ = [
    "CdpCall",
    "CdpFaults",
    "CdpSimConfig",
    "CdpSimulator",
    "CdpStats",
    "ExpectedFile",
    "Outcome",
    "RunningCdpSimulator",
    "start_cdp_simulator",
]

TOKEN_PATH = "/accounts/oauth/access_token"
GRAPHQL_PATH = "/graphql"
DOWNLOAD_PATH = "/download"
# The token request's fixed form fields (API §6.2); client_secret is the API key.
TOKEN_FORM = {"grant_type": "client_credentials", "client_id": "api", "scope": "system"}
# Bodies of the answers the vendor does not document: the usual JSON shapes.
UNAUTHORIZED_BODY = {"message": "Unauthorized"}
BUSY_ERRORS = {"errors": [{"message": "系统繁忙，请稍后重试"}], "data": None}
FILE_CONTENT_TYPE = "application/octet-stream"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=_dumps)


class CdpSimulator:
    def __init__(self, config: CdpSimConfig) -> None:
        self.config = config
        self.stats = CdpStats()
        self._clock = SimClock(config.clock)
        self._lock = threading.Lock()
        self.tokens = TokenBook(config, self.now)
        self.jobs = JobBook(config, self.now, self._take)
        self.graphql = GraphQLEndpoint(
            {
                "submitTagUserExportJob": self._submit_tag_users,
                "submitTagUserExportJobByKey": self._submit_tag_users_by_key,
                "submitSegmentUserExportJob": self._submit_segment_users,
                "submitAnalysisExportJob": self._submit_analysis,
                "jobResult": self._job_result,
            }
        )

    # -- clock, faults, expectations -------------------------------------------------------------

    def now(self) -> datetime:
        return self._clock.now()

    def set_now(self, now: datetime | None) -> None:
        self._clock.set_now(now)

    def _take(self, name: str) -> bool:
        """Consume one count of fault counter `name`; True if it fired."""
        return take_fault(self.config.faults, self._lock, name)

    def expire_tokens(self) -> int:
        """Kill every token issued so far; the next request with one gets 401."""
        return self.tokens.expire_all()

    def job(self, job_id: str) -> SimJob:
        """A submitted job by its (long) id; UnknownJob otherwise."""
        return self.jobs.job(job_id)

    def expected_bytes(self, uri: str) -> bytes:
        """The exact bytes `/download` serves for `uri` (KeyError if no job made it)."""
        return self.jobs.content(uri)

    def expected_files(self, job_id: str) -> list[ExpectedFile]:
        """The files of a finished job, in the order of its uris."""
        return self.jobs.expected_files(job_id)

    # -- GraphQL resolvers (arguments by their GraphQL names) ------------------------------------

    def _answer(self, job: SimJob) -> dict[str, Any]:
        return {
            "id": job.job_id,
            "name": job.name,
            "stage": self.jobs.stage(job),
            "error": job.error,
        }

    def _submit_tag_users(self, charset: str | None = None, **_: Any) -> Any:
        return self._answer(self.jobs.submit("tag", charset))

    def _submit_tag_users_by_key(self, parameter: dict[str, Any]) -> Any:
        if not str(parameter["tagKey"]).startswith("tag_"):
            raise ValueError(f"tagKey must start with tag_: {parameter['tagKey']!r}")
        return self._answer(self.jobs.submit("tag", parameter.get("charset")))

    def _submit_segment_users(self, charset: str | None = None, **_: Any) -> Any:
        return self._answer(self.jobs.submit("segment", charset))

    def _submit_analysis(self, param: dict[str, Any], charset: str | None = None, **_: Any) -> Any:
        return self._answer(self.jobs.submit("analysis", charset, param["analysisType"]))

    def _job_result(self, id: str) -> Any:  # noqa: A002
        job = self.jobs.poll(id)
        stage = self.jobs.stage(job)
        return {"id": job.short_id, "stage": stage, "uris": list(job.uris) or None}

    # -- HTTP ------------------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(TOKEN_PATH, self._handle_token)
        app.router.add_post(GRAPHQL_PATH, self._handle_graphql)
        app.router.add_get(DOWNLOAD_PATH, self._handle_download)
        app.router.add_get("/_sim/stats", self._handle_stats)
        app.router.add_post("/_sim/faults", self._handle_faults)
        app.router.add_post("/_sim/clock", self._handle_clock)
        app.router.add_post("/_sim/tokens/expire", self._handle_expire_tokens)
        app.router.add_get("/_sim/jobs/{job_id}/files", self._handle_files)
        return app

    def _record(self, t: float, path: str, status: int, outcome: str, **extra: Any) -> None:
        self.stats.add(CdpCall(t, path, status, outcome, **extra))

    async def _handle_token(self, request: web.Request) -> web.Response:
        t = time.time()

        def answer(status: int, outcome: str, body: Any, serial: int | None = None) -> web.Response:
            self._record(t, TOKEN_PATH, status, outcome, token=serial)
            return _json(body, status)

        if self._take("token_500"):
            return answer(500, Outcome.FAULT_500, {"message": "Internal Server Error"})
        if request.content_type != "application/x-www-form-urlencoded":
            return answer(400, Outcome.BAD_REQUEST, {"message": "expected a form body"})
        form = await request.post()
        secret = form.get("client_secret")
        if any(form.get(k) != v for k, v in TOKEN_FORM.items()) or not isinstance(secret, str):
            return answer(400, Outcome.BAD_REQUEST, {"message": "invalid_request"})
        if not hmac.compare_digest(secret.encode(), self.config.api_key.encode()):
            return answer(401, Outcome.WRONG_API_KEY, {"message": "invalid_client"})
        token, serial = self.tokens.issue()
        return answer(200, Outcome.OK, {"access_token": token}, serial)

    def _refused(self, t: float, path: str, check: TokenCheck) -> web.Response:
        self._record(t, path, 401, check.outcome, token=check.serial, token_ok=False)
        return _json(UNAUTHORIZED_BODY, 401)

    async def _handle_graphql(self, request: web.Request) -> web.Response:
        t = time.time()
        if self._take("graphql_500"):
            self._record(t, GRAPHQL_PATH, 500, Outcome.FAULT_500)
            return web.Response(status=500, text="Internal Server Error")
        check = self.tokens.check(request.headers.get("Authorization"))
        if not check.ok:
            return self._refused(t, GRAPHQL_PATH, check)
        token = {"token": check.serial, "token_ok": True}
        try:
            if request.content_type != "application/json":
                raise ValueError(request.content_type)
            body = await request.json()
        except ValueError:
            self._record(t, GRAPHQL_PATH, 400, Outcome.BAD_REQUEST, **token)
            return _json({"errors": [{"message": "expected a JSON body"}]}, 400)
        if self._take("graphql_errors"):
            self._record(t, GRAPHQL_PATH, 200, Outcome.FAULT_ERRORS, **token)
            return _json(BUSY_ERRORS)
        done = self.graphql.run(body)
        self._record(
            t,
            GRAPHQL_PATH,
            done.status,
            done.outcome,
            operation=done.operation,
            subject=done.subject,
            **token,
        )
        return _json(done.body, done.status)

    async def _handle_download(self, request: web.Request) -> web.StreamResponse:
        t = time.time()
        check = self.tokens.check(request.headers.get("Authorization"))
        if not check.ok:
            return self._refused(t, DOWNLOAD_PATH, check)
        token = {"token": check.serial, "token_ok": True}
        query = request.rel_url.raw_query_string
        files = [v for k, v in parse_qsl(query, keep_blank_values=True) if k == "file"]
        if len(files) != 1:
            self._record(t, DOWNLOAD_PATH, 400, Outcome.BAD_REQUEST, **token)
            return _json({"message": "expected one file parameter"}, 400)
        uri = files[0]

        def record(status: int, outcome: str, sent: int = 0) -> None:
            self._record(t, DOWNLOAD_PATH, status, outcome, subject=uri, bytes_sent=sent, **token)

        if not self.jobs.has_file(uri):
            if self.jobs.is_flawed(uri):
                outcome = Outcome.FLAWED_URI
            elif self.jobs.has_file(unquote(uri)):
                outcome = Outcome.ENCODED_TWICE
            else:
                outcome = Outcome.NOT_FOUND
            record(404, outcome)
            return _json({"message": "file not found"}, 404)
        if self._take("download_500"):
            record(500, Outcome.FAULT_500)
            return web.Response(status=500, text="Internal Server Error")
        data = self.jobs.content(uri)
        if self._take("drop"):  # always fewer bytes than the body, so the break is visible
            sent = max(0, min(self.config.faults.drop_after_bytes, len(data) - 1))
            record(200, Outcome.DROPPED, sent)
            return await _cut(request, data, sent)
        record(200, Outcome.OK, len(data))
        return web.Response(body=data, content_type=FILE_CONTENT_TYPE)

    # -- control endpoints -----------------------------------------------------------------------

    async def _handle_stats(self, request: web.Request) -> web.Response:
        return _json(self.stats.to_json())

    async def _handle_faults(self, request: web.Request) -> web.Response:
        knobs = change_faults(self.config.faults, self._lock, await request.json())
        if knobs is None:
            return _json(fault_error(self.config.faults), 400)
        return _json(knobs)

    async def _handle_clock(self, request: web.Request) -> web.Response:
        try:
            self.set_now(clock_setting(await request.json()))
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)
        return _json({"now": self.now().isoformat()})

    async def _handle_expire_tokens(self, request: web.Request) -> web.Response:
        return _json({"expired": self.expire_tokens()})

    async def _handle_files(self, request: web.Request) -> web.Response:
        try:
            files = self.expected_files(request.match_info["job_id"])
        except LookupError as exc:
            return _json({"error": str(exc)}, 404)
        return _json([{"uri": f.uri, "size": len(f.data), "sha256": f.sha256} for f in files])


async def _cut(request: web.Request, data: bytes, sent: int) -> web.StreamResponse:
    """Announce the whole body, send `sent` bytes of it, then end the connection."""
    response = web.StreamResponse(status=200)
    response.content_type = FILE_CONTENT_TYPE
    response.content_length = len(data)
    await response.prepare(request)
    await response.write(data[:sent])
    # close() (unlike abort()) first flushes what was written: the client gets exactly `sent`.
    if request.transport is not None:
        request.transport.close()
    return response


# -- running it ---------------------------------------------------------------------------------


@dataclass
class RunningCdpSimulator:
    url: str
    sim: CdpSimulator
    _server: AppThread

    def stop(self) -> None:
        """Stop the server, its thread and its loop."""
        self._server.stop()


def start_cdp_simulator(
    config: CdpSimConfig, host: str = "127.0.0.1", port: int = 0
) -> RunningCdpSimulator:
    """Run a CDP simulator in a daemon thread on its own loop; return once it accepts."""
    sim = CdpSimulator(config)
    server = start_app_thread(sim.make_app(), host, port, "gio-cdp-simulator")
    return RunningCdpSimulator(server.url, sim, server)
