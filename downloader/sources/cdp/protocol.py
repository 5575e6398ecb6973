"""The CDP platform's answers, read without I/O (exports-spec §4, API §6).

Plain functions over decoded JSON: the token request and answer, a mutation's answer, a
`jobResult` answer, GraphQL `errors`, the job stages mapped into a closed enum (an unknown
word raises), and the `/download` path of a result uri. The adapter that sends requests, and
the engine that decides on retries, use these labels and nothing else.

Error messages never quote a token answer: it would carry a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any
from urllib.parse import quote, urlencode

__all__ = [
    "DEFAULT_EXT",
    "DOWNLOAD_PATH",
    "FORM_CONTENT_TYPE",
    "GRAPHQL_PATH",
    "TOKEN_PATH",
    "AnswerError",
    "GraphQLErrors",
    "JobPoll",
    "MalformedAnswer",
    "Progress",
    "Stage",
    "Submitted",
    "UnknownStage",
    "auth_header",
    "check_uri",
    "classify",
    "download_query",
    "file_ext",
    "file_name",
    "graphql_error_message",
    "parse_job_result",
    "parse_submit",
    "parse_token",
    "stage_of",
    "token_form",
]

TOKEN_PATH = "/accounts/oauth/access_token"
GRAPHQL_PATH = "/graphql"
DOWNLOAD_PATH = "/download"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
# The extension of a result file without one (exports-spec §5).
DEFAULT_EXT = "csv"


class AnswerError(Exception):
    """An answer that is a failure; `message` is what to print (it holds no secret)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class GraphQLErrors(AnswerError):
    """A 200 answer that carries GraphQL `errors`: a failure with their message (§4)."""


class MalformedAnswer(AnswerError):
    """An answer not shaped as the schema promises."""


class UnknownStage(MalformedAnswer):
    """A stage word outside `JobStage`: never taken for one we know."""


class Stage(StrEnum):
    """`enum JobStage` (API §6.3)."""

    NONE = "NONE"
    READY = "READY"
    RUNNING = "RUNNING"
    DATA_READY = "DATA_READY"
    FINISH = "FINISH"
    ERROR = "ERROR"


class Progress(Enum):
    """What a stage means for the job: poll again, take the uris, or submit a new job."""

    WAIT = "wait"
    DONE = "done"
    FAILED = "failed"


_PROGRESS: dict[Stage, Progress] = {
    Stage.NONE: Progress.WAIT,
    Stage.READY: Progress.WAIT,
    Stage.RUNNING: Progress.WAIT,
    Stage.DATA_READY: Progress.WAIT,
    Stage.FINISH: Progress.DONE,
    Stage.ERROR: Progress.FAILED,
}


def stage_of(word: object) -> Stage:
    if not isinstance(word, str) or word not in Stage.__members__:
        raise UnknownStage(f"unknown job stage {word!r}")
    return Stage(word)


def classify(word: object) -> Progress:
    """The progress a stage word means; UnknownStage for a word outside `JobStage`."""
    return _PROGRESS[stage_of(word)]


# -- token ------------------------------------------------------------------------------------


def token_form(api_key: str) -> str:
    """The form body of `POST /accounts/oauth/access_token` (API §6.2)."""
    return urlencode(
        {
            "grant_type": "client_credentials",
            "client_id": "api",
            "client_secret": api_key,
            "scope": "system",
        }
    )


def parse_token(answer: object) -> str:
    """The `access_token` of a token answer (nothing else in it is promised)."""
    token = answer.get("access_token") if isinstance(answer, Mapping) else None
    if not isinstance(token, str) or not token:
        raise MalformedAnswer("the token endpoint answered no access_token")
    return token


def auth_header(token: str) -> dict[str, str]:
    """The header of every `/graphql` call and `/download` (exports-spec §4)."""
    return {"Authorization": f"Token {token}"}


# -- GraphQL answers --------------------------------------------------------------------------


def graphql_error_message(answer: object) -> str | None:
    """The messages of a GraphQL `errors` list, joined; None when the answer has none."""
    if not isinstance(answer, Mapping) or not answer.get("errors"):
        return None
    errors = answer["errors"]
    items = errors if isinstance(errors, list) else [errors]
    messages = [
        str(e["message"]) if isinstance(e, Mapping) and "message" in e else str(e) for e in items
    ]
    return "; ".join(messages)


