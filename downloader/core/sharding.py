"""Which instance owns what, when N instances share one configuration (``sharding:``).

There is no coordinator: every instance computes the same pure function. An *ownership unit*
(a raw project, a report item, a CDP export) belongs to the shard

    int.from_bytes(sha256(f"{source}/{unit}")[:8], "big") % count

so it stays stable across restarts, machines and Python versions, and the units of one config
spread evenly over the shards. ``source`` is the source's name (``raw``, ``reports``, ``cdp``):
a project id and a report id that happen to be equal still hash apart.

The index of this instance is given in the config or, on Kubernetes, found in the environment:
``JOB_COMPLETION_INDEX`` (an Indexed Job) or the ordinal at the end of the host name
(``gio-downloader-3`` in a StatefulSet).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

INDEX_ENV = "JOB_COMPLETION_INDEX"
_ORDINAL = re.compile(r"-(\d+)$")


def shard_of(source: str, unit: str, count: int) -> int:
    """The shard (0..count-1) that owns ``unit`` of ``source``."""
    if count <= 1:
        return 0
    digest = hashlib.sha256(f"{source}/{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True)
class Shard:
    """This instance's place among ``count`` instances; ``rate_share`` is the fraction of the
    per-token API budget (``api.rate_limit_per_second``) it may spend: 1/count unless the
    config says otherwise."""

    count: int = 1
    index: int = 0
    rate_share: float = 1.0

    @property
    def sharded(self) -> bool:
        return self.count > 1

    def owns(self, source: str, unit: str) -> bool:
        return self.count <= 1 or shard_of(source, unit, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def index_from_environment(environ: Mapping[str, str], hostname: str) -> int | None:
    """The index Kubernetes gives this instance: ``JOB_COMPLETION_INDEX`` first (Indexed Job),
    else the ordinal suffix of the host name (StatefulSet pod ``name-3``); None if neither."""
    value = environ.get(INDEX_ENV, "").strip()
    if value.isdigit():
        return int(value)
    match = _ORDINAL.search(hostname.split(".", 1)[0])
    return int(match.group(1)) if match else None


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` (the command line's ``--shard``) as ``(index, count)``; ValueError if not."""
    index, sep, count = text.partition("/")
    if not sep or not index.strip().isdigit() or not count.strip().isdigit():
        raise ValueError(f"--shard {text!r}: must be I/N, e.g. 0/3")
    i, n = int(index), int(count)
    if n < 1 or i >= n:
        raise ValueError(f"--shard {text!r}: the index must be 0..N-1 and N at least 1")
    return i, n
