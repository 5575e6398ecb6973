"""config.example.yaml says it lists every key: it is checked against the keys the parser reads,
so a new setting cannot be added without documenting it there."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from downloader.config import reader
from downloader.config.load import load_config

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.yaml"


def _keys(data: Any, where: str = "") -> set[str]:
    out: set[str] = set()
    if isinstance(data, dict):
        for name, value in data.items():
            key = f"{where}.{name}" if where else str(name)
            out.add(key)
            out |= _keys(value, key)
    elif isinstance(data, list):
        for value in data:
            out |= _keys(value, f"{where}[]")
    return out


def test_the_example_names_every_key_the_parser_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIO_TOKEN", "example-token")
    monkeypatch.setenv("GIO_CDP_API_KEY", "example-key")
    monkeypatch.delenv("GIO_CLIENT_ID", raising=False)  # optional: ${GIO_CLIENT_ID:-}
    read: set[str] = set()
    original = reader.Reader.raw

    def recording(self: reader.Reader, name: str, *args: Any, **kwargs: Any) -> Any:
        read.add(re.sub(r"\[\d+\]", "[]", self.key(name)))
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(reader.Reader, "raw", recording)
    cfg = load_config(EXAMPLE)
    assert cfg.projects and cfg.reports and cfg.cdp is not None and cfg.api is not None
    assert cfg.api.client_id is None
    documented = _keys(yaml.safe_load(EXAMPLE.read_text()))
    assert read, "the parser read nothing?"
    missing = sorted(read - documented)
    assert missing == [], f"keys the parser reads that config.example.yaml lacks: {missing}"
