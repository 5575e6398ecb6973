"""Access tokens of the CDP simulator: issued for the API key, dying after N uses or seconds.

API §6.2 documents only "on 401, get a new token"; lifetimes here are knobs so a client's
refresh path runs in tests. A token is checked (and a use counted) on every /graphql call and
every download that presents it.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from downloader.sim.cdp.state import CdpSimConfig, Outcome

__all__ = ["TokenBook", "TokenCheck"]

TOKEN_BYTES = 24
AUTH_SCHEME = "Token "


@dataclass
class _Token:
    serial: int
    issued: datetime
    uses: int = 0
    revoked: bool = False


@dataclass(frozen=True)
class TokenCheck:
    """The verdict on one request's Authorization header."""

    outcome: str  # Outcome.OK, NO_TOKEN, UNKNOWN_TOKEN or DEAD_TOKEN
    serial: int | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == Outcome.OK


@dataclass
class TokenBook:
    config: CdpSimConfig
    now: Callable[[], datetime]
    _tokens: dict[str, _Token] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def issue(self) -> tuple[str, int]:
        """A new token and its serial number (the name stats give it)."""
        with self._lock:
            token = secrets.token_urlsafe(TOKEN_BYTES)
            serial = len(self._tokens) + 1
            self._tokens[token] = _Token(serial, self.now())
            return token, serial

    def check(self, authorization: str | None) -> TokenCheck:
        """Judge `Authorization: Token <t>` and count one use of a live token."""
        if not authorization or not authorization.startswith(AUTH_SCHEME):
            return TokenCheck(Outcome.NO_TOKEN)
        with self._lock:
            record = self._tokens.get(authorization[len(AUTH_SCHEME) :])
            if record is None:
                return TokenCheck(Outcome.UNKNOWN_TOKEN)
            if self._dead(record):
                return TokenCheck(Outcome.DEAD_TOKEN, record.serial)
            record.uses += 1
            return TokenCheck(Outcome.OK, record.serial)

    def _dead(self, record: _Token) -> bool:
        cfg = self.config
        if record.revoked:
            return True
        if cfg.token_max_uses is not None and record.uses >= cfg.token_max_uses:
            return True
        if cfg.token_ttl_seconds is not None:
            age = (self.now() - record.issued).total_seconds()
            return age >= cfg.token_ttl_seconds
        return False

    def expire_all(self) -> int:
        """Kill every token issued so far (as a platform restart would); return how many."""
        with self._lock:
            for record in self._tokens.values():
                record.revoked = True
            return len(self._tokens)

    @property
    def issued(self) -> int:
        with self._lock:
            return len(self._tokens)
