"""The machine's limits for the per-byte work, as references: SHA-256 (hashlib) or a gzip check
(the downloader's inflate library) over the same parts, from the page cache, on one core.

    python bench/limits.py sha256 OUT.json FILE...
    python bench/limits.py inflate OUT.json FILE...   (GIO_INFLATE picks the library)

Writes {file name: sha256} (or {file name: inflated bytes}) to OUT.json so the run can be
checked like any contender's output.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

BLOCK = 1024 * 1024


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb", buffering=0) as f:
        while block := f.read(BLOCK):
            h.update(block)
    return h.hexdigest()


def inflate(path: Path) -> int:
    from downloader.core.integrity import GzipVerifier

    verifier = GzipVerifier()
    with path.open("rb", buffering=0) as f:
        while block := f.read(BLOCK):
            verifier.feed(block)
    verifier.close()
    return verifier.inflated_bytes


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] not in ("sha256", "inflate"):
        print(__doc__, file=sys.stderr)
        return 2
    job = sha256 if argv[0] == "sha256" else inflate
    out = {Path(f).name: job(Path(f)) for f in argv[2:]}
    if argv[0] == "inflate":
        from downloader.core.integrity import INFLATE_NAME

        out["library"] = INFLATE_NAME  # type: ignore[assignment]
    Path(argv[1]).write_text(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
