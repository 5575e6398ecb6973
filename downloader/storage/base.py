"""Where parts go. One interface, the worker does not know which implementation it talks to.

The sinks follow restic's save sequence: temporary name → stream → check size and gzip →
durable → (checkpoint) → final name; see ``local`` and ``s3``.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any, Protocol

from downloader.core.constants import TEMP_PREFIX, TEMP_SUFFIX, VALIDATOR_SUFFIX
from downloader.core.model import StoredPart


class StorageError(Exception):
    """A permanent storage problem (disk full, permission denied, missing bucket)."""


class PartSink(Protocol):
    """One part being stored. ``offset`` is how many bytes are already stored (resume point).

    ``write`` takes the next bytes as the chunks they arrived in (not joined: a copy of every
    byte on the event loop is what joining would cost). ``finish`` checks them and makes them
    durable without showing them under the part's final name; the worker then records the part
    in the checkpoint, and ``publish`` gives it its final name. A crash between the two leaves
    a recorded part that ``Storage.recover_part`` publishes without fetching it again."""

    offset: int

    async def write(self, chunks: Sequence[bytes]) -> None: ...

    async def settle(self) -> int: ...

    async def reset(self) -> None: ...

    # What identifies the version of the bytes stored so far (the first response's ETag or
    # Last-Modified) and the part's full size: a resume is asked with If-Range on it, so bytes of
    # two versions of a part are never spliced. Kept beside a local ``.partial`` (a restart
    # resumes only when it is there); S3 parts restart at byte 0 after a restart anyway.
    validator: str | None
    total: int | None

    async def remember(self, validator: str | None, total: int | None) -> None: ...

    async def finish(self, expected_size: int | None) -> StoredPart: ...

    async def publish(self) -> None: ...

    async def close(self) -> None: ...


class Storage(Protocol):
    """Files go to ``folder`` (a relative path the source chose, ``a=1/b=2``) below the root,
    under their final ``name``. ``check`` says whether parts can be stored now (start-up, and
    the daemon's readiness); it must not disturb parts being stored. ``sweep`` runs once at
    start-up, before any download, and removes what earlier runs left half-written below the
    sources' ``roots`` (the first path element of their layouts), except the parts the
    checkpoint has recorded (``keep``: their ``location``), which ``recover_part`` publishes."""

    def location(self, folder: str, name: str = "") -> str: ...

    async def check(self) -> None: ...

    async def sweep(self, keep: Collection[str], roots: Collection[str],
                    resumable: Collection[str] = (),
                    only: Collection[str] | None = None) -> int:
        """Returns how many leftovers it removed. ``resumable``: the folders of partitions the
        checkpoint still has pending, whose temporary files a restart resumes from. ``only``:
        when several instances share the storage (sharding), the folders this one may touch;
        the others' in-flight files are theirs. None: everything below ``roots``."""
        ...

    async def open_part(self, folder: str, name: str, index: int,
                        verify_gzip: bool) -> PartSink: ...

    async def recover_part(self, folder: str, part: StoredPart) -> bool: ...

    async def tidy(self, folder: str, keep: Collection[str]) -> int:
        """Remove every file of the folder that is not in ``keep`` (parts of an older version of
        the export, left-over temporary files), before its ``_SUCCESS`` is written, so a
        reader's glob sees exactly the manifest's files. Returns how many were removed."""
        ...

    async def write_success(self, folder: str, manifest: dict[str, Any]) -> None: ...

    async def manifests(self, root: str) -> list[tuple[str, bytes]]:
        """Every ``_SUCCESS`` below the layout root ``root``: (its folder, its bytes). For
        rebuilding a lost checkpoint."""
        ...

    async def close(self) -> None: ...


def temp_name(name: str) -> str:
    """The hidden name a file has while it is written: readers skip it, globs cannot match it."""
    return f"{TEMP_PREFIX}{name}{TEMP_SUFFIX}"


def validator_name(name: str) -> str:
    """The hidden file beside a local ``.partial`` that says which version its bytes are of."""
    return f"{TEMP_PREFIX}{name}{VALIDATOR_SUFFIX}"


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode()


