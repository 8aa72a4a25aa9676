"""Reading TOML config files, with errors that name the file and the position.

The parser's messages carry a position and a description, never the text of the
line, so nothing read from a secrets file can reach an exception message.
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from structum_lab.config import ConfigError

__all__ = ["ConfigFile", "read_secrets", "read_toml", "relax_inline_table_colons"]

logger = logging.getLogger("structum_lab.plugins.dynaconf")

# Tables with these names are not environments: [default] applies always and
# [global] overrides every environment (Dynaconf's layering).
RESERVED_TABLES = frozenset({"default", "global"})


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """One loaded ``config/app/<namespace>.toml``."""

    path: Path
    label: str  # the path as shown to people: relative to the root path when inside it
    namespace: str
    text: str  # what Dynaconf parses; ``data`` is the same document parsed by tomllib
    data: dict[str, Any]

    @property
    def base(self) -> dict[str, Any]:
        """Top-level keys outside any table: the lowest layer, under [default]."""
        return {k: v for k, v in self.data.items() if not isinstance(v, dict)}

    @property
    def environments(self) -> frozenset[str]:
        """The environment tables this file defines, lower case, without default/global."""
        return frozenset(k.lower() for k, v in self.data.items() if isinstance(v, dict)) - RESERVED_TABLES


def read_toml(path: Path, label: str) -> tuple[str, dict[str, Any]]:
    """The text and the parsed document of ``path``; ConfigError when it is not valid TOML."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 (invalid byte at offset {exc.start})") from None
    text = text.removeprefix("\ufeff")  # editors on Windows write a BOM; TOML parsers reject it
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        error = exc
    relaxed, positions = relax_inline_table_colons(text)
    if positions:
        try:
            data = tomllib.loads(relaxed)
        except tomllib.TOMLDecodeError as exc:
            # The rewrite keeps every offset, so this position is right for the file as
            # written, and it points past what would have been accepted anyway.
            error = exc
        else:
            line, column = _line_column(text, positions[0])
            # The user's spec shows ``connect_args = { "connect_timeout": 10 }``; a
            # JSON habit that TOML rejects. Accepting exactly that (':' between key and
            # value inside an inline table) keeps the documented example working.
            logger.warning(
                "%s is not valid TOML: an inline table uses ':' between key and value at line %d, column %d "
                "(%d place(s) in all); read as '=', but please write 'key = value'",
                label,
                line,
                column,
                len(positions),
            )
            return relaxed, data
    raise ConfigError(f"invalid TOML in {path}: {error}") from None


def read_secrets(path: Path, label: str) -> dict[str, dict[str, Any]]:
    """The ``[<namespace>]`` tables of the secrets file, keyed by lower-case namespace."""
    _, data = read_toml(path, label)
    tables: dict[str, dict[str, Any]] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            namespace = key.lower()
            tables[namespace] = {**tables.get(namespace, {}), **value}
        else:
            logger.warning(
                "ignoring top-level key %r in %s: secrets belong in a [<namespace>] table, e.g. [database]", key, label
            )
    return tables


def relax_inline_table_colons(text: str) -> tuple[str, list[int]]:
    """``text`` with JSON-style ``key: value`` inside inline tables written as ``key = value``.

    Only a ':' where an inline-table key ends is touched; colons in strings, comments,
    times (``07:32:00``) and outside inline tables stay. Returns the offsets changed.
    """
    chars = list(text)
    changed: list[int] = []
    brackets: list[str] = []
    expecting_key = False  # inside an inline table, before the key's separator
    i, end = 0, len(text)
    while i < end:
        char = text[i]
        if char == "#":
            newline = text.find("\n", i)
            i = end if newline < 0 else newline
            continue
        if char in "\"'":
            i = _string_end(text, i)
            continue
        if char in "{[":
            brackets.append(char)
            expecting_key = char == "{"
        elif char in "}]":
            if brackets:
                brackets.pop()
            expecting_key = False
        elif char == ",":
            expecting_key = bool(brackets) and brackets[-1] == "{"
        elif char == "=":
            expecting_key = False
        elif char == ":" and expecting_key:
            chars[i] = "="
            changed.append(i)
            expecting_key = False
        i += 1
    return "".join(chars), changed


def _string_end(text: str, start: int) -> int:
    """The offset just after the TOML string starting at ``start`` (end of text if unclosed)."""
    quote = text[start]
    delimiter = quote * 3 if text.startswith(quote * 3, start) else quote
    i = start + len(delimiter)
    while i < len(text):
        if quote == '"' and text[i] == "\\":
            i += 2
            continue
        if text.startswith(delimiter, i):
            i += len(delimiter)
            # A multi-line string may end with up to two extra quotes: """a"""" is 'a"'.
            while delimiter != quote and i < len(text) and text[i] == quote:
                i += 1
            return i
        if delimiter == quote and text[i] == "\n":
            return i
        i += 1
    return len(text)


def _line_column(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1
