"""Logging: structlog, JSON lines for journald and log shippers, readable lines on a terminal.

Every event passes a redaction step that replaces secrets (the API token) and the query strings
of URLs (signed download links) before anything is rendered.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, TextIO

import structlog

MIN_SECRET_LENGTH = 6
_URL_QUERY = re.compile(r"(https?://[^\s?\"'<>]+)\?[^\s\"'<>]*")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


class Redactor:
    """Scrubs secrets from every string of an event, however deeply nested."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: tuple[str, ...] = ()
        self.set_secrets(secrets)

    def set_secrets(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is replaced whole. A "secret" of a
        # few characters (a test token like "t") would mangle every word that contains it and
        # protects nothing: real tokens are long.
        self.secrets = tuple(sorted((s for s in secrets if len(s) >= MIN_SECRET_LENGTH),
                                    key=len, reverse=True))

    def scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self.secrets:
                value = value.replace(secret, "***")
            return _URL_QUERY.sub(r"\1?***", value)
        if isinstance(value, dict):
            return {k: self.scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.scrub(v) for v in value)
        return value

    def __call__(self, logger: Any, name: str,
                 event: MutableMapping[str, Any]) -> Mapping[str, Any]:
        return {k: self.scrub(v) for k, v in event.items()}


REDACTOR = Redactor()


class _LineWriter:
    """The structlog logger: writes one rendered line, letting a live progress line step aside."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def msg(self, message: str) -> None:
        from downloader.service.progress import PROGRESS_LINE

        PROGRESS_LINE.clear()
        self.stream.write(message + "\n")
        self.stream.flush()
        PROGRESS_LINE.redraw()

    debug = info = warning = warn = error = critical = exception = log = msg


def wants_json(fmt: str, stream: TextIO) -> bool:
    if fmt == "json":
        return True
    if fmt == "console":
        return False
    return not (hasattr(stream, "isatty") and stream.isatty())


def set_level(level: str) -> None:
    """Change the level of the running configuration (SIGHUP's log.level)."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(
        _LEVELS.get(level, logging.INFO)))


def setup_logging(fmt: str = "auto", level: str = "info", secrets: Iterable[str] = (),
                  stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    REDACTOR.set_secrets(secrets)
    renderer: Any
    if wants_json(fmt, out):
        renderer = structlog.processors.JSONRenderer(ensure_ascii=False)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False, pad_event_to=28)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.processors.format_exc_info,
            REDACTOR,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=lambda *args: _LineWriter(out),
        cache_logger_on_first_use=False,
    )
