"""Download links: opaque, expiring, HMAC-signed, as a presigned object-store URL would be."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

NONCE_BYTES = 16


class BadLink(Exception):
    pass


class LinkSigner:
    """Opaque, expiring, HMAC-signed download links; the secret lives only in this process.

    The part identity is encrypted (HMAC-SHA256 keystream keyed by a per-link nonce), so link
    text reveals nothing and differs on every issuance.
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

    def _sign(self, nonce: bytes, plain: bytes, expires_ms: int) -> str:
        msg = nonce + plain + b"|" + str(expires_ms).encode()
        return hmac.new(self._mac_key, msg, hashlib.sha256).hexdigest()

    def issue(self, part_key: str, index: int, expires_ms: int) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        plain = f"{part_key}|{index}".encode()
        cipher = bytes(
            a ^ b for a, b in zip(plain, self._keystream(nonce, len(plain)), strict=True)
        )
        blob = base64.urlsafe_b64encode(nonce + cipher).decode().rstrip("=")
        signature = self._sign(nonce, plain, expires_ms)
        return f"/download/{blob}?Expires={expires_ms}&Signature={signature}"

    def verify(self, blob: str, expires: str, signature: str) -> tuple[str, int, int]:
        """Return (part_key, index, expires_ms) or raise BadLink."""
        try:
            raw = base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4))
            expires_ms = int(expires)
        except ValueError as exc:
            raise BadLink from exc
        nonce, cipher = raw[:NONCE_BYTES], raw[NONCE_BYTES:]
        plain = bytes(
            a ^ b for a, b in zip(cipher, self._keystream(nonce, len(cipher)), strict=True)
        )
        if len(nonce) != NONCE_BYTES or not hmac.compare_digest(
            self._sign(nonce, plain, expires_ms), signature
        ):
            raise BadLink
        part_key, _, index = plain.decode().rpartition("|")
        return part_key, int(index), expires_ms
