"""The CDP source through the real CLI against the CDP simulator on loopback (exports-spec §4)."""

from __future__ import annotations

import base64
import json
import signal
import time
from pathlib import Path
from typing import Any

import yaml
from conftest import beijing_now, run_cli, start_cli, write_config
from s3server import closed_port

API_KEY = "cdp-key-7f3e9a1b"
ENV = {"GIO_TEST_CDP_KEY": API_KEY}
SEGMENT = {"segment_users": {"project_id": "Pj01Ab23", "segment_id": "Sg01Ab23",
                             "tags": ["Tg01Ab23"], "properties": ["usr_name"]}}
TAG_ID = {"tag_users": {"tag_id": "Tg01Ab23", "properties": ["usr_name"], "detail": True}}
TAG_KEY = {"tag_users": {"tag_key": "tag_vip"}}
ANALYSIS = {"analysis": {"project_id": "Pj01Ab23", "id": "An01Ab23", "type": "FUNNELS"}}
FOLDERS = {
    "segment_users": "export=segment_users/id=Sg01Ab23",
    "tag_id": "export=tag_users/id=Tg01Ab23",
    "tag_key": "export=tag_users/id=tag_vip",
    "analysis": "export=analysis/id=An01Ab23",
}


def cdp_config(tmp_path: Path, url: str, exports: list[dict[str, Any]],
               **cdp: Any) -> Path:
    """A config with only a cdp: block (no api:, no projects:)."""
    path = write_config(tmp_path, url)
    data = yaml.safe_load(path.read_text())
    del data["api"], data["projects"]
    data["cdp"] = {"base_url": url, "api_key": "${GIO_TEST_CDP_KEY}", "exports": exports, **cdp}
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def today_folder(tmp_path: Path, export: str) -> Path:
    return tmp_path / "data" / "cdp" / FOLDERS[export] / f"date={beijing_now():%Y-%m-%d}"


def assert_exact(sim: Any, folder: Path) -> dict[str, Any]:
    """Every part byte for byte what the simulator made for the job in the manifest, named by
    position with the uri's extension, the original name in the manifest, nothing else there."""
    manifest = json.loads((folder / "_SUCCESS").read_text())
    expected = sim.sim.expected_files(manifest["job_id"])
    names = []
    for i, (entry, want) in enumerate(zip(manifest["parts"], expected, strict=True)):
        original = want.uri.rsplit("/", 1)[-1]
        ext = original.rsplit(".", 1)[-1] if "." in original else "csv"
        assert entry["name"] == f"part-{i:05d}.{ext}"
        assert entry["original_name"] == original
        assert (folder / entry["name"]).read_bytes() == want.data
        assert entry["sha256"] == want.sha256 and entry["bytes"] == len(want.data)
        names.append(entry["name"])
    assert sorted(p.name for p in folder.iterdir()) == sorted([*names, "_SUCCESS"])
    return manifest


def mutations(sim: Any) -> list[Any]:
    return [c for c in sim.sim.stats.snapshot("/graphql")
            if c.operation and c.operation.startswith("submit")]


def polls(sim: Any) -> list[Any]:
    return [c for c in sim.sim.stats.snapshot("/graphql") if c.operation == "jobResult"]


def assert_clean(sim: Any, result: Any) -> None:
    out = result.stdout + result.stderr
    assert "Traceback" not in out
    assert API_KEY not in out
    assert sim.sim.stats.client_faults() == []
    assert sim.sim.stats.max_calls_in_any_window() <= 2


def test_cdp_only_config_every_kind_special_names(tmp_path: Path, start_cdp_sim: Any) -> None:
    sim = start_cdp_sim(api_key=API_KEY, special_names=True, uris_per_job=2, polls_to_finish=2)
    cfg = cdp_config(tmp_path, sim.url, [SEGMENT, TAG_ID, TAG_KEY, ANALYSIS])
    result = run_cli("backfill", "-c", str(cfg), "--days", "3", **ENV)
    assert result.returncode == 0, result.stderr
    assert_clean(sim, result)
    for export in FOLDERS:
        manifest = assert_exact(sim, today_folder(tmp_path, export))
        assert manifest["source"] == "cdp" and manifest["date"] == f"{beijing_now():%Y-%m-%d}"
    out = result.stdout + result.stderr
    skipped = [line for line in out.splitlines() if "skipped" in line]
    assert len(skipped) == 1 and "3 past snapshot days" in skipped[0], out
    assert len(mutations(sim)) == 4
    # Every poll asked for a mutation's id (the one in the manifest), never the short
    # JobResult.id.
    job_ids = {json.loads((today_folder(tmp_path, e) / "_SUCCESS").read_text())["job_id"]
               for e in FOLDERS}
    assert {c.subject for c in polls(sim)} == job_ids
    # Neither the api_key nor its base64 form reaches the checkpoint or the lake.
    secrets = (API_KEY.encode(), base64.b64encode(API_KEY.encode()))
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert not any(secret in path.read_bytes() for secret in secrets), path
    # A second run finds everything done and asks nothing.
    calls = len(sim.sim.stats.snapshot())
    again = run_cli("backfill", "-c", str(cfg), "--days", "1", **ENV)
    assert again.returncode == 0, again.stderr
    assert len(sim.sim.stats.snapshot()) == calls


