"""What the engine tells observers: one small immutable record per event.

The engine emits these once for every backend, sync and asyncio, through the event
hooks of ``hookspecs.py``. They carry the SQL as the application wrote it (placeholders,
never values; ``params`` is there for an observer that is explicitly asked to log
values) and the translated error, whose message has secrets masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .protocols import Params

__all__ = ["ConnectionEvent", "StatementEvent", "TransactionEvent"]


@dataclass(frozen=True, slots=True)
class StatementEvent:
    """A statement ran (or failed): ``execute``, ``executemany``, ``stream``, COPY, and the
    transaction control statements (``COMMIT``, ``ROLLBACK``, ``SAVEPOINT``, ...).

    - ``sql``: the statement as written, with its placeholders (``COMMIT`` and the like for
      transaction control); ``operation``: its first keyword in capitals (``SELECT``,
      ``INSERT``, ``COMMIT``, ``ROLLBACK``, ``SAVEPOINT``, ``RELEASE``, ``COPY``...).
    - ``duration_s``: from sending to the result (for a pipelined statement: its batch's
      round trip); ``rowcount``: rows affected or returned, -1 when unknown or on error.
    - ``error``: the :class:`DatabaseError` raised to the caller, or None; ``sqlstate``:
      its SQLSTATE when the server gave one.
    - ``params``: the parameters (never log or export them unless asked to);
      ``batch``: parameter sets of an ``executemany``, statements of a pipelined batch, else 1.
    - ``in_transaction``: inside ``transaction()``/``get_connection()`` (False for ``db.execute()``).
    - ``kind``: ``execute``, ``executemany``, ``pipelined`` (sent in a batch of a
      ``transaction(pipeline=True)`` block), ``stream``, ``copy`` or ``control`` (COMMIT,
      ROLLBACK and the savepoint statements).

    ``sql`` and the error's message have the database's secrets masked.
    """

    sql: str
    operation: str
    duration_s: float
    rowcount: int = -1
    error: BaseException | None = None
    sqlstate: str | None = None
    params: Params = None
    batch: int = 1
    in_transaction: bool = True
    kind: Literal["execute", "executemany", "pipelined", "stream", "copy", "control"] = "execute"

    @property
    def error_type(self) -> str | None:
        """The error's class name (``IntegrityError``...), the ``error.type`` of OpenTelemetry."""
        return None if self.error is None else type(self.error).__name__


@dataclass(frozen=True, slots=True)
class TransactionEvent:
    """A transaction (or a savepoint, ``savepoint=True``) began, committed or rolled back.

    ``duration_s`` is 0 for ``begin``, else the time since the transaction began;
    ``error`` is the exception that rolled it back (None for an explicit rollback).
    """

    phase: Literal["begin", "commit", "rollback"]
    savepoint: bool = False
    duration_s: float = 0.0
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """A connection was opened by the pool (``created``, with the time it took), closed
    (``closed``) or found dead (``lost``)."""

    kind: Literal["created", "closed", "lost"]
    duration_s: float = 0.0