def _data_field(answer: object, field: str) -> Mapping[str, Any]:
    message = graphql_error_message(answer)
    if message is not None:
        raise GraphQLErrors(message)
    data = answer.get("data") if isinstance(answer, Mapping) else None
    value = data.get(field) if isinstance(data, Mapping) else None
    if not isinstance(value, Mapping):
        raise MalformedAnswer(f"the answer has no object data.{field}")
    return value


@dataclass(frozen=True)
class Submitted:
    """A mutation's answer: the job id to checkpoint and poll, its stage, an ERROR's reason."""

    job_id: str
    stage: Stage
    error: str | None = None

    @property
    def progress(self) -> Progress:
        """FINISH here still needs one `jobResult` for the uris (exports-spec §4)."""
        return _PROGRESS[self.stage]


def parse_submit(answer: object, field: str) -> Submitted:
    """Read the answer of the mutation whose root field is `field`."""
    job = _data_field(answer, field)
    job_id = job.get("id")
    if not isinstance(job_id, str) or not job_id:
        raise MalformedAnswer(f"{field} answered no job id")
    stage = stage_of(job.get("stage"))
    error = None
    if stage is Stage.ERROR:
        error = _error_text(job.get("error")) or f"job {job_id} answered stage ERROR"
    return Submitted(job_id, stage, error)


def _error_text(error: object) -> str | None:
    if not isinstance(error, Mapping):
        return None
    message, code = error.get("message"), error.get("code")
    if message and code:
        return f"{message} ({code})"
    return str(message or code) if message or code else None


@dataclass(frozen=True)
class JobPoll:
    """A `jobResult` answer: `uris` when DONE, `message` when FAILED.

    `result_id` is `JobResult.id`, a short id that is not the one to poll (API §6.5).
    """

    progress: Progress
    stage: Stage
    result_id: str | None = None
    uris: tuple[str, ...] = ()
    message: str | None = None


def parse_job_result(answer: object) -> JobPoll:
    """Read a `jobResult` answer. `jobResult` carries no error text: an ERROR says only that."""
    result = _data_field(answer, "jobResult")
    stage = stage_of(result.get("stage"))
    result_id = result.get("id")
    result_id = result_id if isinstance(result_id, str) else None
    progress = _PROGRESS[stage]
    if progress is Progress.FAILED:
        return JobPoll(progress, stage, result_id, message="the export job ended in stage ERROR")
    if progress is Progress.WAIT:
        return JobPoll(progress, stage, result_id)
    uris = result.get("uris")
    if uris is None:  # `[String!]` is nullable: a finished job without files
        uris = []
    if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
        raise MalformedAnswer("jobResult.uris is not a list of strings")
    return JobPoll(progress, stage, result_id, tuple(uris))


# -- result files -----------------------------------------------------------------------------


def check_uri(uri: str) -> None:
    """Refuse a uri that is not an absolute path or that has a `..` segment (exports-spec §4)."""
    if not isinstance(uri, str) or not uri.startswith("/"):
        raise ValueError(f"refusing result uri {uri!r}: not an absolute path")
    if ".." in uri.split("/"):
        raise ValueError(f"refusing result uri {uri!r}: it has a '..' segment")


def download_query(uri: str) -> str:
    """`/download?file=<uri>`, the uri percent-encoded exactly once (RFC 3986).

    The uri is raw text: every `%` in it is a literal percent sign and becomes `%25`. Only the
    unreserved characters and `/` stay as they are; space, `&`, `#`, `+`, `%`, `?`, `=` and
    every non-ASCII character (as UTF-8) are encoded. Callers must hand the result to their
    HTTP library as already encoded (yarl: `URL(..., encoded=True)`).
    """
    check_uri(uri)
    return f"{DOWNLOAD_PATH}?file={quote(uri, safe='/')}"


def file_name(uri: str) -> str:
    """The last segment of a uri: the platform's name of the file."""
    return uri.rsplit("/", 1)[-1]


def file_ext(uri: str) -> str:
    """The last `.xxx` of the uri's file name, `csv` when there is none (exports-spec §5).

    It becomes part of a stored file name, so only letters and digits count as an extension.
    """
    stem, dot, ext = file_name(uri).rpartition(".")
    if not dot or not stem or not ext.isascii() or not ext.isalnum():
        return DEFAULT_EXT
    return ext
