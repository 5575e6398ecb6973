"""The CDP simulator on loopback, driven with plain aiohttp and the cdp source's pure pieces."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from yarl import URL

from downloader.sim.cdp.app import (
    CdpSimConfig,
    CdpSimulator,
    Outcome,
    RunningCdpSimulator,
    start_cdp_simulator,
)
from downloader.sources.cdp import protocol
from downloader.sources.cdp.documents import (
    JOB_RESULT,
    GraphQLRequest,
    job_result_request,
    submit_request,
)
from downloader.sources.cdp.exports import Analysis, AnalysisType, SegmentUsers, TagUsers
from downloader.sources.cdp.protocol import Progress, Stage

API_KEY = "cdp-test-key-7c1e"
SEGMENT = SegmentUsers("Pj01Ab23", "Sg01Ab23", tags=("Tg01Ab23",), properties=("usr_name",))
TAG = TagUsers(tag_id="Tg01Ab23", properties=("usr_name",), detail=True)
TAG_KEY = TagUsers(tag_key="tag_vip")


class Client:
    """Just enough of a CDP client to drive the simulator: no retries, no refresh."""

    def __init__(self, running: RunningCdpSimulator, http: aiohttp.ClientSession) -> None:
        self.url = running.url
        self.sim: CdpSimulator = running.sim
        self.http = http
        self.token = ""

    async def get_token(self, api_key: str = API_KEY) -> int:
        async with self.http.post(
            self.url + protocol.TOKEN_PATH,
            data=protocol.token_form(api_key),
            headers={"Content-Type": protocol.FORM_CONTENT_TYPE},
        ) as response:
            if response.status == 200:
                self.token = protocol.parse_token(await response.json())
            return response.status

    def headers(self) -> dict[str, str]:
        return protocol.auth_header(self.token)

    async def graphql(
        self, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        async with self.http.post(
            self.url + protocol.GRAPHQL_PATH,
            json=body,
            headers=self.headers() if headers is None else headers,
        ) as response:
            ok_json = response.content_type == "application/json"
            return response.status, await response.json() if ok_json else await response.text()

    async def send(self, request: GraphQLRequest) -> Any:
        status, answer = await self.graphql(request.body())
        assert status == 200, answer
        return answer

    async def submit(self, export: Any, charset: str | None = None) -> protocol.Submitted:
        request = submit_request(export, charset)
        return protocol.parse_submit(await self.send(request), request.document.field)

    async def poll(self, job_id: str) -> protocol.JobPoll:
        return protocol.parse_job_result(await self.send(job_result_request(job_id)))

    async def finish(self, job_id: str, limit: int = 20) -> protocol.JobPoll:
        for _ in range(limit):
            result = await self.poll(job_id)
            if result.progress is not Progress.WAIT:
                return result
        raise AssertionError(f"job {job_id} still waiting after {limit} polls")

    async def download(
        self, url: URL | str, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        async with self.http.get(
            url, headers=self.headers() if headers is None else headers
        ) as response:
            return response.status, await response.read()

    def file_url(self, uri: str) -> URL:
        return URL(self.url + protocol.download_query(uri), encoded=True)


@pytest.fixture
def start() -> Iterator[Any]:
    started: list[RunningCdpSimulator] = []

    def run(**overrides: Any) -> RunningCdpSimulator:
        overrides.setdefault("api_key", API_KEY)
        running = start_cdp_simulator(CdpSimConfig(**overrides))
        started.append(running)
        return running

    yield run
    for running in started:
        running.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


@pytest.fixture
def connect(start: Any, http: aiohttp.ClientSession) -> Any:
    def make(**overrides: Any) -> Client:
        return Client(start(**overrides), http)

    return make


# -- tokens -------------------------------------------------------------------------------------


async def test_token_for_the_api_key_only(connect: Any) -> None:
    client = connect()
    assert await client.get_token("wrong-key") == 401
    assert await client.get_token() == 200
    assert client.sim.stats.outcomes(protocol.TOKEN_PATH) == {
        Outcome.WRONG_API_KEY: 1,
        Outcome.OK: 1,
    }
    assert client.sim.stats.client_faults() == []


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("grant_type=password&client_id=api&client_secret=k&scope=system", None),
        ("grant_type=client_credentials&client_id=web&client_secret=k&scope=system", None),
        ("grant_type=client_credentials&client_id=api&scope=system", None),
        ('{"client_secret": "k"}', "application/json"),
    ],
)
async def test_malformed_token_requests_are_client_faults(
    connect: Any, data: str, content_type: str | None
) -> None:
    client = connect()
    headers = {"Content-Type": content_type or protocol.FORM_CONTENT_TYPE}
    async with client.http.post(client.url + protocol.TOKEN_PATH, data=data, headers=headers) as r:
        assert r.status == 400
    assert client.sim.stats.count(Outcome.BAD_REQUEST) == 1
    assert len(client.sim.stats.client_faults()) == 1


async def test_token_endpoint_5xx_knob(connect: Any) -> None:
    client = connect()
    client.sim.config.faults.token_500 = 1
    assert await client.get_token() == 500
    assert await client.get_token() == 200


async def test_token_dies_after_its_uses(connect: Any) -> None:
    client = connect(token_max_uses=2)
    await client.get_token()
    first = client.token
    await client.submit(TAG)
    await client.submit(TAG)
    status, _ = await client.graphql(submit_request(TAG, None).body())
    assert status == 401
    status, _ = await client.download(client.file_url("/jobs/results/x/y.csv"))
    assert status == 401
    await client.get_token()
    assert client.token != first
    assert (await client.submit(TAG)).stage is Stage.NONE
    calls = client.sim.stats.snapshot(protocol.GRAPHQL_PATH)
    assert [(c.token, c.token_ok, c.status) for c in calls] == [
        (1, True, 200),
        (1, True, 200),
        (1, False, 401),
        (2, True, 200),
    ]
    assert client.sim.stats.refusals_per_token() == {1: 2}


async def test_token_dies_after_its_seconds(connect: Any) -> None:
    client = connect(token_ttl_seconds=60)
    t0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    client.sim.set_now(t0)
    await client.get_token()
    client.sim.set_now(t0 + timedelta(seconds=59))
    await client.submit(SEGMENT)
    client.sim.set_now(t0 + timedelta(seconds=60))
    status, _ = await client.graphql(submit_request(SEGMENT, None).body())
    assert status == 401
    assert client.sim.stats.count(Outcome.DEAD_TOKEN) == 1


async def test_expire_tokens_endpoint(connect: Any) -> None:
    client = connect()
    await client.get_token()
    async with client.http.post(client.url + "/_sim/tokens/expire") as response:
        assert await response.json() == {"expired": 1}
    status, _ = await client.graphql(submit_request(TAG, None).body())
    assert status == 401


@pytest.mark.parametrize(
    ("headers", "outcome"),
    [
        ({}, Outcome.NO_TOKEN),
        ({"Authorization": "{token}"}, Outcome.NO_TOKEN),
        ({"Authorization": "Bearer {token}"}, Outcome.NO_TOKEN),
        ({"Authorization": "Token not-a-token"}, Outcome.UNKNOWN_TOKEN),
    ],
)
async def test_401_without_a_live_token(
    connect: Any, headers: dict[str, str], outcome: str
) -> None:
    client = connect()
    await client.get_token()
    sent = {k: v.format(token=client.token) for k, v in headers.items()}
    status, body = await client.graphql(submit_request(TAG, None).body(), headers=sent)
    assert (status, body) == (401, {"message": "Unauthorized"})
    status, _ = await client.download(client.file_url("/jobs/results/x/y.csv"), headers=sent)
    assert status == 401
    calls = client.sim.stats.snapshot()[1:]
    assert [(c.path, c.status, c.outcome, c.token_ok) for c in calls] == [
        (protocol.GRAPHQL_PATH, 401, outcome, False),
        (protocol.DOWNLOAD_PATH, 401, outcome, False),
    ]


async def test_stats_never_hold_a_token_or_the_key(connect: Any) -> None:
    client = connect(token_max_uses=1)
    await client.get_token("wrong-key")
    await client.get_token()
    await client.submit(TAG)
    await client.graphql(submit_request(TAG, None).body())
    async with client.http.get(client.url + "/_sim/stats") as response:
        text = await response.text()
    assert client.token not in text and API_KEY not in text
    assert API_KEY not in repr(client.sim.config)


# -- GraphQL ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "outcome"),
    [
        ({"query": "mutation { submitTagUserExportJob(tagId: "}, Outcome.INVALID_DOCUMENT),
        (  # the older §6.4 variant: tagId as String!
            {
                "query": "mutation M($t: String!) { submitTagUserExportJob(tagId: $t) { id } }",
                "variables": {"t": "Tg01Ab23"},
            },
            Outcome.INVALID_DOCUMENT,
        ),
        ({"query": '{ jobResult(id: "x") { id nope } }'}, Outcome.INVALID_DOCUMENT),
        (
            {"query": JOB_RESULT.text, "operationName": "Other", "variables": {"id": "x"}},
            Outcome.INVALID_DOCUMENT,
        ),
        (
            {"query": JOB_RESULT.text, "variables": {"id": 5}},
            Outcome.INVALID_VARIABLES,
        ),
        (
            submit_request(TAG, None).body() | {"variables": {"tagId": "tag_vip"}},
            Outcome.INVALID_VARIABLES,
        ),
    ],
)
async def test_invalid_documents_answer_errors_and_are_recorded(
    connect: Any, body: dict[str, Any], outcome: str
) -> None:
    client = connect()
    await client.get_token()
    status, answer = await client.graphql(body)
    assert status == 200
    assert answer["errors"] and answer.get("data") is None
    with pytest.raises(protocol.GraphQLErrors):
        protocol.parse_job_result(answer)
    assert client.sim.stats.count(outcome) == 1
    assert [c.outcome for c in client.sim.stats.client_faults()] == [outcome]
    assert client.sim.jobs.submitted == 0


async def test_requests_that_are_not_graphql_and_unserved_fields(connect: Any) -> None:
    client = connect()
    await client.get_token()
    async with client.http.post(
        client.url + protocol.GRAPHQL_PATH, data="query=x", headers=client.headers()
    ) as response:
        assert response.status == 400
    status, _ = await client.graphql({"variables": {}})
    assert status == 400
    status, answer = await client.graphql({"query": "{ projects { id } }"})
    assert status == 200 and "not served" in answer["errors"][0]["message"]
    assert client.sim.stats.outcomes(protocol.GRAPHQL_PATH) == {
        Outcome.BAD_REQUEST: 2,
        Outcome.GRAPHQL_ERROR: 1,
    }


async def test_stages_progress_and_the_result_id_is_not_the_job_id(connect: Any) -> None:
    client = connect(polls_to_finish=4)
    await client.get_token()
    submitted = await client.submit(SEGMENT, "UTF-8")
    assert submitted.stage is Stage.NONE
    assert len(submitted.job_id) > 20
    stages, result_ids = [], set()
    for _ in range(5):
        result = await client.poll(submitted.job_id)
        stages.append(result.stage)
        result_ids.add(result.result_id)
    assert stages == [Stage.READY, Stage.RUNNING, Stage.DATA_READY, Stage.FINISH, Stage.FINISH]
    (short_id,) = result_ids
    assert short_id is not None and len(short_id) == 8 and short_id != submitted.job_id
    assert result.uris[0].startswith("/jobs/results/DES-")
    # Polling the short id is a client bug: the platform does not know it.
    answer = await client.send(job_result_request(short_id))
    assert "not found" in answer["errors"][0]["message"]
    assert client.sim.stats.count(Outcome.UNKNOWN_JOB) == 1
    calls = client.sim.stats.snapshot(protocol.GRAPHQL_PATH)
    assert [c.operation for c in calls] == ["submitSegmentUserExportJob"] + ["jobResult"] * 6
    assert client.sim.stats.count(Outcome.INVALID_DOCUMENT) == 0


@pytest.mark.parametrize(
    "export",
    [SEGMENT, TAG, TAG_KEY, *(Analysis("Pj01Ab23", "An01Ab23", t) for t in AnalysisType)],
    ids=repr,
)
async def test_every_export_kind_runs_to_finish(connect: Any, export: Any) -> None:
    client = connect(polls_to_finish=2, uris_per_job=3)
    await client.get_token()
    submitted = await client.submit(export, "GBK")
    result = await client.finish(submitted.job_id)
    assert result.progress is Progress.DONE and len(result.uris) == 3
    folder = "/jobs-results/downloads/" if isinstance(export, Analysis) else "/jobs/results/"
    assert all(u.startswith(folder) for u in result.uris)
    for uri, expected in zip(result.uris, client.sim.expected_files(submitted.job_id), strict=True):
        assert expected.uri == uri
        assert await client.download(client.file_url(uri)) == (200, expected.data)
        expected.data.decode("gbk")  # the job asked for GBK
    assert client.sim.stats.client_faults() == []


async def test_mutation_may_already_say_finish(connect: Any) -> None:
    client = connect(polls_to_finish=0)
    await client.get_token()
    submitted = await client.submit(Analysis("Pj01Ab23", "An01Ab23", AnalysisType.FUNNELS))
    assert submitted.stage is Stage.FINISH
    result = await client.poll(submitted.job_id)
    assert result.stage is Stage.FINISH and len(result.uris) == 1


async def test_submit_error_knob_answers_error_at_once(connect: Any) -> None:
    client = connect()
    await client.get_token()
    client.sim.config.faults.submit_error = 1
    failed = await client.submit(TAG_KEY)
    assert failed.progress is Progress.FAILED
    assert failed.error is not None and "导出任务提交失败" in failed.error
    assert (await client.poll(failed.job_id)).stage is Stage.ERROR
    assert (await client.submit(TAG_KEY)).stage is Stage.NONE


async def test_job_error_knob_fails_the_next_jobs_only(connect: Any) -> None:
    client = connect(polls_to_finish=2)
    await client.get_token()
    client.sim.config.faults.job_error = 2
    jobs = [await client.submit(TAG) for _ in range(3)]
    results = [await client.finish(job.job_id) for job in jobs]
    assert [r.progress for r in results] == [Progress.FAILED, Progress.FAILED, Progress.DONE]
    assert results[0].message == "the export job ended in stage ERROR"
    assert client.sim.job(jobs[0].job_id).error is not None


async def test_graphql_errors_and_5xx_knobs(connect: Any) -> None:
    client = connect()
    await client.get_token()
    client.sim.config.faults.graphql_errors = 1
    client.sim.config.faults.graphql_500 = 1
    status, _ = await client.graphql(submit_request(TAG, None).body())
    assert status == 500
    with pytest.raises(protocol.GraphQLErrors, match="系统繁忙"):
        await client.submit(TAG)
    assert (await client.submit(TAG)).stage is Stage.NONE
    assert client.sim.stats.outcomes(protocol.GRAPHQL_PATH) == {
        Outcome.FAULT_500: 1,
        Outcome.FAULT_ERRORS: 1,
        Outcome.OK: 1,
    }


async def test_unknown_charset_is_a_graphql_error(connect: Any) -> None:
    client = connect()
    await client.get_token()
    with pytest.raises(protocol.GraphQLErrors, match="NO-SUCH-CHARSET"):
        await client.submit(TAG, "NO-SUCH-CHARSET")
    assert client.sim.stats.count(Outcome.GRAPHQL_ERROR) == 1


# -- downloads ----------------------------------------------------------------------------------


async def _finished_uris(client: Client, export: Any = TAG, charset: str | None = None) -> Any:
    await client.get_token()
    submitted = await client.submit(export, charset)
    result = await client.finish(submitted.job_id)
    assert result.progress is Progress.DONE
    return submitted.job_id, result.uris


async def test_special_character_uris_need_encoding_exactly_once(connect: Any) -> None:
    client = connect(special_names=True, uris_per_job=2, polls_to_finish=1)
    _, uris = await _finished_uris(client)
    for uri in uris:
        assert all(c in uri for c in " %&+#") and not uri.isascii()
        expected = client.sim.expected_bytes(uri)
        assert await client.download(client.file_url(uri)) == (200, expected)
        twice = URL(client.url + protocol.download_query(quote(uri, safe="/")), encoded=True)
        assert (await client.download(twice))[0] == 404
        raw = URL(client.url + protocol.DOWNLOAD_PATH + "?file=" + uri)
        assert (await client.download(raw))[0] == 404
    downloads = client.sim.stats.snapshot(protocol.DOWNLOAD_PATH)
    assert [c.outcome for c in downloads] == [
        Outcome.OK,
        Outcome.ENCODED_TWICE,
        Outcome.NOT_FOUND,
    ] * 2
    assert [c.subject for c in downloads[::3]] == list(uris)


async def test_download_has_no_range_support(connect: Any) -> None:
    client = connect(polls_to_finish=1, rows_per_file=200)
    _, (uri,) = await _finished_uris(client)
    expected = client.sim.expected_bytes(uri)
    status, body = await client.download(
        client.file_url(uri), {**client.headers(), "Range": "bytes=100-"}
    )
    assert (status, body) == (200, expected)
    assert client.sim.expected_bytes(uri) == expected  # deterministic per uri


async def test_download_faults(connect: Any) -> None:
    client = connect(polls_to_finish=1, rows_per_file=500)
    _, (uri,) = await _finished_uris(client)
    expected = client.sim.expected_bytes(uri)
    faults = client.sim.config.faults
    faults.download_500, faults.drop, faults.drop_after_bytes = 1, 1, 1000
    assert (await client.download(client.file_url(uri)))[0] == 500
    with pytest.raises(aiohttp.ClientPayloadError):
        await client.download(client.file_url(uri))
    assert await client.download(client.file_url(uri)) == (200, expected)
    downloads = client.sim.stats.snapshot(protocol.DOWNLOAD_PATH)
    assert [(c.outcome, c.bytes_sent) for c in downloads] == [
        (Outcome.FAULT_500, 0),
        (Outcome.DROPPED, 1000),
        (Outcome.OK, len(expected)),
    ]


@pytest.mark.parametrize(("knob", "why"), [("relative_uri", "absolute"), ("dotdot_uri", "'..'")])
async def test_flawed_uri_knobs_give_uris_the_client_refuses(
    connect: Any, knob: str, why: str
) -> None:
    client = connect(polls_to_finish=1, uris_per_job=2)
    setattr(client.sim.config.faults, knob, 1)
    job_id, (flawed, good) = await _finished_uris(client)
    with pytest.raises(ValueError, match=why):
        protocol.download_query(flawed)
    assert [f.uri for f in client.sim.expected_files(job_id)] == [good]
    # Sent anyway, it is recorded as a client fault.
    raw = URL(
        client.url + protocol.DOWNLOAD_PATH + "?file=" + quote(flawed, safe="/"), encoded=True
    )
    assert (await client.download(raw))[0] == 404
    assert [c.outcome for c in client.sim.stats.client_faults()] == [Outcome.FLAWED_URI]


async def test_serve_charset_knob_serves_gbk(connect: Any) -> None:
    client = connect(polls_to_finish=1, serve_charset="GBK")
    _, (uri,) = await _finished_uris(client, SEGMENT, "UTF-8")
    status, body = await client.download(client.file_url(uri))
    assert status == 200
    text = body.decode("gbk")
    assert text.startswith("用户ID,") and body != text.encode("utf-8")


async def test_files_without_an_extension(connect: Any) -> None:
    client = connect(polls_to_finish=1, file_ext="")
    _, (uri,) = await _finished_uris(client)
    assert protocol.file_ext(uri) == "csv" and "." not in protocol.file_name(uri)


# -- control endpoints --------------------------------------------------------------------------


async def test_control_endpoints(connect: Any) -> None:
    client = connect(polls_to_finish=1)
    async with client.http.post(client.url + "/_sim/faults", json={"job_error": 1}) as response:
        assert (await response.json())["job_error"] == 1
    async with client.http.post(client.url + "/_sim/faults", json={"nope": 1}) as response:
        assert response.status == 400
    await client.get_token()
    failed = await client.submit(SEGMENT)
    assert (await client.finish(failed.job_id)).progress is Progress.FAILED
    ok = await client.submit(SEGMENT)
    (uri,) = (await client.finish(ok.job_id)).uris
    async with client.http.get(client.url + f"/_sim/jobs/{ok.job_id}/files") as response:
        (listed,) = await response.json()
    expected = client.sim.expected_bytes(uri)
    assert listed["uri"] == uri and listed["size"] == len(expected)
    async with client.http.get(client.url + "/_sim/jobs/nope/files") as response:
        assert response.status == 404
    async with client.http.post(
        client.url + "/_sim/clock", json={"now": "2026-03-01T08:00:00+08:00"}
    ) as response:
        assert (await response.json())["now"] == "2026-03-01T08:00:00+08:00"
    async with client.http.get(client.url + "/_sim/stats") as response:
        stats = await response.json()
    assert stats["client_faults"] == 0
    assert stats["outcomes"] == {Outcome.OK: 5}
    assert [c["operation"] for c in stats["calls"][1:]] == [
        "submitSegmentUserExportJob",
        "jobResult",
        "submitSegmentUserExportJob",
        "jobResult",
    ]
