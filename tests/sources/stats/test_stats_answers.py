"""Every statistics answer mapped to the engine's action: one row per case."""

from __future__ import annotations

import json
from datetime import date

import pytest

from downloader.core.policy import Action
from downloader.sources.stats.answers import rules_answer, user_list_answer, windowed_answer
from downloader.sources.stats.client import Reply
from downloader.sources.stats.keys import Item
from downloader.sources.stats.table import to_csv

DAY = date(2024, 6, 9)
CHART = Item("nxog09md", "chart", "YoX28w7R")
SEG = Item("nxog09md", "segment_users", "Sg01Ab23")
RESULT = json.dumps({"id": "YoX28w7R", "meta": [{"name": "城市", "dimension": True}],
                     "data": [["北京, 朝阳区"]]}, ensure_ascii=False).encode()


def windowed(reply: Reply):  # type: ignore[no-untyped-def]
    return windowed_answer(CHART.key(DAY), CHART, DAY, reply)


@pytest.mark.parametrize(("reply", "action", "words"), [
    (Reply(200, b'{"id":"j1","status":"doing"}'), Action.POLL, "running"),
    (Reply(200, b'{"id":"j1","status":"failed","errorMsg":"boom"}'), Action.RESUBMIT, "boom"),
    (Reply(200, b"<html>oops</html>"), Action.FAIL, "kept as response.json"),
    (Reply(200, b'{"id":"x","name":"no meta"}'), Action.FAIL, "kept as response.json"),
    (Reply(200, b'{"meta":[{"name":"a"}],"data":[[1,2]]}'), Action.FAIL, "row 0"),
    (Reply(401, b"{}"), Action.STOP, "api.token"),
    (Reply(404, b"{}"), Action.FAIL, "chart YoX28w7R of project nxog09md (2024-06-09)"),
    (Reply(429, b"", 3.0), Action.RETRY, "429"),
    (Reply(502, b""), Action.RETRY, "502"),
    (Reply(None), Action.RETRY, "no answer"),
])
def test_windowed_answers(reply: Reply, action: Action, words: str) -> None:
    answer = windowed(reply)
    assert answer.decision.action is action
    assert words in answer.decision.reason
    assert "Token" not in answer.decision.reason


@pytest.mark.parametrize("body", [b"<html>oops</html>", b'{"meta":[{"name":"a"}],"data":[[1,2]]}'])
def test_an_unusable_result_keeps_its_body_as_response_json_only(body: bytes) -> None:
    answer = windowed(Reply(200, body))
    assert answer.decision.action is Action.FAIL and "data.csv is not written" in \
        answer.decision.reason
    (kept,), = answer.files.values()
    assert (kept.name, kept.data) == ("response.json", body)


def test_a_windowed_result_is_stored_inline_as_response_and_table() -> None:
    answer = windowed(Reply(200, RESULT))
    assert answer.decision.action is Action.DOWNLOAD
    (response, table), = answer.files.values()
    assert (response.name, response.data) == ("response.json", RESULT)
    assert (table.name, table.data) == ("data.csv", to_csv(RESULT))
    assert windowed(Reply(429, b"", 3.0)).decision.retry_after == 3.0


def test_a_done_user_list_names_its_parts_by_link_position() -> None:
    body = json.dumps({"id": "j", "status": "done", "errorMsg": "",
                       "downloadLinks": ["https://x/a.csv?sign=s&expires=1",
                                         "https://x/b.csv?sign=s&expires=1"]}).encode()
    answer = user_list_answer(SEG.key(DAY), SEG, DAY, Reply(200, body))
    assert answer.decision.action is Action.DOWNLOAD
    (files,) = answer.files.values()
    assert [(f.name, f.url, f.gzip) for f in files] == [
        ("part-00000.csv", "https://x/a.csv?sign=s&expires=1", False),
        ("part-00001.csv", "https://x/b.csv?sign=s&expires=1", False)]
    assert "sign=" not in repr(files)


@pytest.mark.parametrize(("body", "action"), [
    (b'{"id":"j","status":"doing"}', Action.POLL),
    (b'{"id":"j","status":"failed","errorMsg":"x"}', Action.RESUBMIT),
    (b'{"id":"j","status":"done"}', Action.RETRY),
    (b"not json", Action.RETRY),
])
def test_user_list_answers(body: bytes, action: Action) -> None:
    assert user_list_answer(SEG.key(DAY), SEG, DAY, Reply(200, body)).decision.action is action


def test_rules_are_stored_byte_for_byte() -> None:
    rules = Item("nxog09md", "rules")
    answer = rules_answer(rules.key(DAY), rules, DAY, Reply(200, b"ruleId,eventName\r\n"))
    (files,) = answer.files.values()
    assert [(f.name, f.data) for f in files] == [("rules.csv", b"ruleId,eventName\r\n")]
