"""The SQLAlchemy driver: connections of a SQLAlchemy engine, verb by verb.

SQL goes to the DB-API driver through ``Connection.exec_driver_sql`` after core's cached
translation of the placeholders: it skips SQLAlchemy's statement compilation (so it is
cheaper than ``text()``) and it never mistakes ``':x'`` in a literal for a parameter.
Rows are read straight from the DB-API cursor into core ``Row`` dicts (SQLAlchemy's
asyncio results are buffered, so reading them needs no ``await`` underneath).

Checkouts are checked by ``_liveness`` (a ping only for a connection idle beyond the window
or whose socket is readable) where the driver's socket is reachable, else by SQLAlchemy's
``pool_pre_ping``. On ``postgresql+psycopg`` the connections are in autocommit mode and BEGIN
travels with a transaction's first statement (``features.deferred_begin``), and pipelined
blocks go out as one message (``features.pipelining``): see ``_begin_async``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection  # sync: from sqlalchemy import Connection
from sqlalchemy.pool import QueuePool

from structum_lab.plugins.database import ConfigurationError, IsolationLevel, ParameterError, PoolInfo, Row
from structum_lab.plugins.database.kit import (
    ASYNC,
    AsyncDriverBase,
    AsyncNotifier,
    AsyncRows,
    Bound,
    Features,
    NoRows,
    PoolExhausted,
    duplicate_columns,
    log,
    paused_gc,
    round_trip_cap,
)

from ._engine import ERROR_CLASSES, EngineParts, describe_connection, isolation_option, sync_connection
from ._liveness import forced_ping

__all__ = ["AsyncSQLAlchemyDriver"]

_NO_PARAMS: Final = {"no_parameters": True}
_PQ_INERROR: Final = 3  # libpq's PQTRANS_INERROR


class AsyncSQLAlchemyRows:
    """The rows of one statement, from the DB-API cursor under SQLAlchemy's result."""

    __slots__ = ("_cursor", "_duplicated", "_keys", "_result", "returns_rows", "rowcount")

    def __init__(self, result: sa.CursorResult[Any]) -> None:
        self._result = result
        cursor: Any = result.cursor
        description = cursor.description if cursor is not None else None
        # No description: DML without RETURNING (SQLAlchemy has already closed the cursor).
        self._keys: list[str] = [d[0] for d in description] if description else []
        self._duplicated = duplicate_columns(self._keys)
        self.returns_rows = description is not None
        self._cursor = cursor if description is not None else None
        self.rowcount: int = cursor.rowcount if cursor is not None else result.rowcount

    def keys(self) -> list[str]:
        return list(self._keys)

    def _cursor_or_end(self) -> Any:
        cursor = self._cursor
        if cursor is None and not self.returns_rows:
            raise NoRows
        if self._duplicated is not None:
            raise self._duplicated
        return cursor

    def _exhausted(self) -> None:
        # Later fetches answer "no more rows"; the cursor (and SQLite's read lock) goes now.
        self._cursor = None
        self._result.close()

    async def fetchone(self) -> Row | None:
        cursor = self._cursor_or_end()
        values = cursor.fetchone() if cursor is not None else None
        if values is None:
            if cursor is not None:
                self._exhausted()
            return None
        return Row(zip(self._keys, values, strict=True))

    async def fetchmany(self, size: int) -> list[Row]:
        cursor = self._cursor_or_end()
        if cursor is None or size <= 0:
            return []
        batch = cursor.fetchmany(size)
        if not batch:
            self._exhausted()
        keys = self._keys
        with paused_gc(len(batch)):
            return [Row(zip(keys, values, strict=False)) for values in batch]  # one value per key

    async def fetchall(self) -> list[Row]:
        cursor = self._cursor_or_end()
        if cursor is None:
            return []
        batch = cursor.fetchall()
        self._exhausted()
        keys = self._keys
        with paused_gc(len(batch)):
            return [Row(zip(keys, values, strict=False)) for values in batch]  # one value per key

    async def scalar(self) -> object:
        cursor = self._cursor
        if cursor is None and not self.returns_rows:
            raise NoRows
        values = cursor.fetchone() if cursor is not None else None
        if cursor is not None:
            self._exhausted()
        return None if values is None else values[0]

    async def close(self) -> None:
        if self._cursor is not None:
            self._exhausted()