def test_charset_bytes_are_stored_unchanged(tmp_path: Path, start_cdp_sim: Any) -> None:
    sim = start_cdp_sim(api_key=API_KEY, serve_charset="GBK", polls_to_finish=1, file_ext="")
    cfg = cdp_config(tmp_path, sim.url, [TAG_KEY], charset="GBK")
    result = run_cli("backfill", "-c", str(cfg), "--days", "0.1", **ENV)
    assert result.returncode == 0, result.stderr
    assert_clean(sim, result)
    manifest = assert_exact(sim, today_folder(tmp_path, "tag_key"))
    assert manifest["charset"] == "GBK" and manifest["parts"][0]["name"] == "part-00000.csv"


def test_token_expiry_mid_run(tmp_path: Path, start_cdp_sim: Any) -> None:
    sim = start_cdp_sim(api_key=API_KEY, token_max_uses=2, uris_per_job=3, polls_to_finish=2)
    cfg = cdp_config(tmp_path, sim.url, [SEGMENT, TAG_ID])
    result = run_cli("backfill", "-c", str(cfg), "--days", "0.1", **ENV)
    assert result.returncode == 0, result.stderr
    assert_clean(sim, result)
    assert_exact(sim, today_folder(tmp_path, "segment_users"))
    assert_exact(sim, today_folder(tmp_path, "tag_id"))
    stats = sim.sim.stats
    assert stats.count("dead_token") > 0  # tokens did die under the client
    # A dead token is not kept in use: only requests already in flight when it died (at most
    # concurrency.downloads + concurrency.partitions = 8) are refused with it.
    assert max(stats.refusals_per_token().values()) <= 8
    # One refresh per death, shared: not one per refused request.
    assert stats.count("ok", "/accounts/oauth/access_token") <= stats.count("dead_token") + 1


def test_transient_faults_are_retried(tmp_path: Path, start_cdp_sim: Any) -> None:
    sim = start_cdp_sim(api_key=API_KEY, polls_to_finish=1, rows_per_file=2000)
    faults = sim.sim.config.faults
    faults.token_500, faults.graphql_500, faults.download_500, faults.drop = 1, 2, 1, 1
    cfg = cdp_config(tmp_path, sim.url, [ANALYSIS])
    result = run_cli("backfill", "-c", str(cfg), "--days", "0.1", **ENV)
    assert result.returncode == 0, result.stderr
    assert_clean(sim, result)
    assert_exact(sim, today_folder(tmp_path, "analysis"))
    assert len(mutations(sim)) == 1  # 5xx are not job failures


def test_error_once_then_a_new_job(tmp_path: Path, start_cdp_sim: Any) -> None:
    sim = start_cdp_sim(api_key=API_KEY, polls_to_finish=1)
    sim.sim.config.faults.submit_error = 1
    sim.sim.config.faults.job_error = 1
    cfg = cdp_config(tmp_path, sim.url, [SEGMENT])
    result = run_cli("backfill", "-c", str(cfg), "--days", "0.1", **ENV)
    assert result.returncode == 0, result.stderr
    assert_clean(sim, result)
    assert len(mutations(sim)) == 3  # ERROR at submit, ERROR when polled, then success
    out = result.stdout + result.stderr
    assert "导出任务提交失败" in out or "\\u5bfc\\u51fa" in out  # the vendor's message
    assert_exact(sim, today_folder(tmp_path, "segment_users"))


def test_every_job_failing_exits_1(tmp_path: Path, start_cdp_sim: Any) -> None:
    sim = start_cdp_sim(api_key=API_KEY, polls_to_finish=1)
    sim.sim.config.faults.graphql_errors = 100  # a GraphQL error answer, every time
    cfg = cdp_config(tmp_path, sim.url, [TAG_ID])
    result = run_cli("backfill", "-c", str(cfg), "--days", "0.1", **ENV)
    assert result.returncode == 1
    assert_clean(sim, result)
    failed = [line for line in result.stderr.splitlines() if line.startswith("  failed")]
    assert len(failed) == 1 and "GraphQL error" in failed[0] and "系统繁忙" in failed[0]
    assert sim.sim.stats.count("fault_errors") == 4  # retry.max_job_attempts
    assert not today_folder(tmp_path, "tag_id").exists()


def test_wrong_api_key_one_line_exit_1(tmp_path: Path, start_cdp_sim: Any) -> None:
    sim = start_cdp_sim(api_key="the-right-key", polls_to_finish=1)
    cfg = cdp_config(tmp_path, sim.url, [SEGMENT, TAG_KEY])
    result = run_cli("backfill", "-c", str(cfg), "--days", "0.1", **ENV)
    assert result.returncode == 1, result.stderr
    assert_clean(sim, result)
    stopped = [line for line in result.stderr.splitlines() if "cdp.api_key" in line]
    assert len(stopped) == 1 and stopped[0].startswith("gio-downloader: stopped:")
    assert sim.sim.stats.count("wrong_api_key") <= 2
    assert sim.sim.stats.snapshot("/graphql") == []


