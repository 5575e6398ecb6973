"""``gio-downloader checkpoint rebuild``: a new checkpoint from the ``_SUCCESS`` manifests in the
storage, so that nothing complete is downloaded again after the checkpoint was lost or broken.

The old file (if any) is moved aside, not deleted. Only sealed partitions come back: what was
in flight is downloaded again, which is always safe.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from downloader.config.model import Config
from downloader.core.model import StoredPart
from downloader.engine.checkpoint import Checkpoint, CheckpointError
from downloader.engine.sharding import ownership
from downloader.engine.source import Rebuildable, Source
from downloader.storage.factory import open_storage


@dataclass
class Rebuilt:
    partitions: int = 0
    manifests: int = 0
    ignored: list[str] = field(default_factory=list)  # folders whose manifest was not usable
    moved_to: Path | None = None
    not_owned: int = 0  # sharding: partitions another instance owns (left out)


def _parts(manifest: dict[str, object]) -> list[StoredPart]:
    parts = manifest.get("parts")
    if not isinstance(parts, list):
        raise ValueError("no parts list")
    return [StoredPart(i, int(p["bytes"]), str(p["sha256"]), str(p["name"]))
            for i, p in enumerate(parts)]


def _not_in_use(path: Path) -> None:
    """Refuse while a backfill or daemon holds the checkpoint (its lock is an flock)."""
    lock = path.with_name(path.name + ".lock")
    if not lock.exists():
        return
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
    except BlockingIOError:
        raise CheckpointError(f"checkpoint {path} is in use by a running gio-downloader; stop "
                              "it before rebuilding") from None
    finally:
        os.close(fd)


async def rebuild_checkpoint(cfg: Config, sources: list[Source]) -> Rebuilt:
    result = Rebuilt()
    storage = open_storage(cfg.storage, 1)
    try:
        await storage.check()
        found = [(s, folder, body) for s in sources if isinstance(s, Rebuildable)
                 for folder, body in await storage.manifests(s.root)]
    finally:
        await storage.close()
    path = cfg.checkpoint
    _not_in_use(path)
    if path.exists():
        result.moved_to = path.with_name(f"{path.name}.before-rebuild-{int(time.time())}")
        os.replace(path, result.moved_to)
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                os.replace(side, result.moved_to.with_name(result.moved_to.name + suffix))
    owns = {s.name: ownership(s, cfg.sharding) for s in sources}
    with Checkpoint(path) as checkpoint:
        for source, folder, body in found:
            result.manifests += 1
            try:
                manifest = json.loads(body)
                described = source.key_of(folder, manifest)  # type: ignore[attr-defined]
                if described is None:
                    raise ValueError("not this source's manifest")
                key, info = described
                parts = _parts(manifest)
            except (ValueError, KeyError, TypeError):
                result.ignored.append(folder)
                continue
            if not owns[source.name](key):  # the storage is shared; this checkpoint is not
                result.not_owned += 1
                continue
            checkpoint.started(key, len(parts), info, str(manifest.get("fetched_at") or ""))
            for part in parts:
                checkpoint.part_done(key, part)
            checkpoint.done(key)
            result.partitions += 1
    return result