class AsyncSQLAlchemyStream:
    """The rows of a query read from a server-side cursor (``stream_results``): each fetch may
    be a round trip, so on asyncio it runs in SQLAlchemy's greenlet."""

    __slots__ = ("_keys", "_raw", "_result")
    returns_rows = True
    rowcount = -1

    def __init__(self, raw: AsyncConnection, result: sa.CursorResult[Any]) -> None:
        self._raw = raw
        self._result = result
        self._keys = list(result.keys())

    def keys(self) -> list[str]:
        return list(self._keys)

    async def fetchmany(self, size: int) -> list[Row]:
        if size <= 0:
            return []
        if ASYNC:  # ASYNC
            batch = await self._raw.run_sync(_fetch, self._result, size)
        else:
            batch = self._result.fetchmany(size)
        keys = self._keys
        with paused_gc(len(batch)):
            return [Row(zip(keys, values, strict=False)) for values in batch]

    async def fetchone(self) -> Row | None:
        rows = await self.fetchmany(1)
        return rows[0] if rows else None

    async def fetchall(self) -> list[Row]:
        rows: list[Row] = []
        while batch := await self.fetchmany(1000):
            rows += batch
        return rows

    async def scalar(self) -> object:
        row = await self.fetchone()
        return None if row is None else next(iter(row.values()), None)

    async def close(self) -> None:
        if ASYNC:  # ASYNC
            await self._raw.run_sync(_close, self._result)
        else:
            self._result.close()


def _fetch(_sa_conn: sa.Connection, result: sa.CursorResult[Any], size: int) -> Sequence[sa.Row[Any]]:
    return result.fetchmany(size)


def _close(_sa_conn: sa.Connection, result: sa.CursorResult[Any]) -> None:
    result.close()


def _execute_streaming(sa_conn: sa.Connection, sql: str, params: Any, batch_size: int) -> sa.CursorResult[Any]:
    options = {"stream_results": True, "max_row_buffer": batch_size}
    if params is None:
        return sa_conn.exec_driver_sql(sql, execution_options={**options, **_NO_PARAMS})
    return sa_conn.exec_driver_sql(sql, tuple(params) if type(params) is list else params, execution_options=options)


async def _psycopg_connection(raw: AsyncConnection) -> Any:
    """The psycopg connection under SQLAlchemy's (for COPY), inside the same transaction."""
    if ASYNC:  # ASYNC
        return (await raw.get_raw_connection()).driver_connection
    else:
        return raw.connection.driver_connection


def reset_driver_transaction(sa_conn: sa.Connection) -> None:
    """Roll back at the driver after a failed COMMIT.

    SQLAlchemy then considers the transaction finished and its pool skips the rollback
    on return, but the driver may still be inside it (SQLite keeps the transaction and
    its locks after SQLITE_BUSY on COMMIT). A connection that cannot even roll back is
    invalidated rather than pooled.
    """
    try:
        dbapi_connection = sa_conn.connection.dbapi_connection
        if dbapi_connection is not None:
            dbapi_connection.rollback()
    except Exception:
        sa_conn.invalidate()


def _ping(sa_conn: sa.Connection) -> None:
    """The dialect's own cheapest round trip (``SELECT 1``, or ``... FROM DUAL`` on Oracle)."""
    dbapi_connection = sa_conn.connection.dbapi_connection
    if dbapi_connection is not None:
        sa_conn.dialect.do_ping(dbapi_connection)


