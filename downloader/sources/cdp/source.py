"""The CDP platform's export jobs (GraphQL, exports-spec §4) as a source of the engine.

One ask is one step of a job's life: no job recorded → submit the export's mutation and hand
its id to the engine (it goes into the checkpoint, so a restart polls the same job); a job
recorded → one `jobResult` poll with that id. NONE..DATA_READY → poll again; FINISH → the
result files; ERROR → a new job (the recorded id is dropped). Downloads carry the token
(`download_headers`); a wrong api_key stops the run with exit 1.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from yarl import URL

from downloader.config.model import Config
from downloader.core.constants import JOB_POLL_FIRST_SECONDS, JOB_POLL_MAX_SECONDS
from downloader.core.model import DoneSet, PartitionKey
from downloader.core.policy import Action, Decision
from downloader.engine.source import Answer, FileSpec, Job, Plan
from downloader.engine.transfer import PartFailed, StopRun
from downloader.sources.cdp.client import CdpClient, GqlOutcome
from downloader.sources.cdp.documents import job_result_request, submit_request
from downloader.sources.cdp.exports import CdpExport, from_config
from downloader.sources.cdp.keys import (
    ROOT,
    SOURCE,
    item_name,
    parse_key,
    part_name,
    partition_dir,
)
from downloader.sources.cdp.plan import next_snapshot_due, plan_snapshots
from downloader.sources.cdp.protocol import (
    AnswerError,
    GraphQLErrors,
    JobPoll,
    Progress,
    auth_header,
    check_uri,
    download_query,
    file_ext,
    file_name,
    parse_job_result,
    parse_submit,
)
from downloader.sources.cdp.tokens import TokenUnavailable, WrongApiKey

# The token a download task was last given: when that task is refused (401) it asks for any
# token but this one, so a refresh is shared by every task refused with the same token.
_HANDED: contextvars.ContextVar[str | None] = contextvars.ContextVar("cdp_token", default=None)


def _exports(cfg: Config) -> dict[str, tuple[CdpExport, str]]:
    """Each configured export by its item name (``<kind>/<id>``), with its kind."""
    if cfg.cdp is None:
        return {}
    return {item_name(e.kind, e.ident): (from_config(e), e.kind) for e in cfg.cdp.exports}


class CdpSource:
    name = SOURCE
    root = ROOT
    # CDP jobs take seconds: re-poll after ~1 s, backing off to 10 s (exports-spec §0).
    poll_first_seconds = JOB_POLL_FIRST_SECONDS
    poll_max_seconds = JOB_POLL_MAX_SECONDS

    def __init__(self, cfg: Config, client: CdpClient | None) -> None:
        self.cfg = cfg
        self.client = client  # None: planning only (status, plan)
        self._by_item = _exports(cfg)

    @property
    def _lag(self) -> timedelta:
        return timedelta(minutes=self.cfg.report_lag_minutes)

    def plan(self, first_hour: datetime, last_hour: datetime, now: datetime,
             done: DoneSet) -> Plan:
        items = [parse_key_item(item) for item in self._by_item]
        return plan_snapshots(items, first_hour, last_hour, now, self._lag, done)

    def next_due(self, now: datetime) -> datetime | None:
        return next_snapshot_due(now, self._lag) if self._by_item else None

    def reconfigure(self, cfg: Config) -> None:
        self.cfg = cfg
        self._by_item = _exports(cfg)

    def folder(self, key: PartitionKey) -> str:
        return partition_dir(*parse_key(key))

    def manifest(self, key: PartitionKey, info: Mapping[str, str]) -> dict[str, Any]:
        kind, ident, day = parse_key(key)
        head: dict[str, Any] = {"source": SOURCE, "export": kind, "id": ident,
                                "date": day.isoformat()}
        head.update({k: v for k, v in info.items() if v})
        return head

    # -- the platform ---------------------------------------------------------------------------

    async def download_headers(self, stale: bool) -> Mapping[str, str]:
        assert self.client is not None
        refused = _HANDED.get() if stale else None
        try:
            token = await self.client.tokens.get(refused=refused)
        except WrongApiKey as exc:
            raise StopRun(str(exc)) from None
        except TokenUnavailable as exc:
            raise PartFailed(f"no CDP token: {exc}") from None
        _HANDED.set(token)
        return auth_header(token)

    async def ask(self, job: Job, keys: Sequence[PartitionKey], job_ref: str | None) -> Answer:
        assert self.client is not None
        key = keys[0]
        found = self._by_item.get(key.item)
        if found is None:
            return Answer(Decision(Action.FAIL, f"{key.item} is no longer configured"),
                          job_ref=job_ref)
        export, _ = found
        try:
            if job_ref is None:
                return await self._submit(key, export)
            return await self._poll(key, job_ref)
        except WrongApiKey as exc:
            # A wrong key is not a config syntax error: exit 1, as the issue asks (StopRun with
            # config_error=False), one line naming cdp.api_key.
            raise StopRun(str(exc)) from None

    async def _submit(self, key: PartitionKey, export: CdpExport) -> Answer:
        assert self.client is not None and self.cfg.cdp is not None
        request = submit_request(export, self.cfg.cdp.charset)
        outcome = await self.client.graphql(request)
        if outcome.decision is not None:
            return Answer(outcome.decision)
        try:
            submitted = parse_submit(outcome.answer, request.document.field)
        except AnswerError as exc:
            return Answer(_answer_error(exc, "submitting the export job"))
        if submitted.progress is Progress.FAILED:
            return Answer(Decision(Action.RESUBMIT, f"export job failed: {submitted.error}"))
        if submitted.progress is Progress.DONE:  # one jobResult is still needed for the uris
            return await self._poll(key, submitted.job_id)
        return Answer(Decision(Action.POLL, f"export job submitted ({submitted.stage})"),
                      job_ref=submitted.job_id)

    async def _poll(self, key: PartitionKey, job_id: str) -> Answer:
        assert self.client is not None
        outcome: GqlOutcome = await self.client.graphql(job_result_request(job_id))
        if outcome.decision is not None:
            return Answer(outcome.decision, job_ref=job_id)
        try:
            result = parse_job_result(outcome.answer)
        except GraphQLErrors as exc:  # e.g. a recorded job the platform no longer knows
            return Answer(_answer_error(exc, "polling the export job"))
        except AnswerError as exc:
            return Answer(_answer_error(exc, "polling the export job"), job_ref=job_id)
        if result.progress is Progress.WAIT:
            return Answer(Decision(Action.POLL, f"export job {result.stage}"), job_ref=job_id)
        if result.progress is Progress.FAILED:
            return Answer(Decision(Action.RESUBMIT, f"export job failed: {result.message}"))
        return self._finished(key, job_id, result)

    def _finished(self, key: PartitionKey, job_id: str, result: JobPoll) -> Answer:
        assert self.client is not None
        try:
            for uri in result.uris:
                check_uri(uri)
        except ValueError as exc:  # never followed; the next try submits a new job
            return Answer(Decision(Action.FAIL, str(exc)))
        base = self.client.base_url
        files = tuple(
            FileSpec(part_name(i, file_ext(uri)),
                     url=URL(base + download_query(uri), encoded=True),
                     extra={"original_name": file_name(uri)}, auth=True, ranged=False)
            for i, uri in enumerate(result.uris))
        assert self.cfg.cdp is not None
        info = {"job_id": job_id, "charset": self.cfg.cdp.charset or ""}
        return Answer(Decision(Action.DOWNLOAD, "export job finished"), {key: files},
                      {key: info}, job_ref=job_id)


def parse_key_item(item: str) -> tuple[str, str]:
    kind, _, ident = item.partition("/")
    return kind, ident


def _answer_error(exc: AnswerError, doing: str) -> Decision:
    """GraphQL `errors` fail the job attempt (a new job after backoff, up to
    retry.max_job_attempts); an answer of the wrong shape is retried like a 5xx."""
    if isinstance(exc, GraphQLErrors):
        return Decision(Action.RESUBMIT, f"GraphQL error {doing}: {exc.message}")
    return Decision(Action.RETRY, f"unreadable CDP answer {doing}: {exc.message}")
