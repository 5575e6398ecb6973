"""Opens the storage a config names: local folders or S3."""

from __future__ import annotations

from downloader.config.model import StorageConfig
from downloader.storage.base import Storage, StorageError
from downloader.storage.local import LocalStorage


def open_storage(cfg: StorageConfig, threads: int) -> Storage:
    if cfg.scheme == "file":
        return LocalStorage(cfg.local_root, threads)
    if cfg.scheme == "s3":
        # Imported here: the base install works without aiobotocore (the [s3] extra).
        try:
            from downloader.storage.s3 import S3Storage
        except ImportError as exc:
            raise StorageError(f"storage.url {cfg.url}: S3 storage needs aiobotocore "
                               f"({exc.name or exc}); install the s3 extra: pip install '.[s3]' in "
                               "the checkout, or 'gio_downloader-*.whl[s3]'") from None
        return S3Storage(cfg, threads)
    raise StorageError(f"storage.url: {cfg.url}: scheme must be file:// or s3://")