class AsyncSQLAlchemyDriver(AsyncDriverBase[AsyncConnection]):
    """Any database SQLAlchemy has a dialect for."""

    errors: tuple[type[BaseException], ...] = (sa_exc.SQLAlchemyError, OSError, TypeError, ValueError)
    error_classes = ERROR_CLASSES

    @property
    def on_connection(self) -> Callable[[Any, float], None] | None:
        return self.parts.open.listener

    @on_connection.setter
    def on_connection(self, listener: Callable[[Any, float], None] | None) -> None:
        self.parts.open.listener = listener

    def __init__(self, parts: EngineParts) -> None:
        self.parts = parts
        self._engine = parts.engine
        self._dialect = dialect = parts.dialect
        self.translator = parts.translator
        self.limits = parts.limits
        self.loggers = parts.loggers
        postgres = dialect == "postgresql"
        aborted = postgres and parts.sa_engine.dialect.driver.startswith("psycopg")  # psycopg tells, and copies
        if aborted:  # COPY and LISTEN use the psycopg connection directly: its errors, too
            import psycopg

            self.errors = (*self.errors, psycopg.Error)
        self._deferred: Any = None  # _begin_async on postgresql+psycopg: BEGIN rides with the first statement
        if parts.deferred_begin:
            from . import _begin_async

            self._deferred = _begin_async
            _begin_async.install(parts.sa_engine, self.begin_sql(parts.isolation, False))
        self.features = Features(
            returning=dialect in ("postgresql", "sqlite", "mariadb", "oracle", "mssql"),
            transactional_ddl=dialect in ("postgresql", "sqlite", "mssql"),
            autocommit=postgres,
            aborted_state=aborted,
            server_side_cursors=True,
            copy=aborted,
            listen_notify=aborted,
            logs_sql=True,
            deferred_begin=parts.deferred_begin,
            pipelining=parts.deferred_begin,
        )
        # Every connection lent out, until it is returned. A Connection sits in a reference
        # cycle (with its transaction), so a forgotten one is freed by the cyclic collector,
        # which runs SQLAlchemy's weakref rescue *before* our wrapper's __del__: the
        # connection would be returned twice (the second time under another user). Held
        # here, it stays reachable, and only the wrapper's __del__ returns it.
        self._lent: set[AsyncConnection] = set()
        self._closed = False

    @property
    def engine(self) -> Any:
        return self._engine

    # -- the pool ----------------------------------------------------------------------

    async def close(self) -> None:
        self._closed = True
        await self._engine.dispose()

    def after_fork(self) -> object:
        """SQLAlchemy's documented recipe (``dispose(close=False)``): a pool of its own,
        leaving the parent's connections open and unused."""
        engine = self.parts.sa_engine
        inherited = engine.pool
        engine.dispose(close=False)
        self._lent = set()
        return inherited

    def pool_figures(self, checked_out: int) -> PoolInfo:
        pool = self.parts.sa_engine.pool
        if not isinstance(pool, QueuePool):  # StaticPool (in-memory SQLite): one shared connection
            return {"checked_out": checked_out, "available": int(not checked_out), "total": 1, "overflow": 0,
                    "size": 1, "max_size": 1}  # fmt: skip
        size = pool.size()
        out = pool.checkedout()
        # Not checkedin(): it also counts slots whose connection was closed (invalidated after
        # an error or a cancellation) and is only reopened at its next checkout.
        total = max(self.parts.open.count, out)
        return {
            "checked_out": out,
            "available": total - out,
            "total": total,
            # QueuePool counts overflow from -size; only connections above size are overflow.
            "overflow": max(0, pool.overflow()),
            "size": size,
            "max_size": self.limits.max_size,
        }

    async def acquire(self, *, ping: bool) -> AsyncConnection:
        parts = self.parts
        try:
            with round_trip_cap(parts.ping_budget):  # the pre-ping: no answer in time, a dead connection
                if ping and parts.pings_at_checkout:
                    with forced_ping():
                        sa_conn: AsyncConnection = await self._engine.connect()
                else:
                    sa_conn = await self._engine.connect()
        except sa_exc.TimeoutError as exc:
            raise PoolExhausted from exc
        except (sa_exc.DBAPIError, OSError) as exc:  # asyncpg raises OSError when it cannot connect
            orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
            if isinstance(orig, TimeoutError) and not str(orig):  # asyncpg's says nothing
                raise TimeoutError(f"no answer within connect_timeout={self.parts.connect_timeout:g} s") from exc
            raise
        except (TypeError, ValueError) as exc:
            # The driver's connect() refused an argument (URL query or connect_args): a
            # configuration mistake, not a connection failure.
            raise ConfigurationError(
                f"the {self._dialect} driver refused the connection arguments (URL query parameters or "
                f"connect_args): {type(exc).__name__}: {exc}",
                backend="sqlalchemy",
            ) from None
        self._lent.add(sa_conn)
        if self._deferred is not None:
            self._deferred.lend(sa_conn)
        if ping and not parts.pings_at_checkout:  # else connect() made the round trip
            try:
                if ASYNC:  # ASYNC
                    await sa_conn.run_sync(_ping)
                else:
                    _ping(sa_conn)  # type: ignore[arg-type]
            except BaseException:
                await self.release(sa_conn)
                raise
        return sa_conn

    async def release(self, raw: AsyncConnection) -> None:
        self._lent.discard(raw)
        try:
            if self._closed or (self._deferred is not None and self._deferred.broken(raw)):
                # dispose() left it out: closing it here is the only close it gets; or it died
                # under psycopg directly (COPY, a batch), which SQLAlchemy has not seen.
                await raw.invalidate()
            await raw.close()
        except sa_exc.DBAPIError:
            log.debug("error while returning a connection to the pool", exc_info=True)

    def describe(self, raw: AsyncConnection) -> str:
        return describe_connection(sync_connection(raw))

    def abandon(self, raw: AsyncConnection) -> None:
        self._lent.discard(raw)

    # -- transactions and statements ---------------------------------------------------

    async def begin(self, raw: AsyncConnection, isolation: IsolationLevel | None, readonly: bool) -> None:
        dialect = self._dialect
        if isolation is not None:
            await raw.execution_options(isolation_level=isolation_option(dialect, isolation))
        if readonly and dialect == "postgresql":
            await raw.execution_options(postgresql_readonly=True)  # the driver's read-only flag
        await raw.begin()
        if readonly and dialect == "sqlite":
            await raw.exec_driver_sql("PRAGMA query_only = 1")
        elif readonly and dialect != "postgresql":
            await raw.exec_driver_sql("SET TRANSACTION READ ONLY")

    async def execute_begun(self, raw: AsyncConnection, begin: str, sql: str, params: Bound) -> AsyncSQLAlchemyRows:
        """``features.deferred_begin`` (postgresql+psycopg): one message, see ``_begin_async``."""
        return AsyncSQLAlchemyRows(await self._deferred.execute_begun(raw, begin, sql, params))

    def begun(self, raw: AsyncConnection) -> bool:
        return self._deferred is None or bool(self._deferred.begun(raw))

    async def execute_batch(
        self, raw: AsyncConnection, begin: str | None, statements: Sequence[tuple[str, Bound]], end: str | None
    ) -> Sequence[AsyncRows]:
        if self._deferred is None:
            return await super().execute_batch(raw, begin, statements, end)  # NotSupportedError
        begin = begin or self._deferred.take_held(raw)
        return await self._deferred.execute_batch(raw, begin, statements, end)  # type: ignore[no-any-return]

    def hold_begin(self, raw: AsyncConnection, begin: str) -> None:
        """SQLAlchemy is handed the connection before BEGIN went out: it goes before the next statement."""
        self._deferred.hold_begin(raw, begin)

    def disown(self, raw: AsyncConnection) -> None:
        """The connection is SQLAlchemy's to use (an ORM session): its transactions send BEGIN."""
        if self._deferred is not None:
            self._deferred.disown(raw)

    async def commit(self, raw: AsyncConnection) -> None:
        if self._deferred is not None:
            await self._deferred.commit(raw)
        else:
            await raw.commit()

    async def rollback(self, raw: AsyncConnection) -> None:
        if self._deferred is not None:
            self._deferred.take_held(raw)  # nothing ran: nothing to begin
        if raw.in_transaction():
            await raw.rollback()
            return
        # A failed COMMIT ended SQLAlchemy's transaction, not necessarily the driver's.
        if ASYNC:  # ASYNC
            await raw.run_sync(reset_driver_transaction)
        else:
            reset_driver_transaction(raw)  # type: ignore[arg-type]

    async def reset(self, raw: AsyncConnection) -> None:
        # Isolation and the PostgreSQL read-only flag are reset by SQLAlchemy when the
        # connection goes back to the pool; SQLite's pragma is ours to undo.
        if self._dialect == "sqlite" and not raw.invalidated:
            await raw.exec_driver_sql("PRAGMA query_only = 0")

    def transaction_failed(self, raw: AsyncConnection) -> bool:
        """PostgreSQL aborted the transaction (only psycopg exposes the state)."""
        if not self.features.aborted_state or raw.invalidated:
            return False
        driver = sync_connection(raw).connection.driver_connection
        status = getattr(getattr(driver, "info", None), "transaction_status", None)
        return status is not None and int(status) == _PQ_INERROR

    async def autocommit(self, raw: AsyncConnection, enabled: bool) -> None:
        # Turning it off again is SQLAlchemy's: it restores the level when the connection is returned.
        # With deferred_begin the connections are in autocommit mode already.
        if enabled and self._deferred is None:
            await raw.execution_options(isolation_level="AUTOCOMMIT")

    async def command(self, raw: AsyncConnection, sql: str) -> None:
        await raw.exec_driver_sql(sql, execution_options=_NO_PARAMS)

    async def rollback_to_savepoint(self, raw: AsyncConnection, name: str) -> None:
        if self._deferred is None:  # not every driver takes two statements at once
            await super().rollback_to_savepoint(raw, name)
        else:
            await self.command(raw, f"ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}")

    async def execute(self, raw: AsyncConnection, sql: str, params: Bound) -> AsyncSQLAlchemyRows:
        if params is None:
            result = await raw.exec_driver_sql(sql, execution_options=_NO_PARAMS)
        elif type(params) is list:
            # SQLAlchemy reads a list as many parameter sets (executemany); one set is a tuple.
            result = await raw.exec_driver_sql(sql, tuple(params))
        else:
            result = await raw.exec_driver_sql(sql, params)
        return AsyncSQLAlchemyRows(result)

    async def stream(self, raw: AsyncConnection, sql: str, params: Bound, batch_size: int) -> AsyncSQLAlchemyStream:
        if ASYNC:  # ASYNC
            result = await raw.run_sync(_execute_streaming, sql, params, batch_size)
        else:
            result = _execute_streaming(raw, sql, params, batch_size)  # type: ignore[arg-type]
        return AsyncSQLAlchemyStream(raw, result)

    async def copy_in(
        self,
        raw: AsyncConnection,
        table: str,
        columns: Sequence[str],
        records: Iterable[Sequence[Any]] | AsyncIterable[Sequence[Any]],
    ) -> int:
        if not self.features.copy:
            await super().copy_in(raw, table, columns, records)  # NotSupportedError
        from structum_lab.plugins.database.kit_psycopg import copy_in_async

        if self._deferred is not None:  # psycopg directly: the BEGIN SQLAlchemy was holding goes first
            await self._deferred.send_held(raw)
        return await copy_in_async(await _psycopg_connection(raw), table, columns, records)

    async def copy_out(self, raw: AsyncConnection, sql: str, params: Bound) -> AsyncIterator[tuple[Any, ...]]:
        if not self.features.copy:
            super().copy_out(raw, sql, params)  # NotSupportedError
        from structum_lab.plugins.database.kit_psycopg import copy_out_async

        if self._deferred is not None:  # psycopg directly: the BEGIN SQLAlchemy was holding goes first
            await self._deferred.send_held(raw)
        async for record in copy_out_async(await _psycopg_connection(raw), sql, params):
            yield record

    async def notifier(self) -> AsyncNotifier:
        if not self.features.listen_notify:
            return await super().notifier()  # NotSupportedError
        import psycopg

        from structum_lab.plugins.database.kit_psycopg import AsyncPsycopgNotifier

        engine = self.parts.sa_engine
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        params = {**cparams, **self.parts.connect_args, "autocommit": True}
        params.pop("async_creator_fn", None)
        return AsyncPsycopgNotifier(await psycopg.AsyncConnection.connect(*cargs, **params))

    async def executemany(self, raw: AsyncConnection, sql: str, param_sets: Sequence[Bound]) -> int:
        batch: Any = [tuple(b) if type(b) is list else b for b in param_sets]
        result = await raw.exec_driver_sql(sql, batch)
        return result.rowcount

    def unwrap_error(self, exc: BaseException, raw: AsyncConnection | None) -> tuple[BaseException, bool]:
        if isinstance(exc, sa_exc.DBAPIError):
            return (exc.orig if exc.orig is not None else exc), bool(exc.connection_invalidated)
        if self._deferred is not None and raw is not None and isinstance(exc, self._deferred.DRIVER_ERROR):
            return exc, self._deferred.broken(raw)  # psycopg's own error (COPY, a batch)
        if isinstance(exc, sa_exc.StatementError):
            return exc.orig or exc, False
        if isinstance(exc, sa_exc.ArgumentError):
            return ParameterError(str(exc), backend="sqlalchemy"), False
        if isinstance(exc, TypeError | ValueError):  # the driver cannot send a value (PyMySQL raises these)
            return ParameterError(f"the driver cannot send these parameters: {exc}", backend="sqlalchemy"), False
        return exc, False
