"""Keeping passwords out of reprs, logs and exception messages.

Drivers echo connection strings in their errors, SQLAlchemy's URL masking misses
``?password=``, and psycopg keeps the raw conninfo. So every text that leaves the
layer goes through :meth:`Secrets.scrub`, which removes both the URL-shaped secrets
(:func:`mask_url`) and the exact secret values this database was configured with.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from ._url import MASK, SECRET_KEYS, mask_url

__all__ = ["Secrets", "collect_secrets"]


def collect_secrets(values: Mapping[str, Any] | None) -> list[str]:
    """Secret values found in a (nested) mapping such as ``connect_args``."""
    found: list[str] = []
    if not values:
        return found
    for key, value in values.items():
        if isinstance(value, Mapping):
            found += collect_secrets(value)
        elif str(key).lower() in SECRET_KEYS and value not in (None, ""):
            found.append(str(value))
    return found


class Secrets:
    """The secret strings of one database, and the means to scrub them from text."""

    __slots__ = ("_values",)

    def __init__(self, values: Iterable[str] = ()) -> None:
        # Longest first, so that a password containing another is masked whole.
        # Very short values would mask innocent text everywhere; URL masking still
        # covers them where they appear as a password.
        self._values = tuple(sorted({v for v in values if v and len(v) >= 3}, key=len, reverse=True))

    def __bool__(self) -> bool:
        return bool(self._values)

    def scrub(self, text: str) -> str:
        text = mask_url(text)
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def scrub_exception(self, exc: BaseException) -> None:
        """Scrub the messages of ``exc`` and of its whole cause/context chain in place.

        Tracebacks print every chained exception, so scrubbing only the one we raise
        would still print the driver's message with the password in it.
        """
        seen: set[int] = set()
        current: BaseException | None = exc
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            with contextlib.suppress(AttributeError, TypeError):  # exotic exception types
                current.args = tuple(self.scrub(a) if isinstance(a, str) else a for a in current.args)
            current = current.__cause__ or current.__context__


class ScrubbingFilter(logging.Filter):
    """A logging filter that masks secrets in records (used on the driver loggers)."""

    def __init__(self, secrets: Secrets) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = self.secrets.scrub(record.getMessage())
            record.args = None
        elif isinstance(record.msg, str):
            record.msg = self.secrets.scrub(record.msg)
        return True
