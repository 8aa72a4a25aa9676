"""The value types shared by every configuration provider."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ConfigError", "ConfigValue"]


@dataclass(frozen=True, slots=True)
class ConfigValue:
    """A resolved configuration value and where it came from.

    ``raw`` is the exact text of the environment variable when the value came from
    one, so a consumer can keep a password such as ``123456`` or ``1e5`` as the
    string it was, although the value was parsed as a TOML number.
    """

    # Values and raw texts are often passwords; a ConfigValue that ends up in a log
    # line or a traceback must not carry them along.
    value: Any = field(repr=False)
    source: str
    raw: str | None = field(default=None, repr=False)


class ConfigError(ValueError):
    """The configuration cannot be read: invalid TOML, a missing root path, a bad file.

    Messages name the file and the position, never the values.
    """
