"""The references of issue 13, as contender pieces: what a user would script instead of the
downloader (aria2c -j8, then sha256sum, gzip -t, sync) and the machine's one-core limits over
the same bytes (bench/limits.py), with the checks that their outputs are right."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tools import Partition, aria2c_cmd, part_name, verify_local

BENCH = Path(__file__).resolve().parent


def script(part: Partition, d: Path, *steps: str) -> list[str]:
    """What a user would script instead: aria2c -j8, then ``steps`` over the parts in ``d``."""
    then = " && ".join(steps)
    return ["sh", "-c", f'"$@" && cd "$0" && {then}', str(d),
            *aria2c_cmd(part, d, d / "links.txt")]


def limit(kind: str, files: list[Path]) -> Any:
    """A one-core reference over the parts already on disk (bench/limits.py)."""
    return lambda d: [sys.executable, str(BENCH / "limits.py"), kind, str(d / "out.json"),
                      *map(str, files)]


def check_limit(part: Partition, kind: str) -> Any:
    def verify(d: Path, sha: bool) -> tuple[bool, str, int]:
        try:
            out = json.loads((d / "out.json").read_text())
        except (OSError, ValueError) as exc:
            return False, f"no output: {exc}", 0
        names = {part_name(int(p["index"])): p for p in part.expected}
        if kind == "sha256":
            bad = [n for n, p in names.items() if out.get(n) != p["sha256"]]
        else:
            bad = [n for n in names if not isinstance(out.get(n), int) or out[n] <= 0]
        return not bad, f"{kind} of {bad[:2]} wrong" if bad else "", part.total_bytes

    return verify


def check_sums(part: Partition) -> Any:
    """The script's own SHA256SUMS must name every part with the simulator's hash."""
    def verify(d: Path, sha: bool) -> tuple[bool, str, int]:
        ok, note, n = verify_local(d, part, sha)
        sums = {}
        if (d / "SHA256SUMS").is_file():
            for line in (d / "SHA256SUMS").read_text().splitlines():
                digest, _, name = line.partition("  ")
                sums[name] = digest
        want = {part_name(int(p["index"])): p["sha256"] for p in part.expected}
        if ok and sums != want:
            ok, note = False, "SHA256SUMS differs from the simulator's hashes"
        return ok, note, n

    return verify
