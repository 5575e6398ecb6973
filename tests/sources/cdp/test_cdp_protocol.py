"""The CDP answers and paths, table by table (exports-spec §4, API §6)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from downloader.sources.cdp.protocol import (
    GraphQLErrors,
    JobPoll,
    MalformedAnswer,
    Progress,
    Stage,
    Submitted,
    UnknownStage,
    auth_header,
    check_uri,
    classify,
    download_query,
    file_ext,
    graphql_error_message,
    parse_job_result,
    parse_submit,
    parse_token,
    token_form,
)

LONG_ID = "VGFnVXNlckV4cG9ydEpvYkR0bzpBYlEzWEFwWQ"


@pytest.mark.parametrize(
    ("word", "progress"),
    [
        ("NONE", Progress.WAIT),
        ("READY", Progress.WAIT),
        ("RUNNING", Progress.WAIT),
        ("DATA_READY", Progress.WAIT),
        ("FINISH", Progress.DONE),
        ("ERROR", Progress.FAILED),
    ],
)
def test_stage_table(word: str, progress: Progress) -> None:
    assert classify(word) is progress


@pytest.mark.parametrize("word", ["FINISHED", "finish", "DONE", "", " RUNNING", None, 3, "Stage"])
def test_unknown_stage_words_raise(word: Any) -> None:
    with pytest.raises(UnknownStage, match="unknown job stage"):
        classify(word)


def test_every_schema_stage_is_classified() -> None:
    assert {s.value for s in Stage} == {"NONE", "READY", "RUNNING", "DATA_READY", "FINISH", "ERROR"}


def _submit(job: Any, field: str = "submitTagUserExportJob") -> dict[str, Any]:
    return {"data": {field: job}}


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        ({"id": LONG_ID, "stage": "NONE"}, Submitted(LONG_ID, Stage.NONE)),
        ({"id": LONG_ID, "stage": "RUNNING", "error": None}, Submitted(LONG_ID, Stage.RUNNING)),
        ({"id": LONG_ID, "stage": "FINISH"}, Submitted(LONG_ID, Stage.FINISH)),
        (
            {"id": LONG_ID, "stage": "ERROR", "error": {"code": "E1", "message": "分群计算超时"}},
            Submitted(LONG_ID, Stage.ERROR, "分群计算超时 (E1)"),
        ),
        (
            {"id": LONG_ID, "stage": "ERROR", "error": {"code": None, "message": "失败"}},
            Submitted(LONG_ID, Stage.ERROR, "失败"),
        ),
        (
            {"id": LONG_ID, "stage": "ERROR", "error": None},
            Submitted(LONG_ID, Stage.ERROR, f"job {LONG_ID} answered stage ERROR"),
        ),
    ],
)
def test_parse_submit(job: dict[str, Any], expected: Submitted) -> None:
    assert parse_submit(_submit(job), "submitTagUserExportJob") == expected


def test_submitted_progress_and_finish_still_needs_a_poll() -> None:
    assert Submitted(LONG_ID, Stage.FINISH).progress is Progress.DONE
    assert Submitted(LONG_ID, Stage.ERROR, "x").progress is Progress.FAILED
    assert Submitted(LONG_ID, Stage.READY).progress is Progress.WAIT


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (_submit({"id": LONG_ID, "stage": "DONE"}), UnknownStage),
        (_submit({"id": "", "stage": "NONE"}), MalformedAnswer),
        (_submit({"stage": "NONE"}), MalformedAnswer),
        (_submit(None), MalformedAnswer),
        (_submit({"id": LONG_ID, "stage": "NONE"}, "submitSegmentUserExportJob"), MalformedAnswer),
        ({"data": None}, MalformedAnswer),
        ([], MalformedAnswer),
        ({"data": None, "errors": [{"message": "无权限"}]}, GraphQLErrors),
    ],
)
def test_parse_submit_refuses(answer: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_submit(answer, "submitTagUserExportJob")


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"data": {"x": 1}}, None),
        ({"data": {"x": 1}, "errors": []}, None),
        ({"errors": [{"message": "job not found", "path": ["jobResult"]}]}, "job not found"),
        ({"errors": [{"message": "a"}, {"message": "b"}], "data": None}, "a; b"),
        ({"errors": [{"code": 7}]}, "{'code': 7}"),
        ({"errors": "broken"}, "broken"),
        ("not an object", None),
    ],
)
def test_graphql_error_message(answer: Any, message: str | None) -> None:
    assert graphql_error_message(answer) == message


def test_errors_win_over_data() -> None:
    answer = {
        "data": {"jobResult": {"id": "AbQ3XApY", "stage": "FINISH", "uris": ["/a.csv"]}},
        "errors": [{"message": "partial failure"}],
    }
    with pytest.raises(GraphQLErrors) as caught:
        parse_job_result(answer)
    assert caught.value.message == "partial failure"


def _result(**fields: Any) -> dict[str, Any]:
    return {"data": {"jobResult": {"id": "AbQ3XApY", **fields}}}


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (_result(stage="NONE", uris=None), JobPoll(Progress.WAIT, Stage.NONE, "AbQ3XApY")),
        (_result(stage="READY"), JobPoll(Progress.WAIT, Stage.READY, "AbQ3XApY")),
        (_result(stage="RUNNING", uris=[]), JobPoll(Progress.WAIT, Stage.RUNNING, "AbQ3XApY")),
        (_result(stage="DATA_READY"), JobPoll(Progress.WAIT, Stage.DATA_READY, "AbQ3XApY")),
        (
            _result(stage="FINISH", uris=["/jobs/results/DES-1/下载用户列表.csv", "/b.csv"]),
            JobPoll(
                Progress.DONE,
                Stage.FINISH,
                "AbQ3XApY",
                ("/jobs/results/DES-1/下载用户列表.csv", "/b.csv"),
            ),
        ),
        (_result(stage="FINISH", uris=None), JobPoll(Progress.DONE, Stage.FINISH, "AbQ3XApY")),
        (
            _result(stage="ERROR", uris=None),
            JobPoll(
                Progress.FAILED,
                Stage.ERROR,
                "AbQ3XApY",
                message="the export job ended in stage ERROR",
            ),
        ),
    ],
)
def test_parse_job_result(answer: dict[str, Any], expected: JobPoll) -> None:
    assert parse_job_result(answer) == expected


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (_result(stage="COMPLETE"), UnknownStage),
        (_result(), UnknownStage),
        (_result(stage="FINISH", uris="/a.csv"), MalformedAnswer),
        (_result(stage="FINISH", uris=["/a.csv", None]), MalformedAnswer),
        ({"data": {"jobResult": None}}, MalformedAnswer),
        ({"errors": [{"message": "job AbQ3XApY not found"}], "data": None}, GraphQLErrors),
    ],
)
def test_parse_job_result_refuses(answer: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_job_result(answer)


# -- token --------------------------------------------------------------------------------------


def test_token_form_body() -> None:
    assert token_form("k3y") == (
        "grant_type=client_credentials&client_id=api&client_secret=k3y&scope=system"
    )


def test_token_form_encodes_the_key_as_a_form_value() -> None:
    fields = parse_qs(token_form("a+b&c=d é"), strict_parsing=True)
    assert fields == {
        "grant_type": ["client_credentials"],
        "client_id": ["api"],
        "client_secret": ["a+b&c=d é"],
        "scope": ["system"],
    }


def test_parse_token_and_header() -> None:
    token = parse_token({"access_token": "t0k", "expires_in": 10})
    assert token == "t0k"
    assert auth_header(token) == {"Authorization": "Token t0k"}


@pytest.mark.parametrize(
    "answer", [{}, {"access_token": ""}, {"access_token": 5}, ["access_token"], None]
)
def test_parse_token_refuses(answer: Any) -> None:
    with pytest.raises(MalformedAnswer) as caught:
        parse_token(answer)
    assert "access_token" in caught.value.message


def test_parse_token_error_does_not_quote_the_answer() -> None:
    with pytest.raises(MalformedAnswer) as caught:
        parse_token({"token": "s3cret-value"})
    assert "s3cret-value" not in str(caught.value)


# -- download paths -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "query"),
    [
        (
            "/jobs/results/DET-202104131140-42035184000000/c6be148a.csv",
            "/download?file=/jobs/results/DET-202104131140-42035184000000/c6be148a.csv",
        ),
        (
            "/jobs/results/DES-1/下载用户列表.csv",
            "/download?file=/jobs/results/DES-1/%E4%B8%8B%E8%BD%BD%E7%94%A8%E6%88%B7%E5%88%97%E8%A1%A8.csv",
        ),
        ("/a b.csv", "/download?file=/a%20b.csv"),
        ("/a&b=c.csv", "/download?file=/a%26b%3Dc.csv"),
        ("/a#1.csv", "/download?file=/a%231.csv"),
        ("/a+b.csv", "/download?file=/a%2Bb.csv"),
        ("/100%.csv", "/download?file=/100%25.csv"),
        # A `%` is literal even when it looks like an escape: it is encoded all the same.
        ("/x%20y.csv", "/download?file=/x%2520y.csv"),
        ("/q?.csv", "/download?file=/q%3F.csv"),
        ("/a-b_c.d~e.csv", "/download?file=/a-b_c.d~e.csv"),
        (
            "/jobs-results/downloads/下载漏斗.csv",
            "/download?file=/jobs-results/downloads/%E4%B8%8B%E8%BD%BD%E6%BC%8F%E6%96%97.csv",
        ),
    ],
)
def test_download_query_encodes_once(uri: str, query: str) -> None:
    assert download_query(uri) == query
    # A server decoding the query once gets the uri back, whatever it contains.
    (value,) = parse_qs(urlsplit(query).query, strict_parsing=True)["file"]
    assert value == uri
    assert unquote(query.removeprefix("/download?file=")) == uri


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("jobs/results/x.csv", "not an absolute path"),
        ("", "not an absolute path"),
        ("x.csv", "not an absolute path"),
        ("https://evil.example/x.csv", "not an absolute path"),
        ("/jobs/results/../../etc/passwd", "'..' segment"),
        ("/jobs/..", "'..' segment"),
        ("/../x.csv", "'..' segment"),
    ],
)
def test_refused_uris(uri: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        download_query(uri)
    with pytest.raises(ValueError, match="refusing result uri"):
        check_uri(uri)


@pytest.mark.parametrize("uri", ["/a/..b/c.csv", "/a/b../c.csv", "/a/.../c.csv", "/a/./c.csv"])
def test_dots_that_are_not_a_parent_segment_pass(uri: str) -> None:
    check_uri(uri)
    assert download_query(uri).startswith("/download?file=/a/")


@pytest.mark.parametrize(
    ("uri", "ext"),
    [
        ("/jobs/results/DES-1/下载用户列表.csv", "csv"),
        ("/jobs/results/DES-1/report.xlsx", "xlsx"),
        ("/jobs/results/DES-1/report.tar.gz", "gz"),
        ("/jobs/results/DES-1/report", "csv"),
        ("/jobs/results/v1.2/report", "csv"),
        ("/jobs/results/DES-1/report.", "csv"),
        ("/jobs/results/DES-1/.hidden", "csv"),
        ("/jobs/results/DES-1/a b.c d", "csv"),
        ("/jobs/results/DES-1/a.c#1", "csv"),
        ("/jobs/results/DES-1/a.JSON", "JSON"),
        ("/jobs/results/DES-1/100% a&b+c#1.txt", "txt"),
    ],
)
def test_file_ext(uri: str, ext: str) -> None:
    assert file_ext(uri) == ext
