"""`gio-downloader status --grid`: the page's cells in a terminal (downloader/service/grid.py)."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO, cli_env, run_cli
from test_page import snapshot

from downloader.core.partitions import Period
from downloader.engine.checkpoint import Checkpoint
from downloader.service.grid import STATES, render_terminal
from downloader.sources.raw.keys import raw_key

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_plain_grid_fits_80_columns_with_a_legend() -> None:
    text = render_terminal(snapshot(), 80, color=False)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "\x1b" not in text
    assert lines[1] == "  ".join(f"{letter} {name}" for letter, (name, _) in STATES.items())
    # The hour row: 3 days folded two per line, 24 letters a day, freshness on the last fold.
    page = [line for line in lines if line.startswith("  page ")]
    assert page[0].split()[1:] == ["s" * 13 + "d" * 11, "d" * 8 + "F" + "d" * 15]
    assert page[1].split()[1:] == ["d" * 9 + "W" + "pp" + "n" * 12, "2h10m"]
    # Daily items: one letter per day, the newest done day (or age) at the end.
    assert "  chart/AbC" in text and re.search(r"  chart/AbC +sdF", text)
    assert re.search(r"  page +sdn  12h10m", text)


def test_grid_folds_to_the_width_and_filters_items() -> None:
    wide = render_terminal(snapshot(), 120, color=False)
    assert max(len(line) for line in wide.splitlines()) <= 120
    assert sum(1 for line in wide.splitlines() if line.startswith("  page ")) == 2  # 1 fold + day
    only = render_terminal(snapshot(), 80, pattern="reports:*")
    assert "chart/AbC" in only and "proj0001" not in only and "Raw exports" not in only
    assert "no item matches" in render_terminal(snapshot(), 80, pattern="nothing*")


def test_terminal_control_characters_in_ids_are_not_sent_to_the_terminal() -> None:
    report = snapshot()
    report["sources"]["cdp"][0]["item"] = "tags/evil\x1b]0;pwned\x07\x1b[2J"
    text = render_terminal(report, 80, color=False)
    assert "\x1b" not in text and "\x07" not in text
    assert "evil?]0;pwned??[2J" in text


def test_colour_grid_has_the_same_letters() -> None:
    plain = render_terminal(snapshot(), 80, color=False)
    colour = render_terminal(snapshot(), 80, color=True)
    assert "\x1b[97;41;1mF\x1b[0m" in colour  # failed: white on red, still an F
    assert ANSI.sub("", colour) == plain


CONFIG = """\
api: {base_url: "http://127.0.0.1:1", token: not-a-real-token}
projects:
  - {ai: grid0001, data_types: [page, visit], export_types: [hour]}
storage: {url: "STORAGE"}
checkpoint: CHECKPOINT
schedule: {retention_days: 2}
"""


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "gio.yaml"
    path.write_text(CONFIG.replace("STORAGE", (tmp_path / "data").as_uri())
                    .replace("CHECKPOINT", str(tmp_path / "checkpoint.db")))
    with Checkpoint(tmp_path / "checkpoint.db") as cp:
        cp.done(raw_key("grid0001", "page", Period.from_label("hour", "2026011509")))
        cp.failed(raw_key("grid0001", "visit", Period.from_label("hour", "2026011509")),
                  "boom", 3)
    return path


NOW_ENV = {"GIO_DOWNLOADER_FAKE_NOW": "2026-01-15T12:10:00+08:00"}


def test_status_grid_command_plain_when_piped(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    result = run_cli("status", "-c", str(cfg), "--grid", **NOW_ENV)
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    last_fold = dict(line.split()[:2] for line in result.stdout.splitlines()[-2:])
    assert last_fold == {"page": "p" * 9 + "d" + "p" + "n" * 13,
                         "visit": "p" * 9 + "F" + "p" + "n" * 13}
    one = run_cli("status", "-c", str(cfg), "--grid", "--item", "*/visit", **NOW_ENV)
    assert "visit" in one.stdout and "  page" not in one.stdout


def test_status_grid_bad_input_is_one_line(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    for args, message in [(["--grid", "--item", "nope/*"], "no item matches 'nope/*'"),
                          (["--item", "x"], "--item and --width go with --grid"),
                          (["--grid", "--width", "10"], "--width must be between 40 and 1000"),
                          (["--grid", "--json"], "not allowed with argument")]:
        result = run_cli("status", "-c", str(cfg), *args, **NOW_ENV)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
        assert "Traceback" not in result.stderr


def test_status_grid_is_coloured_on_a_terminal(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "downloader", "status", "-c", str(cfg),
                                 "--grid"], stdout=follower, stderr=subprocess.DEVNULL, cwd=REPO,
                                env=cli_env(COLUMNS="80", **NOW_ENV))
        os.close(follower)
        chunks = []
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(leader)
    out = b"".join(chunks).decode()
    assert "\x1b[97;41;1mF\x1b[0m" in out
    assert max(len(ANSI.sub("", line).rstrip("\r")) for line in out.split("\n")) <= 80
