"""The command line: one-line errors with exit 2, nothing written, for every kind of bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from downloader.cli import main


def good_config(tmp_path: Path) -> dict[str, Any]:
    return {
        "api": {"base_url": "http://127.0.0.1:9", "token": "${GIO_CLI_TOKEN}"},
        "projects": [{"ai": "cli00001", "data_types": ["page"], "export_types": ["hour"]}],
        "storage": {"url": (tmp_path / "out" / "data").as_uri()},
        "checkpoint": str(tmp_path / "out" / "state" / "cp.db"),
    }


def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
        *args: str) -> tuple[int, str, str]:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    code = main(["backfill", "-c", str(cfg), "--from", "2026010100", "--to", "2026010101",
                 *args])
    out, err = capsys.readouterr()
    return code, out, err


def dump(cfg: dict[str, Any]) -> str:
    return yaml.safe_dump(cfg)


BAD_CONFIGS: list[tuple[str, Any, str]] = [
    ("malformed-yaml", "api: [unclosed", "malformed YAML"),
    ("unknown-key", lambda c: c["api"].update(tokn="x"), "api.tokn: unknown key"),
    ("missing-env", lambda c: c["api"].update(token="${GIO_NOT_SET_ANYWHERE}"),
     "GIO_NOT_SET_ANYWHERE"),
    ("unknown-type", lambda c: c["projects"][0].update(data_types=["pages"]),
     "projects[0].data_types"),
    ("bad-url", lambda c: c["api"].update(base_url="www.growingio.com"), "api.base_url"),
    ("bad-storage", lambda c: c["storage"].update(url="ftp://x/y"), "storage.url"),
    ("unwritable-storage", lambda c: c["storage"].update(url="file:///proc/gio-test/data"),
     "storage.url"),
    ("unwritable-checkpoint", lambda c: c.update(checkpoint="/proc/gio-test/cp.db"),
     "checkpoint"),
]


@pytest.mark.parametrize(("name", "change", "expect"), BAD_CONFIGS,
                         ids=[b[0] for b in BAD_CONFIGS])
def test_bad_config_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch, name: str,
                                          change: Any, expect: str) -> None:
    monkeypatch.setenv("GIO_CLI_TOKEN", "secret-cli-token")
    if isinstance(change, str):
        text = change
    else:
        cfg = good_config(tmp_path)
        change(cfg)
        text = dump(cfg)
    code, out, err = run(tmp_path, capsys, text)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert expect in lines[0]
    assert "Traceback" not in err and "secret-cli-token" not in err
    assert not (tmp_path / "out").exists(), "nothing may be written on a config error"


USAGE: list[tuple[list[str], str]] = [
    (["backfill", "-c", "x.yaml", "--from", "2026013299"], "not a valid date"),
    (["backfill", "-c", "x.yaml", "--from", "20260101"], "yyyyMMddHH"),
    (["backfill", "-c", "x.yaml", "--days", "3", "--from", "2026010100"], "either --days"),
    (["backfill", "-c", "x.yaml", "--from", "2026010105", "--to", "2026010100"], "before"),
    (["backfill", "-c", "x.yaml", "--to", "2026010100"], "--to needs --from"),
    (["backfill", "-c", "x.yaml", "--days", "0"], "--days must be positive"),
    (["backfill"], "required"),
    (["explode"], "invalid choice"),
    ([], "required"),
]


@pytest.mark.parametrize(("argv", "expect"), USAGE, ids=[" ".join(a) or "none" for a, _ in USAGE])
def test_usage_errors_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch, argv: list[str],
                                           expect: str) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIO_CLI_TOKEN", "t")
    (tmp_path / "x.yaml").write_text(dump(good_config(tmp_path)))
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], err
    assert not (tmp_path / "out").exists()


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["status", "-c", str(tmp_path / "nope.yaml")])
    _, err = capsys.readouterr()
    assert code == 2 and err.strip() == f"gio-downloader: error: {tmp_path / 'nope.yaml'}: " \
                                        "config file not found"


def test_status_on_a_fresh_checkpoint_writes_nothing(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIO_CLI_TOKEN", "t")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(dump(good_config(tmp_path)))
    assert main(["status", "-c", str(cfg)]) == 0
    out, _ = capsys.readouterr()
    assert "project cli00001" in out and "none yet" in out
    assert not (tmp_path / "out").exists()


def test_python_m_downloader_is_the_same_program() -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "downloader", "--version"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("gio-downloader ")
