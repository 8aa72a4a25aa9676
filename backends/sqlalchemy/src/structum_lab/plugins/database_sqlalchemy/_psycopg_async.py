"""SQLAlchemy's psycopg driver (``postgresql+psycopg``): psycopg itself, under SQLAlchemy.

:class:`AsyncSQLAlchemyPsycopgDriver` reads the server's transaction state from the psycopg
connection under SQLAlchemy's (``features.aborted_state``), and runs COPY, LISTEN and
``stream()``'s server-side cursors on psycopg directly (core's ``kit_psycopg``).

:class:`AsyncDeferredBeginDriver` (unless ``engine_options`` set an isolation level of
SQLAlchemy's) sends BEGIN with the first statement. The DB-API connections are in
autocommit mode (``_liveness``). The engine writes each transaction's BEGIN
(``begin_sql``: isolation level, READ ONLY) and it goes out with the transaction's first
statement as one simple-protocol message (core's ``begun_query``: the values bound by
psycopg on the client), through ``Connection.exec_driver_sql``, so that SQLAlchemy's
bookkeeping (autobegin, commit, rollback, events, echo) sees one statement; the dialect's
``do_execute_no_params`` event runs it and moves the cursor past BEGIN's result to the
statement's, from which SQLAlchemy builds its result. COMMIT and ROLLBACK go through
SQLAlchemy: psycopg sends them whenever the server is inside a transaction, autocommit or
not. A pipelined block goes out as one message (core's ``run_batch``).

SQL that reaches the connection through SQLAlchemy itself still runs in a transaction:

* ``conn.sqlalchemy_connection`` and ``conn.session()`` before the transaction's first
  statement (:meth:`~AsyncDeferredBeginDriver.hold_begin`): SQLAlchemy's transaction begins
  at once (no round trip; a session joins it by a savepoint), and the engine's pending BEGIN
  goes out just before the next statement on that connection, whoever runs it;
* connections the engine has not lent (``db.get_session()``, ``db.engine``): when
  SQLAlchemy begins a transaction while the server is idle, its ``begin`` event sends BEGIN
  at the ``isolation_level`` option's level (one round trip, what psycopg's own implicit
  BEGIN costs). An isolation level set through SQLAlchemy's execution options keeps its
  meaning (``AUTOCOMMIT``; any other turns psycopg's autocommit off and psycopg begins).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from typing import Any, Final

import psycopg
import sqlalchemy as sa
from psycopg import pq
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection  # sync: from sqlalchemy import Connection
from sqlalchemy.util import await_

from structum_lab.plugins.database.kit import ASYNC, AsyncCursorRows, AsyncRows, Bound
from structum_lab.plugins.database.kit_psycopg import (
    AsyncPsycopgNotifier,
    AsyncPsycopgRows,
    begun_query_async,
    copy_in_async,
    copy_out_async,
    open_stream_async,
    run_batch_async,
)

from ._driver_async import AsyncSQLAlchemyDriver, rows_of
from ._engine import EngineParts, sync_connection

__all__ = ["AsyncDeferredBeginDriver", "AsyncSQLAlchemyPsycopgDriver"]

_OWNED: Final = "structum_owned"  # connection info: lent by the engine, which writes its BEGINs
_HELD: Final = "structum_held_begin"  # connection info: the BEGIN to send before the next statement
_BEGUN: Final = "structum_begun"  # execution option: the statement starts with BEGIN
_BEGUN_OPTIONS: Final = {"no_parameters": True, _BEGUN: True}
_NO_PARAMS: Final = {"no_parameters": True}
_IDLE: Final = pq.TransactionStatus.IDLE
_INERROR: Final = pq.TransactionStatus.INERROR


def _driver(raw: AsyncConnection) -> Any:
    """The psycopg connection under SQLAlchemy's."""
    return sync_connection(raw).connection.driver_connection


