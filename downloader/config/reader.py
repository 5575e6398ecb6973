"""Walking the YAML document: one mapping at a time, the dotted key remembered for messages,
``${VAR}`` and ``${VAR:-default}`` expanded from the environment, every mistake one line."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from downloader.config.model import ConfigError

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class Reader:
    """Walks one mapping of the YAML document, remembering the dotted key for messages."""

    def __init__(self, file: Path, data: Any, where: str) -> None:
        self.file = file
        self.where = where
        if not isinstance(data, dict):
            self.fail(where or "top level", "must be a mapping")
        self.data: dict[str, Any] = data
        self.used: set[str] = set()

    def fail(self, key: str, message: str) -> None:
        raise ConfigError(f"{self.file}: {key}: {message}")

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def raw(self, name: str, default: Any = None, required: bool = False) -> Any:
        self.used.add(name)
        if name not in self.data or self.data[name] is None:
            if required:
                self.fail(self.key(name), "is required")
            return default
        return expand(self.data[name], self.file, self.key(name))

    def string(self, name: str, default: str | None = None, required: bool = False) -> Any:
        value = self.raw(name, default, required)
        if value is not None and (isinstance(value, bool) or not isinstance(value, str | int)):
            self.fail(self.key(name), "must be a string")
        if value is not None:
            value = str(value)
            if required and not value.strip():
                self.fail(self.key(name), "must not be empty")
        return value

    def number(self, name: str, default: float, minimum: float, maximum: float | None = None,
               integer: bool = False) -> Any:
        value = self.raw(name, default)
        if isinstance(value, str):
            try:
                value = float(value) if not integer else int(value)
            except ValueError:
                self.fail(self.key(name), f"must be a number, not {value!r}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(self.key(name), "must be a number")
        if not math.isfinite(value):
            self.fail(self.key(name), f"must be a finite number, not {value}")
        if integer and int(value) != value:
            self.fail(self.key(name), "must be a whole number")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum:g} and {maximum:g}" if maximum is not None else \
                f"at least {minimum:g}"
            self.fail(self.key(name), f"must be {bound}, not {value}")
        return int(value) if integer else float(value)

    def section(self, name: str) -> Reader:
        self.used.add(name)
        value = self.data.get(name)
        return Reader(self.file, {} if value is None else value, self.key(name))

    def done(self) -> None:
        unknown = sorted(set(map(str, self.data)) - self.used)
        if unknown:
            self.fail(self.key(unknown[0]), "unknown key")


    def secret(self, name: str, required: bool = False) -> Any:
        """A token or key: it goes into an HTTP header, so surrounding whitespace or a control
        character (a Kubernetes secret made from a file keeps its trailing newline) is a
        mistake, said without showing the value."""
        value = self.string(name, required=required)
        if value is not None and (value != value.strip() or
                                  any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)):
            self.fail(self.key(name), "contains whitespace at an end or a control character "
                      "(a trailing newline from a file?): remove it")
        return value

    def id_list(self, name: str, pattern: re.Pattern[str], what: str) -> tuple[str, ...]:
        """A list of ids (a single id is accepted as a list of one); duplicates dropped."""
        value = self.raw(name)
        if value is None:
            return ()
        if isinstance(value, str | int) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list):
            self.fail(self.key(name), f"must be a list of {what}")
        out: list[str] = []
        for item in value:
            text = str(item) if isinstance(item, str | int) and not isinstance(item, bool) \
                else None
            if text is None or not pattern.match(text):
                self.fail(self.key(name), f"{item!r} is not {what}")
                continue
            if text not in out:
                out.append(text)
        return tuple(out)

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.raw(name, default)
        if not isinstance(value, bool):
            self.fail(self.key(name), f"must be true or false, not {value!r}")
        return value


def expand(value: Any, file: Path, key: str) -> Any:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in strings from the environment."""
    if not isinstance(value, str):
        return value

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name)
        # Like the shell: ${VAR:-default} also applies when VAR is set but empty.
        if default is not None and not value:
            return default
        if value is not None:
            return value
        raise ConfigError(f"{file}: {key}: environment variable {name} is not set")

    return _ENV_REF.sub(sub, value)


def string_list(reader: Reader, name: str, allowed: tuple[str, ...],
                 all_word: bool) -> tuple[str, ...]:
    value = reader.raw(name, list(allowed) if name == "export_types" else None,
                       required=name == "data_types")
    key = reader.key(name)
    if all_word and value == "all":
        return allowed
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        reader.fail(key, "must be a non-empty list" + (" or the word all" if all_word else ""))
    out: list[str] = []
    for item in value:
        if item not in allowed:
            reader.fail(key, f"unknown value {item!r} (expected one of {', '.join(allowed)})")
        if item not in out:
            out.append(item)
    # Keep the vendor's order so a type list is a stable key.
    return tuple(t for t in allowed if t in out)


def check_url(reader: Reader, name: str, value: str, schemes: tuple[str, ...]) -> None:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not (parts.netloc or parts.scheme == "file"):
        reader.fail(reader.key(name), f"{value!r} is not a {'/'.join(schemes)} URL")