def test_unreachable_platform_fails_fast(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    cfg = cdp_config(tmp_path, url, [SEGMENT])
    started = time.monotonic()
    result = run_cli("backfill", "-c", str(cfg), "--days", "0.1", timeout=60, **ENV)
    assert time.monotonic() - started < 20
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    stopped = [line for line in result.stderr.splitlines()
               if line.startswith("gio-downloader: stopped:")]
    assert len(stopped) == 1 and "cannot reach the CDP platform" in stopped[0]
    assert "connection refused" in stopped[0] and url in stopped[0]
    assert len(result.stderr.strip().splitlines()) <= 5


def test_relative_and_dotdot_uris_are_refused(tmp_path: Path, start_cdp_sim: Any) -> None:
    sim = start_cdp_sim(api_key=API_KEY, polls_to_finish=1)
    sim.sim.config.faults.relative_uri = 1
    sim.sim.config.faults.dotdot_uri = 1
    cfg = cdp_config(tmp_path, sim.url, [TAG_KEY, ANALYSIS])
    result = run_cli("backfill", "-c", str(cfg), "--days", "0.1", **ENV)
    assert result.returncode == 1
    assert_clean(sim, result)
    failed = [line for line in result.stderr.splitlines() if line.startswith("  failed")]
    assert len(failed) == 2 and all("refusing result uri" in line for line in failed)
    assert sim.sim.stats.snapshot("/download") == []  # never followed
    assert sim.sim.stats.count("flawed_uri") == 0


def test_kill_during_download_resumes_the_same_job(tmp_path: Path,
                                                   start_cdp_sim: Any) -> None:
    sim = start_cdp_sim(api_key=API_KEY, polls_to_finish=1, rows_per_file=4000, uris_per_job=2)
    cfg = cdp_config(tmp_path, sim.url, [SEGMENT])
    killed = run_cli("backfill", "-c", str(cfg), "--days", "0.1",
                     GIO_DOWNLOADER_KILL_AFTER_BYTES="1", **ENV)
    assert killed.returncode == -signal.SIGKILL
    assert len(sim.sim.stats.snapshot("/download")) >= 1
    assert not (today_folder(tmp_path, "segment_users") / "_SUCCESS").exists()
    assert len(mutations(sim)) == 1
    job_id = polls(sim)[0].subject
    sim.sim.stats.clear()  # the restart's calls only (two processes share no rate window)
    result = run_cli("backfill", "-c", str(cfg), "--days", "0.1", **ENV)
    assert result.returncode == 0, result.stderr
    assert_clean(sim, result)
    assert mutations(sim) == []  # the restart polled the recorded job
    assert {c.subject for c in polls(sim)} == {job_id}
    assert_exact(sim, today_folder(tmp_path, "segment_users"))
    leftovers = [p for p in (tmp_path / "data").rglob(".*")]
    assert leftovers == []


def test_kill_during_polling_repolls_the_same_job(tmp_path: Path, start_cdp_sim: Any) -> None:
    sim = start_cdp_sim(api_key=API_KEY, polls_to_finish=3)
    cfg = cdp_config(tmp_path, sim.url, [TAG_ID])
    proc = start_cli("backfill", "-c", str(cfg), "--days", "0.1", **ENV)
    try:
        deadline = time.monotonic() + 30
        while not polls(sim) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert polls(sim), "the job was never polled"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert len(mutations(sim)) == 1
    job_id = polls(sim)[0].subject
    sim.sim.stats.clear()  # the restart's calls only (two processes share no rate window)
    result = run_cli("backfill", "-c", str(cfg), "--days", "0.1", **ENV)
    assert result.returncode == 0, result.stderr
    assert_clean(sim, result)
    assert mutations(sim) == []  # no second mutation
    assert {c.subject for c in polls(sim)} == {job_id}
    manifest = assert_exact(sim, today_folder(tmp_path, "tag_id"))
    assert manifest["job_id"] == job_id


def test_daemon_takes_todays_snapshot(tmp_path: Path, start_cdp_sim: Any) -> None:
    sim = start_cdp_sim(api_key=API_KEY, polls_to_finish=1)
    cfg = cdp_config(tmp_path, sim.url, [TAG_KEY])
    success = today_folder(tmp_path, "tag_key") / "_SUCCESS"
    proc = start_cli("run", "-c", str(cfg), **ENV)
    try:
        deadline = time.monotonic() + 40
        while not success.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert success.exists(), "the daemon did not take today's snapshot"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in out + err and API_KEY not in out + err
    assert_exact(sim, today_folder(tmp_path, "tag_key"))
    assert len(mutations(sim)) == 1
