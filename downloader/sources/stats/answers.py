"""What every statistics answer means to the engine: one table, pure (exports-spec §0, §3).

HTTP first (401/403 stop the run naming ``api.token``; 404 fails the item with one line naming
it; 429, 5xx and no answer are retried), then the body: ``doing`` → poll, ``failed`` → a new job,
a windowed result → ``response.json`` + ``data.csv`` inline, ``done`` with links → the parts.
"""

from __future__ import annotations

from datetime import date

from downloader.core.model import PartitionKey
from downloader.core.policy import Action, Decision, classify_api
from downloader.engine.source import Answer, FileSpec
from downloader.sources.stats import protocol
from downloader.sources.stats.client import Reply
from downloader.sources.stats.keys import Item, part_name
from downloader.sources.stats.table import to_csv

RESPONSE_NAME = "response.json"
DATA_NAME = "data.csv"
RULES_NAME = "rules.csv"
# How much of an unusable result body a failure line quotes.
EXCERPT_CHARS = 80


def describe(item: Item, day: date | None = None) -> str:
    """``chart YoX28w7R of project nxog09md (2024-06-09)``: how a line names an item."""
    what = item.report if item.ident is None else f"{item.report} {item.ident}"
    when = f" ({day:%Y-%m-%d})" if day is not None else ""
    return f"{what} of project {item.uid}{when}"


def http_decision(reply: Reply, what: str) -> Decision | None:
    """None for a 200; otherwise what to do about the answer."""
    if reply.status == 200:
        return None
    if reply.unreachable is not None:
        return Decision(Action.RETRY, reply.unreachable, unreachable=True)
    if reply.status == 404:
        return Decision(Action.FAIL, f"{what}: not found (HTTP 404)")
    if reply.status in (401, 403):
        return Decision(Action.STOP, f"the statistics API rejected the credentials "
                                     f"(HTTP {reply.status}): check api.token and api.client_id")
    decision = classify_api(reply.status, retry_after=reply.retry_after)
    return Decision(decision.action, f"{what}: {decision.reason}", decision.retry_after)


def _excerpt(body: bytes) -> str:
    text = body[:EXCERPT_CHARS].decode("utf-8", "replace")
    return repr(text) + ("..." if len(body) > EXCERPT_CHARS else "")


def _failed(what: str, answer: protocol.Failed) -> Decision:
    message = answer.message or "no errorMsg"
    return Decision(Action.RESUBMIT, f"{what}: export job failed: {message}")


def windowed_answer(key: PartitionKey, item: Item, day: date, reply: Reply) -> Answer:
    what = describe(item, day)
    decision = http_decision(reply, what)
    if decision is not None:
        return Answer(decision)
    answer = protocol.classify_windowed(reply.body)
    if isinstance(answer, protocol.Doing):
        return Answer(Decision(Action.POLL, f"{what}: export job running"), job_ref=answer.job_id)
    if isinstance(answer, protocol.Failed):
        return Answer(_failed(what, answer))
    if isinstance(answer, protocol.Result):
        try:
            table = to_csv(answer.body)
        except ValueError as exc:
            return _unusable(key, what, str(exc), reply.body)
        files = (FileSpec(RESPONSE_NAME, data=answer.body), FileSpec(DATA_NAME, data=table))
        return Answer(Decision(Action.DOWNLOAD, "result"), {key: files})
    # Not JSON, or JSON that is neither a job status nor a result with meta and data: no retry
    # makes it usable (exports-spec §3/issue: the partition fails with one line).
    reason = answer.reason if isinstance(answer, protocol.Unreadable) else "unexpected answer"
    return _unusable(key, what, f"{reason}: {_excerpt(reply.body)}", reply.body)


def _unusable(key: PartitionKey, what: str, why: str, body: bytes) -> Answer:
    """A result no retry makes usable: the partition fails with one line; the body is kept as
    response.json (no data.csv, no _SUCCESS) for a person to look at."""
    return Answer(Decision(Action.FAIL, f"{what}: unusable result ({why}); the body is kept as "
                                        f"{RESPONSE_NAME}, data.csv is not written"),
                  {key: (FileSpec(RESPONSE_NAME, data=body),)})


def user_list_answer(key: PartitionKey, item: Item, day: date, reply: Reply) -> Answer:
    what = describe(item, day)
    decision = http_decision(reply, what)
    if decision is not None:
        return Answer(decision)
    answer = protocol.classify_user_list(reply.body)
    if isinstance(answer, protocol.Doing):
        return Answer(Decision(Action.POLL, f"{what}: export job running"), job_ref=answer.job_id)
    if isinstance(answer, protocol.Failed):
        return Answer(_failed(what, answer))
    if isinstance(answer, protocol.Done):
        # Signed links: they live in memory only, never in a log line or the checkpoint.
        files = tuple(FileSpec(part_name(i), url=link) for i, link in enumerate(answer.links))
        return Answer(Decision(Action.DOWNLOAD, "done"), {key: files})
    reason = answer.reason if isinstance(answer, protocol.Unreadable) else "unexpected answer"
    return Answer(Decision(Action.RETRY, f"{what}: unreadable answer ({reason})"))


def rules_answer(key: PartitionKey, item: Item, day: date, reply: Reply) -> Answer:
    decision = http_decision(reply, describe(item, day))
    if decision is not None:
        return Answer(decision)
    return Answer(Decision(Action.DOWNLOAD, "rules"), {key: (FileSpec(RULES_NAME,
                                                                      data=reply.body),)})
