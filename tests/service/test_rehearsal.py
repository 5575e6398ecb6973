"""The README's rehearsal, run as written: `simulate` and `run` both under the same fake clock
at 600x, with the README's sim.yaml; the rehearsed hours land within seconds."""

from __future__ import annotations

import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO, cli_env

README = (REPO / "README.md").read_text()


def _block(containing: str) -> str:
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        if containing in block:
            return str(block)
    raise AssertionError(f"no bash block in the README contains {containing!r}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(line: str) -> list[str]:
    """`gio-downloader ARGS` as the test's interpreter runs it."""
    words = shlex.split(line.rstrip("&").strip())
    assert words[0] == "gio-downloader", line
    return [sys.executable, "-m", "downloader", *words[1:]]


def test_readme_rehearsal_downloads_within_seconds(tmp_path: Path) -> None:
    port = _free_port()
    sim_yaml = re.search(r"cat > sim.yaml <<'YAML'\n(.*?)YAML\n", README, flags=re.S)
    assert sim_yaml is not None
    (tmp_path / "sim.yaml").write_text(sim_yaml.group(1).replace("8080", str(port)))
    rehearsal = _block("GIO_DOWNLOADER_CLOCK_RATE=600").replace("8080", str(port))
    lines = [line for line in rehearsal.splitlines() if line.strip()]
    exported = shlex.split(lines[0].removeprefix("export "))
    env = cli_env(**dict(word.split("=", 1) for word in exported))
    simulate, run = _cli(lines[1]), _cli(lines[2])
    sim = subprocess.Popen(simulate, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    daemon = None
    errors: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # wait until the simulator listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        daemon = subprocess.Popen(run, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        started = time.monotonic()
        data = tmp_path / "gio-data"
        while time.monotonic() - started < 30 and not list(data.rglob("_SUCCESS")):
            time.sleep(0.2)
        first = time.monotonic() - started
        landed = list(data.rglob("_SUCCESS"))
        assert landed, "nothing landed within 30 s of the rehearsal's start"
        assert first < 15, f"the first partition took {first:.1f} s"
        # The rehearsed date, not today's: the simulator lives on the same clock.
        assert all("date=2026-11-" in str(p) for p in landed)
    finally:
        for proc in (daemon, sim):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (daemon, sim):
            if proc is not None:
                try:
                    errors[proc.pid] = proc.communicate(timeout=15)[1] or ""
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()
    assert daemon is not None and daemon.returncode == 0
    assert "Traceback" not in errors.get(daemon.pid, "") + errors.get(sim.pid, "")