class AsyncSQLAlchemyPsycopgDriver(AsyncSQLAlchemyDriver):
    """PostgreSQL through SQLAlchemy's psycopg driver: psycopg tells the transaction's state,
    and copies and listens."""

    #: COPY and LISTEN use the psycopg connection directly: its errors, too.
    errors = (*AsyncSQLAlchemyDriver.errors, psycopg.Error)

    def __init__(self, parts: EngineParts, **features: Any) -> None:
        super().__init__(parts, aborted_state=True, copy=True, listen_notify=True, **features)

    def _broken(self, raw: AsyncConnection) -> bool:
        """Also when it died under psycopg directly (COPY, a batch), which SQLAlchemy has not seen."""
        return raw.invalidated or bool(_driver(raw).broken)

    def transaction_failed(self, raw: AsyncConnection) -> bool:
        """PostgreSQL aborted the transaction."""
        return not raw.invalidated and _driver(raw).info.transaction_status == _INERROR

    async def rollback_to_savepoint(self, raw: AsyncConnection, name: str) -> None:
        await self.command(raw, f"ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}")  # one round trip

    async def _psycopg(self, raw: AsyncConnection) -> Any:
        """The psycopg connection under SQLAlchemy's (for COPY), inside the same transaction."""
        if ASYNC:  # ASYNC
            return (await raw.get_raw_connection()).driver_connection
        else:
            return raw.connection.driver_connection

    async def copy_in(
        self,
        raw: AsyncConnection,
        table: str,
        columns: Sequence[str],
        records: Iterable[Sequence[Any]] | AsyncIterable[Sequence[Any]],
    ) -> int:
        return await copy_in_async(await self._psycopg(raw), table, columns, records)

    async def copy_out(self, raw: AsyncConnection, sql: str, params: Bound) -> AsyncIterator[tuple[Any, ...]]:
        async for record in copy_out_async(await self._psycopg(raw), sql, params):
            yield record

    async def stream(self, raw: AsyncConnection, sql: str, params: Bound, batch_size: int) -> AsyncPsycopgRows:
        # psycopg's server-side cursor, not SQLAlchemy's stream_results: its rows are core
        # Row dicts as psycopg reads them (SQLAlchemy's Row objects would be built and copied).
        return await open_stream_async(await self._psycopg(raw), sql, params, batch_size)

    async def notifier(self) -> AsyncPsycopgNotifier:
        engine = self.parts.sa_engine
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        params = {**cparams, **self.parts.connect_args, "autocommit": True}
        params.pop("async_creator_fn", None)
        return AsyncPsycopgNotifier(await psycopg.AsyncConnection.connect(*cargs, **params))

    def unwrap_error(self, exc: BaseException, raw: AsyncConnection | None) -> tuple[BaseException, bool]:
        if raw is not None and isinstance(exc, psycopg.Error):
            return exc, self._broken(raw)  # psycopg's own error (COPY, a batch)
        return super().unwrap_error(exc, raw)


class AsyncDeferredBeginDriver(AsyncSQLAlchemyPsycopgDriver):
    """postgresql+psycopg with BEGIN sent with each transaction's first statement (see above)."""

    def __init__(self, parts: EngineParts) -> None:
        super().__init__(parts, deferred_begin=True, pipelining=True)
        _install(parts.sa_engine, self.begin_sql(parts.isolation, False))

    async def acquire(self, *, ping: bool) -> AsyncConnection:
        raw = await super().acquire(ping=ping)
        # The engine's: SQLAlchemy's autobegin sends nothing (the engine's BEGIN rides with a statement).
        sync_connection(raw).info[_OWNED] = True
        return raw

    def disown(self, raw: AsyncConnection) -> None:
        """For SQLAlchemy to use on its own (an ORM session): its transactions send BEGIN."""
        sync_connection(raw).info.pop(_OWNED, None)

    def hold_begin(self, raw: AsyncConnection, begin: str) -> None:
        """SQLAlchemy is handed the connection before the transaction's first statement: its own
        transaction begins now (bookkeeping only: sessions then join by a savepoint), and the
        engine's ``begin`` goes out before the next statement on the connection."""
        conn = sync_connection(raw)
        if not conn.in_transaction():
            conn.begin()  # no I/O: the dialect's do_begin is a no-op, and the begin event skips the engine's
        conn.info[_HELD] = begin
        if not event.contains(conn, "before_cursor_execute", _send_held):
            event.listen(conn, "before_cursor_execute", _send_held)  # this Connection only, for its checkout

    def _take_held(self, raw: AsyncConnection) -> str | None:
        """The held BEGIN, for a statement that does not go through SQLAlchemy (COPY, a batch)."""
        return None if raw.invalidated else sync_connection(raw).info.pop(_HELD, None)

    async def _psycopg(self, raw: AsyncConnection) -> Any:
        held = self._take_held(raw)  # psycopg directly: the BEGIN SQLAlchemy was holding goes first
        if held is not None:
            await raw.exec_driver_sql(held, execution_options=_NO_PARAMS)
        return await super()._psycopg(raw)

    def begun(self, raw: AsyncConnection) -> bool:
        return not raw.invalidated and _driver(raw).pgconn.transaction_status != _IDLE

    async def execute_begun(self, raw: AsyncConnection, begin: str, sql: str, params: Bound) -> AsyncCursorRows:
        text = begun_query_async(_driver(raw), begin, sql, params)
        return rows_of(await raw.exec_driver_sql(text, execution_options=_BEGUN_OPTIONS))

    async def execute_batch(
        self, raw: AsyncConnection, begin: str | None, statements: Sequence[tuple[str, Bound]], end: str | None
    ) -> Sequence[AsyncRows]:
        results = await run_batch_async(_driver(raw), begin or self._take_held(raw), statements, end)
        if end == "COMMIT" and raw.in_transaction():
            await raw.commit()  # the server has committed: SQLAlchemy's transaction ends too, without a round trip
        return results

    async def commit(self, raw: AsyncConnection) -> None:
        self._take_held(raw)  # nothing ran: nothing to begin
        if raw.in_transaction():
            await raw.commit()  # COMMIT when the server is in a transaction
        if not raw.invalidated:
            driver = _driver(raw)
            if driver.pgconn.transaction_status != _IDLE:  # begun by a batch, which SQLAlchemy did not see
                await driver.commit()

    async def rollback(self, raw: AsyncConnection) -> None:
        self._take_held(raw)  # nothing ran: nothing to begin
        await super().rollback(raw)

    async def autocommit(self, raw: AsyncConnection, enabled: bool) -> None:
        return None  # the connections are in autocommit mode already


def _install(engine: sa.Engine, default_begin: str) -> None:
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
