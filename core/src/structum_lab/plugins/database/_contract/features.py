"""What a driver tells the engine about itself: capability flags, pool limits, signals.

Like Django's ``DatabaseFeatures``: a driver states what its database and driver can
do, and the engine (and the conformance tests) read the flags instead of asking
which backend this is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, get_args

from .protocols import IsolationLevel

__all__ = ["ALL_ISOLATION_LEVELS", "BatchFailed", "Features", "NoRows", "PoolExhausted", "PoolLimits"]

ALL_ISOLATION_LEVELS: Final[frozenset[IsolationLevel]] = frozenset(get_args(IsolationLevel))


@dataclass(frozen=True, slots=True)
class Features:
    """Capability flags of one driver on one database (e.g. SQLAlchemy on SQLite)."""

    #: ``SAVEPOINT`` / ``RELEASE SAVEPOINT`` / ``ROLLBACK TO SAVEPOINT`` work.
    savepoints: bool = True
    #: ``INSERT ... RETURNING`` gives rows back.
    returning: bool = False
    #: ``COPY ... FROM STDIN`` bulk loads (``copy_records``).
    copy: bool = False
    #: Results can be streamed from a server-side cursor.
    server_side_cursors: bool = False
    #: ``transaction(pipeline=True)`` sends its statements together (``execute_batch``):
    #: queued until a result is read or the block ends. Without it such a block runs
    #: statement by statement, with the same results.
    pipelining: bool = False
    #: ``LISTEN`` / ``NOTIFY``.
    listen_notify: bool = False
    #: The isolation levels ``transaction(isolation=...)`` accepts.
    isolation_levels: frozenset[IsolationLevel] = field(default=ALL_ISOLATION_LEVELS)
    #: ``transaction(readonly=True)`` makes writes fail.
    readonly: bool = True
    #: DDL (``CREATE TABLE``) is transactional: it rolls back with the transaction.
    transactional_ddl: bool = False
    #: One statement can run outside a transaction (autocommit), so ``db.execute()``
    #: costs one round trip instead of three.
    autocommit: bool = False
    #: The driver knows when the server has aborted the transaction (PostgreSQL after a
    #: failed statement), so a COMMIT that would silently roll back can be refused.
    aborted_state: bool = False
    #: A statement's rows arrive whole with it and stay readable after its connection
    #: went back to the pool, so ``db.execute()`` need not copy them.
    detached_results: bool = False
    #: The driver logs statements itself when ``echo`` is on (SQLAlchemy's engine log);
    #: otherwise the engine logs them to ``structum_lab.plugins.database.sql``.
    logs_sql: bool = False
    #: BEGIN travels with the first statement of a transaction (``execute_begun``) instead
    #: of costing a round trip of its own, and a transaction that runs nothing costs none.
    deferred_begin: bool = False
    #: The driver's pool hands a returned connection to the longest waiter (psycopg_pool);
    #: without it the engine queues checkouts first come, first served itself.
    fair_checkout: bool = False


@dataclass(frozen=True, slots=True)
class PoolLimits:
    """The pool's sizes as the user configured them, for messages and the health check."""

    #: Connections kept open (``pool_size``, psycopg_pool's ``min_size``).
    size: int
    #: The hard cap on open connections (``pool_size + max_overflow``, ``max_size``).
    max_size: int
    #: Seconds a checkout waits for a free connection.
    timeout: float
    #: The user's ``pool_size`` and ``max_overflow``, as the exhaustion message names them.
    pool_size: int
    max_overflow: int
    #: Appended to the exhaustion message (e.g. which option to raise for this driver).
    hint: str = ""


class PoolExhausted(Exception):
    """Raised by a driver's ``acquire()`` when no connection became free in time.

    The engine counts the timeout, tells the observers and raises the driver's
    ``pool_timeout_error`` (a :class:`PoolTimeoutError`) with the message users read.
    """


class NoRows(Exception):
    """Raised by a driver's rows when asked for rows of a statement that returns none.

    The engine raises ``ProgrammingError`` saying to use ``rowcount`` instead.
    """


class BatchFailed(Exception):
    """Raised by a driver's ``execute_batch()`` (``raise BatchFailed(i) from error``) when
    statement ``i`` of the batch failed; the server skipped the statements after it.

    ``index`` is None when the driver cannot tell which statement it was. The engine
    translates the driver error (``__cause__``) and names the statement in the message.
    """

    def __init__(self, index: int | None) -> None:
        super().__init__(index)
        self.index = index
