"""``pgbouncer = true``: what PgBouncer in transaction mode breaks, refused before it is sent.

In transaction mode PgBouncer lends a server connection for one transaction (or one
autocommit statement) and then gives it to another client. Whatever a statement leaves
on the *session* outlives the transaction and reaches that other client, or is missing
from the next transaction of the same client: ``SET`` (without ``LOCAL``), session
advisory locks, ``PREPARE``, ``LISTEN``, cursors ``WITH HOLD``. psycopg's own prepared
statements are turned off by the backends (``prepare_threshold=None``).

The check runs when a SQL string is translated for the first time (a translator cache
miss), so a statement already seen costs nothing more, and a database without
``pgbouncer`` does not run it at all.
"""

from __future__ import annotations

import re
from typing import Final

from .._contract.errors import ConfigurationError, NotSupportedError
from .logs import log
from .params import Statement, Translator

__all__ = ["SessionStateGuard", "check_pgbouncer_options", "session_state_problem"]

# Literals, quoted identifiers and comments hide no statement: they are blanked before the check.
_HIDDEN: Final = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/|(\$[A-Za-z_0-9]*\$).*?\1", re.S)
_SESSION_SET: Final = re.compile(r"SET\b(?!\s+(?:LOCAL|TRANSACTION|CONSTRAINTS)\b)", re.I)
_SESSION_LOCK: Final = re.compile(r"\bpg_(?:try_)?advisory_(?:lock|unlock)(?:_shared|_all)?\s*\(", re.I)
_REFUSED: Final = (
    (
        re.compile(r"(?:PREPARE|DEALLOCATE)\b", re.I),
        "a prepared statement belongs to one server connection, and the next transaction may get another",
    ),
    (re.compile(r"(?:LISTEN|UNLISTEN)\b", re.I), "notifications go to whichever client holds the server connection"),
    (
        re.compile(r"DECLARE\b.*\bWITH\s+HOLD\b", re.I | re.S),
        "a cursor WITH HOLD outlives the transaction on a server connection another client gets next",
    ),
)
_TEMP_TABLE: Final = re.compile(r"CREATE\s+(?:(?:GLOBAL|LOCAL)\s+)?TEMP(?:ORARY)?\s+TABLE\b", re.I)
_ON_COMMIT_DROP: Final = re.compile(r"\bON\s+COMMIT\s+DROP\b", re.I)

_PREFIX: Final = "pgbouncer = true (PgBouncer in transaction mode): "


def session_state_problem(sql: str) -> str | None:
    """Why ``sql`` would leave state on a pooled server session, or None."""
    text = _HIDDEN.sub(" ", sql)
    if _SESSION_LOCK.search(text):
        return (
            "session advisory locks (pg_advisory_lock, pg_advisory_unlock, ...) stay with a server connection that "
            "other clients get next; use the transaction-level pg_advisory_xact_lock() inside a transaction"
        )
    for part in text.split(";"):
        head = part.lstrip()
        if _SESSION_SET.match(head):
            return (
                "SET changes the server session, which other clients get next; use SET LOCAL inside a "
                "transaction, or set it for the role (ALTER ROLE ... SET ...)"
            )
        for pattern, why in _REFUSED:
            if pattern.match(head):
                return why
        if _TEMP_TABLE.match(head) and not _ON_COMMIT_DROP.search(head):
            log.warning(
                "%sa temporary table without ON COMMIT DROP stays on a server connection another client may get",
                _PREFIX,
            )
    return None


class SessionStateGuard(Translator):
    """A translator that refuses session state the first time it meets a SQL string."""

    __slots__ = ()

    @classmethod
    def around(cls, translator: Translator) -> SessionStateGuard:
        return cls(translator.dialect, translator.target, cache_size=translator.cache_size, strict=translator.strict)

    def _miss(self, sql: object) -> Statement:
        if isinstance(sql, str):
            problem = session_state_problem(sql)
            if problem is not None:
                raise NotSupportedError(f"{_PREFIX}refused: {problem}")
        return super()._miss(sql)


def check_pgbouncer_options(options: dict[str, object]) -> None:
    """Options PgBouncer would drop without a word: refused, with what to do instead."""
    if options.get("statement_timeout"):
        raise ConfigurationError(
            "statement_timeout is sent as the startup parameter 'options', which PgBouncer refuses (or ignores, "
            "with ignore_startup_parameters): with pgbouncer = true set it on the server side instead, "
            "e.g. ALTER ROLE app SET statement_timeout = '5s'"
        )
