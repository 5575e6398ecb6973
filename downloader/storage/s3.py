"""S3 (and S3-compatible) storage: the same layout and ``_SUCCESS`` manifests as local storage,
under ``s3://bucket/prefix``. The requests, their errors and the start-up checks are in
:mod:`downloader.storage.s3client`; how one part streams into a multipart upload is in
:mod:`downloader.storage.s3parts`, with its buffers in :mod:`downloader.storage.s3buffers`.

Every request that carries data carries a checksum the server verifies, and each object's size
is compared after it is written.

Resume: incomplete multipart uploads cannot be read back, so the SHA-256 and gzip state of the
bytes they hold is lost with the process. A restart therefore aborts them (a sweep at start-up,
and once more per part when it is opened) and uploads the part again from byte 0. None are left
behind to cost money.
"""

from __future__ import annotations

from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog

from downloader.config.model import StorageConfig
from downloader.core.constants import SUCCESS_NAME
from downloader.core.integrity import CorruptPart
from downloader.core.model import StoredPart
from downloader.storage.base import PartSink, StorageError, manifest_bytes
from downloader.storage.s3buffers import BufferPool, Checksum
from downloader.storage.s3client import S3Bucket
from downloader.storage.s3parts import S3PartSink

log = structlog.get_logger("gio.s3")


class S3Storage(S3Bucket):
    """The Storage interface on ``s3://bucket/prefix``: the requests (and ``check``) are
    S3Bucket's; the buffers and the hashing threads its parts share are this object's."""

    def __init__(self, cfg: StorageConfig, threads: int) -> None:
        super().__init__(cfg, connections=threads + 4)
        self.buffers = BufferPool(threads)
        # One thread per concurrent download for hashing and gzip checks, plus a spare.
        self.pool = ThreadPoolExecutor(max_workers=threads + 1, thread_name_prefix="gio-s3")

    # --- names -------------------------------------------------------------------------------

    def object_key(self, folder: str, name: str) -> str:
        return "/".join(p for p in (self.prefix, folder, name) if p)

    def location(self, folder: str, name: str = "") -> str:
        return self.url_of(self.object_key(folder, name))

    # --- the Storage interface (check() is S3Bucket's) ---------------------------------------

    async def sweep(self, keep: Collection[str], roots: Collection[str],
                    resumable: Collection[str] = (),
                    only: Collection[str] | None = None) -> int:
        """Abort what earlier runs left uploading under ``<prefix>/<root>`` for each of the
        sources' layout roots (so none is left to cost money), but the uploads of parts the
        checkpoint has recorded. Nothing outside those roots is touched."""
        aborted = 0
        for root in sorted(roots):
            prefix = f"{self.prefix}/{root}" if self.prefix else root
            aborted += await self.abort_uploads(prefix, keep=keep, within=self._folders(only))
        log.info("storage ready", storage=self.display, endpoint=self.endpoint_display,
                 upload_checksum=self.checksum, aborted_incomplete_uploads=aborted)
        return aborted

    def _folders(self, only: Collection[str] | None) -> set[str] | None:
        """The object-key prefixes (``<prefix>/<folder>``) of the folders in ``only``."""
        return None if only is None else {self.object_key(f, "").rstrip("/") for f in only}

    async def open_part(self, folder: str, name: str, index: int,
                        verify_gzip: bool) -> PartSink:
        return await S3PartSink(self, self.buffers, self.pool, self.object_key(folder, name),
                                name, index, verify_gzip).open()

    async def recover_part(self, folder: str, part: StoredPart) -> bool:
        """A part the checkpoint calls finished: its object must be there with its size, or
        its upload must be complete-able (a crash came between the record and the completion:
        the upload is completed, not sent again)."""
        object_key = self.object_key(folder, part.name)
        try:
            size = await self.size_of(object_key)
        except StorageError as exc:
            # The part is downloaded again; if S3 is really unusable, storing it will say so.
            log.warning("cannot check a finished part", object=self.url_of(object_key),
                        error=str(exc))
            return False
        if size is not None:
            return size == part.size
        try:
            if await self._complete_leftover(object_key, part.size):
                log.info("completed an upload that an earlier run had sent",
                         object=self.url_of(object_key), bytes=part.size)
                return True
        except (StorageError, CorruptPart) as exc:
            # E.g. a server whose ListParts omits the CRC32 of each piece, which completing a
            # CRC32 upload needs: the part is fetched and uploaded again.
            log.warning("cannot complete an upload an earlier run had sent; fetching the part "
                        "again", object=self.url_of(object_key), error=str(exc))
        return False

    async def tidy(self, folder: str, keep: Collection[str]) -> int:
        prefix = self.object_key(folder, "")
        prefix = prefix if prefix.endswith("/") else prefix + "/"
        wanted = {prefix + name for name in (*keep, SUCCESS_NAME)}
        removed = 0
        for key in await self.object_keys(prefix):
            if key not in wanted and "/" not in key[len(prefix):]:
                await self.delete(key)
                removed += 1
        removed += await self.abort_uploads(prefix, keep={self.url_of(k) for k in wanted})
        return removed

    async def manifests(self, root: str) -> list[tuple[str, bytes]]:
        base = f"{self.prefix}/" if self.prefix else ""
        found: list[tuple[str, bytes]] = []
        for key in sorted(await self.object_keys(base + root)):
            if key.endswith("/" + SUCCESS_NAME):
                found.append((key[len(base):-len(SUCCESS_NAME) - 1], await self.get(key)))
        return found

    async def write_success(self, folder: str, manifest: dict[str, Any]) -> None:
        body = manifest_bytes(manifest)
        await self.put(self.object_key(folder, SUCCESS_NAME), body,
                       Checksum.of(self.checksum, body), content_type="application/json")

    async def close(self) -> None:
        await super().close()
        self.buffers.release()
        self.pool.shutdown(wait=True)
