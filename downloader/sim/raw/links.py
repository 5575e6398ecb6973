"""Download links: opaque, expiring, HMAC-signed, as a presigned object-store URL would be."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

NONCE_BYTES = 16


class BadLink(Exception):
    pass


@dataclass(frozen=True)
class LinkTarget:
    part_key: str  # "ai/export_type/data_type/export_date"
    index: int
    deadline: float  # on the simulator's monotonic clock (real seconds)


class LinkSigner:
    """Opaque, expiring, HMAC-signed download links; the secret lives only in this process.

    The part identity and the real-time deadline are encrypted (HMAC-SHA256 keystream keyed by a
    per-link nonce), so link text reveals nothing and differs on every issuance. The visible
    `Expires` (epoch ms on the export clock) only imitates a presigned URL; the deadline decides.
    Links name a part, not a version: after a re-export they serve the new bytes, as the
    vendor's object names stay the same.
    """

    def __init__(self) -> None:
        secret = secrets.token_bytes(32)
        self._enc_key = hmac.digest(secret, b"enc", "sha256")
        self._mac_key = hmac.digest(secret, b"mac", "sha256")

    def _keystream(self, nonce: bytes, length: int) -> bytes:
        blocks = (
            hmac.digest(self._enc_key, nonce + i.to_bytes(4, "big"), "sha256")
            for i in range(length // 32 + 1)
        )
        return b"".join(blocks)[:length]

    def _xor(self, nonce: bytes, data: bytes) -> bytes:
        return bytes(a ^ b for a, b in zip(data, self._keystream(nonce, len(data)), strict=True))

    def _sign(self, nonce: bytes, plain: bytes, expires_ms: int) -> str:
        msg = nonce + plain + b"|" + str(expires_ms).encode()
        return hmac.new(self._mac_key, msg, hashlib.sha256).hexdigest()

    def issue(self, target: LinkTarget, expires_ms: int) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        plain = f"{target.part_key}|{target.index}|{target.deadline!r}".encode()
        blob = base64.urlsafe_b64encode(nonce + self._xor(nonce, plain)).decode().rstrip("=")
        signature = self._sign(nonce, plain, expires_ms)
        return f"/download/{blob}?Expires={expires_ms}&Signature={signature}"

    def verify(self, blob: str, expires: str, signature: str) -> LinkTarget:
        """The part and deadline a link names, or raise BadLink."""
        try:
            raw = base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4))
            expires_ms = int(expires)
        except ValueError as exc:
            raise BadLink from exc
        nonce, cipher = raw[:NONCE_BYTES], raw[NONCE_BYTES:]
        plain = self._xor(nonce, cipher)
        if len(nonce) != NONCE_BYTES or not hmac.compare_digest(
            self._sign(nonce, plain, expires_ms), signature
        ):
            raise BadLink
        part_key, index, deadline = plain.decode().rsplit("|", 2)
        return LinkTarget(part_key, int(index), float(deadline))
