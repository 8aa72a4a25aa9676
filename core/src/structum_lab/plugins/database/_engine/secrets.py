"""Keeping passwords out of reprs, logs and exception messages.

Drivers echo connection strings in their errors, SQLAlchemy's URL masking misses
``?password=``, and psycopg keeps the raw conninfo. So every text that leaves the
layer goes through :meth:`Secrets.scrub`, which removes both the URL-shaped secrets
(:func:`mask_url`) and the exact secret values this database was configured with.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from .._contract.url import MASK, SECRET_KEYS, mask_url

__all__ = ["CORE_LOGGERS", "DRIVER_LOGGERS", "ScrubbingFilter", "Secrets", "collect_secrets", "protect_logs"]


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

    __slots__ = ("__weakref__", "_values")

    def __init__(self, values: Iterable[str] = ()) -> None:
        # Longest first, so that a password containing another is masked whole.
        # Very short values would mask innocent text everywhere; URL masking still
        # covers them where they appear as a password.
        self._values = tuple(sorted({v for v in values if v and len(v) >= 3}, key=len, reverse=True))

    def __bool__(self) -> bool:
        return bool(self._values)

    def scrub(self, text: str) -> str:
        # The exact values first: a URL pattern stops at the first '@' or quote in a password
        # and would leave the rest of it for the value search to miss.
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        return mask_url(text)

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
                notes = getattr(current, "__notes__", None)  # printed by tracebacks too
                if isinstance(notes, list):
                    notes[:] = [self.scrub(n) if isinstance(n, str) else n for n in notes]
            current = current.__cause__ or current.__context__


class ScrubbingFilter(logging.Filter):
    """A logging filter that masks secrets in records: in the message and in the exception
    (and its chain) that a traceback would print."""

    def __init__(self, secrets: Secrets) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        _scrub_record(record, self.secrets)
        return True


def _scrub_record(record: logging.LogRecord, secrets: Secrets) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a broken format string is logging's problem to report, not ours
        message = str(record.msg)
    record.msg = secrets.scrub(message)
    record.args = None
    exc = record.exc_info[1] if record.exc_info else None
    if exc is not None:
        secrets.scrub_exception(exc)
        record.exc_text = None  # formatted again, from the scrubbed exception


class _LiveSecrets(logging.Filter):
    """One filter, shared by the driver loggers, masking the secrets of every live database.

    Logger filters see only records made by that exact logger (not by its children), so
    the backends name each logger their drivers write to. A database's secrets stay
    registered as long as its ``Secrets`` object lives; records cost nothing extra while
    no database with a secret exists, and only records that are emitted are scrubbed.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: weakref.WeakSet[Secrets] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._version = 0
        self._merged: tuple[int, Secrets] = (-1, Secrets())

    def add(self, secrets: Secrets) -> None:
        with self._lock:
            if secrets not in self.live:
                self.live.add(secrets)
                self._version += 1

    def secrets(self) -> Secrets:
        """Every live secret in one ``Secrets`` (rebuilt after a database is added; one that
        has gone away may stay masked until then, which is harmless)."""
        with self._lock:
            if self._merged[0] != self._version:
                self._merged = (self._version, Secrets(v for s in list(self.live) for v in s._values))
            return self._merged[1]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.live:
            _scrub_record(record, self.secrets())
        return True


_LIVE = _LiveSecrets()

#: The loggers every database's records may pass through: ours, and asyncio's (it logs
#: the exceptions of tasks nobody awaited, driver errors included).
CORE_LOGGERS = ("structum_lab.plugins.database", "structum_lab.plugins.database.sql", "asyncio")


#: Loggers the drivers write to, by driver name (logger filters do not apply to children,
#: so each module-level logger is listed). Connection errors pass through them unscrubbed.
DRIVER_LOGGERS: dict[str, tuple[str, ...]] = {
    "psycopg": (
        "psycopg",
        "psycopg.pool",
        "psycopg.pq",
        "psycopg.transaction",
        "psycopg.waiting",
        "psycopg.debug",
        "psycopg_pool.sched",
        "psycopg_pool.sched_async",
    ),
    "asyncpg": ("asyncpg.pool",),
    "aiosqlite": ("aiosqlite",),
}


def protect_logs(secrets: Secrets, loggers: Iterable[str | logging.Logger]) -> None:
    """Mask ``secrets`` in every record of ``loggers`` for as long as ``secrets`` lives."""
    if not secrets:
        return
    _LIVE.add(secrets)
    for item in loggers:
        logger = logging.getLogger(item) if isinstance(item, str) else item
        if _LIVE not in logger.filters:
            logger.addFilter(_LIVE)
