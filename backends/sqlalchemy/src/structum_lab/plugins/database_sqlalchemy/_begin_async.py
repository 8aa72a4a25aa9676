"""BEGIN with the first statement on SQLAlchemy's psycopg driver (``postgresql+psycopg``).

The DB-API connections are in autocommit mode (``_liveness``). The engine writes each
transaction's BEGIN (``begin_sql``: isolation level, READ ONLY) and it goes out with the
transaction's first statement as one simple-protocol message (core's ``begun_query``: the
values bound by psycopg on the client), through ``Connection.exec_driver_sql``, so that
SQLAlchemy's bookkeeping (autobegin, commit, rollback, events, echo) sees one statement;
the dialect's ``do_execute_no_params`` event runs it and moves the cursor past BEGIN's
result to the statement's, from which SQLAlchemy builds its result. COMMIT and ROLLBACK go
through SQLAlchemy: psycopg sends them whenever the server is inside a transaction,
autocommit or not. A pipelined block goes out as one message (core's ``run_batch``).

SQL that reaches the connection through SQLAlchemy itself still runs in a transaction:

* ``conn.sqlalchemy_connection`` and ``conn.session()`` before the transaction's first
  statement (:func:`hold_begin`): SQLAlchemy's transaction begins at once (no round trip;
  a session joins it by a savepoint), and the engine's pending BEGIN goes out just before
  the next statement on that connection, whoever runs it;
* connections the engine has not lent (``db.get_session()``, ``db.engine``): when
  SQLAlchemy begins a transaction while the server is idle, its ``begin`` event sends BEGIN
  at the ``isolation_level`` option's level (one round trip, what psycopg's own implicit
  BEGIN costs). An isolation level set through SQLAlchemy's execution options keeps its
  meaning (``AUTOCOMMIT``; any other turns psycopg's autocommit off and psycopg begins).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any, Final

import psycopg
import sqlalchemy as sa
from psycopg import pq
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection  # sync: from sqlalchemy import Connection
from sqlalchemy.util import await_

from structum_lab.plugins.database.kit import ASYNC, AsyncRows, Bound
from structum_lab.plugins.database.kit_psycopg import begun_query_async, run_batch_async

from ._engine import sync_connection

__all__ = [
    "DRIVER_ERROR",
    "begun",
    "broken",
    "commit",
    "hold_begin",
    "disown",
    "execute_batch",
    "execute_begun",
    "install",
    "lend",
    "send_held",
    "take_held",
]

_OWNED: Final = "structum_owned"  # connection info: lent by the engine, which writes its BEGINs
_HELD: Final = "structum_held_begin"  # connection info: the BEGIN to send before the next statement
_BEGUN: Final = "structum_begun"  # execution option: the statement starts with BEGIN
_BEGUN_OPTIONS: Final = {"no_parameters": True, _BEGUN: True}
_NO_PARAMS: Final = {"no_parameters": True}
_IDLE: Final = pq.TransactionStatus.IDLE
#: What psycopg raises where SQLAlchemy is not in between.
DRIVER_ERROR: Final = psycopg.Error


def install(engine: sa.Engine, default_begin: str) -> None:
    """The listeners: BEGIN for SQLAlchemy's own transactions, the begun statements' results."""

    @event.listens_for(engine, "begin")
    def _sqlalchemy_begins(conn: sa.Connection) -> None:
        if _OWNED in conn.info or conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            return  # the engine's own: its BEGIN goes with its first statement (or there is none)
        driver = conn.connection.driver_connection
        if driver is not None and driver.autocommit and driver.pgconn.transaction_status == _IDLE:
            _send(conn, default_begin)

    @event.listens_for(engine, "do_execute_no_params")
    def _run_begun(cursor: Any, statement: str, context: Any) -> bool:
        if _BEGUN not in context.execution_options:
            return False
        cursor.execute(statement)
        if ASYNC:  # ASYNC
            inner = cursor._cursor  # SQLAlchemy's asyncio adapter buffers the rows of psycopg's cursor
            inner.nextset()
            cursor._rows = deque(await_(inner.fetchall()) if inner.description is not None else ())
        else:
            cursor.nextset()  # past BEGIN's result, to the statement's
        return True

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info.pop(_OWNED, None)
            record.info.pop(_HELD, None)


def _send(conn: sa.Connection, sql: str) -> None:
    """One statement on a cursor of its own (the statement's may be a server-side one)."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql)
    finally:
        cursor.close()


def _send_held(conn: sa.Connection, *_: Any) -> None:
    """``before_cursor_execute`` on a connection holding the engine's BEGIN."""
    begin = conn.info.pop(_HELD, None)
    if begin is not None:
        _send(conn, begin)


def _driver(raw: AsyncConnection) -> Any:
    return sync_connection(raw).connection.driver_connection


def lend(raw: AsyncConnection) -> None:
    """The engine's: SQLAlchemy's autobegin sends nothing (the engine's BEGIN rides with a statement)."""
    sync_connection(raw).info[_OWNED] = True


def disown(raw: AsyncConnection) -> None:
    """For SQLAlchemy to use on its own (an ORM session): its transactions send BEGIN."""
    sync_connection(raw).info.pop(_OWNED, None)


def hold_begin(raw: AsyncConnection, begin: str) -> None:
    """SQLAlchemy is handed the connection before the transaction's first statement: its own
    transaction begins now (bookkeeping only: sessions then join by a savepoint), and the
    engine's ``begin`` goes out before the next statement on the connection."""
    conn = sync_connection(raw)
    if not conn.in_transaction():
        conn.begin()  # no I/O: the dialect's do_begin is a no-op, and the begin event skips the engine's
    conn.info[_HELD] = begin
    if not event.contains(conn, "before_cursor_execute", _send_held):
        event.listen(conn, "before_cursor_execute", _send_held)  # this Connection only, for its checkout


def take_held(raw: AsyncConnection) -> str | None:
    """The held BEGIN, for a statement that does not go through SQLAlchemy (COPY, a batch)."""
    return None if raw.invalidated else sync_connection(raw).info.pop(_HELD, None)


def begun(raw: AsyncConnection) -> bool:
    return not raw.invalidated and _driver(raw).pgconn.transaction_status != _IDLE


def broken(raw: AsyncConnection) -> bool:
    """Whether the connection is lost, also when it died under psycopg directly (COPY, a batch),
    which SQLAlchemy has not seen."""
    return raw.invalidated or bool(_driver(raw).broken)


async def send_held(raw: AsyncConnection) -> None:
    """Before psycopg is used directly (COPY): the held BEGIN, if any."""
    held = take_held(raw)
    if held is not None:
        await raw.exec_driver_sql(held, execution_options=_NO_PARAMS)


async def execute_begun(raw: AsyncConnection, begin: str, sql: str, params: Bound) -> sa.CursorResult[Any]:
    text = begun_query_async(_driver(raw), begin, sql, params)
    return await raw.exec_driver_sql(text, execution_options=_BEGUN_OPTIONS)


async def commit(raw: AsyncConnection) -> None:
    take_held(raw)  # nothing ran: nothing to begin
    if raw.in_transaction():
        await raw.commit()  # COMMIT when the server is in a transaction
    if not raw.invalidated:
        driver = _driver(raw)
        if driver.pgconn.transaction_status != _IDLE:  # begun by a batch, which SQLAlchemy did not see
            await driver.commit()


async def execute_batch(
    raw: AsyncConnection, begin: str | None, statements: Sequence[tuple[str, Bound]], end: str | None
) -> Sequence[AsyncRows]:
    results = await run_batch_async(_driver(raw), begin, statements, end)
    if end == "COMMIT" and raw.in_transaction():
        await raw.commit()  # the server has committed: SQLAlchemy's transaction ends too, without a round trip
    return results
