"""Structum environment variables: ``STRUCTUM_<NAMESPACE>__<KEY>[__<SUB>...]``.

Dynaconf's own env loader is not used: it upper-cases keys, knows nothing of
namespaces, reads the environment once at load time (Structum reads it whenever a
value is resolved, so a variable set later still counts) and evaluates
``@format``/``@read_file`` tokens in values.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["EnvOverride", "parse_env_value", "scan_environ"]


@dataclass(frozen=True, slots=True)
class EnvOverride:
    name: str  # the variable, e.g. STRUCTUM_DATABASE__POOL_SIZE
    namespace: str  # "database"
    path: tuple[str, ...]  # ("pool_size",)
    raw: str  # the exact text of the variable
    value: Any  # the text parsed as a TOML value


def scan_environ(
    prefix: str, *, exclude: frozenset[str] = frozenset(), environ: Mapping[str, str] | None = None
) -> list[EnvOverride]:
    """The overrides in the environment, shallow paths first so that deeper ones merge over them."""
    start = f"{prefix.upper()}_"
    found: list[EnvOverride] = []
    for name, raw in (os.environ if environ is None else environ).items():
        if not name.startswith(start) or name in exclude:
            continue
        parts = name[len(start) :].split("__")
        # Without "__" there is no key (STRUCTUM_ENV, STRUCTUM_DEBUG): not a namespace value.
        if len(parts) < 2 or not all(parts):
            continue
        namespace, *keys = (part.lower() for part in parts)
        found.append(EnvOverride(name, namespace, tuple(keys), raw, parse_env_value(raw)))
    found.sort(key=lambda item: (len(item.path), item.name))
    return found


def parse_env_value(text: str) -> Any:
    """``text`` as a TOML value (``20`` -> 20, ``true`` -> True, ``[1, 2]``, ``{a = 1}``), else the text itself."""
    candidate = text.strip()
    if candidate in ("True", "False"):  # shell habit; Dynaconf reads these as booleans too
        return candidate == "True"
    if not candidate or "\n" in candidate or "\r" in candidate:
        return text
    try:
        parsed = tomllib.loads(f"value = {candidate}")
    except tomllib.TOMLDecodeError:
        return text
    if list(parsed) != ["value"] or _ends_in_comment(candidate):
        return text
    return parsed["value"]


def _ends_in_comment(candidate: str) -> bool:
    # A '#' outside a string starts a TOML comment, so "123#abc" parses as 123 and a
    # password would be cut short. A value that still parses with a stray quote
    # appended ends in a comment, which swallowed the quote.
    try:
        tomllib.loads(f'value = {candidate} "')
    except tomllib.TOMLDecodeError:
        return False
    return True
