"""The SQLAlchemy driver: connections of a SQLAlchemy engine, verb by verb.

SQL goes through ``Connection.exec_driver_sql`` after core's translation of the placeholders
(no statement compilation), and rows are read from the DB-API cursor into core ``Row`` dicts
(core's ``CursorRows``; SQLAlchemy's asyncio results are buffered, so reading them needs no
``await``). On ``postgresql+psycopg`` the driver is a subclass (``_psycopg_async``).
docs/backends/sqlalchemy.md ("How statements run", "Round trips") says what users see.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection  # sync: from sqlalchemy import Connection
from sqlalchemy.pool import QueuePool

from structum_lab.plugins.database import ConfigurationError, IsolationLevel, ParameterError, PoolInfo
from structum_lab.plugins.database.kit import (
    ASYNC,
    AsyncCursorRows,
    AsyncDriverBase,
    AsyncRows,
    Bound,
    Features,
    ListenerOf,
    PoolExhausted,
    describe_driver_connection,
    dialect_features,
    forced_ping,
    isolation_name,
    log,
    round_trip_cap,
)

from ._engine import ERROR_CLASSES, EngineParts, sync_connection

__all__ = ["AsyncSQLAlchemyDriver", "AsyncSQLAlchemyStream", "driver_for", "rows_of"]

_NO_PARAMS: Final = {"no_parameters": True}


def rows_of(result: sa.CursorResult[Any]) -> AsyncCursorRows:
    """The rows of one statement, from the DB-API cursor under SQLAlchemy's result (which
    their end closes). No cursor: DML without RETURNING, whose cursor SQLAlchemy has closed."""
    cursor: Any = result.cursor
    if cursor is None:
        return AsyncCursorRows(None, rowcount=result.rowcount)
    return AsyncCursorRows(cursor, close=result.close)


class AsyncSQLAlchemyStream(AsyncCursorRows):
    """The rows of a query read from a server-side cursor (``stream_results``) through
    SQLAlchemy's result: each fetch may be a round trip, so on asyncio it runs in
    SQLAlchemy's greenlet, and so does closing."""

    __slots__ = ("_raw", "_result")

    def __init__(self, raw: AsyncConnection, result: sa.CursorResult[Any]) -> None:
        super().__init__(result, keys=list(result.keys()), rowcount=-1)
        self._raw = raw
        self._result = result

    async def _read(self, cursor: Any, size: int | None) -> Sequence[Any]:
        if ASYNC:  # ASYNC
            return await self._raw.run_sync(_fetch, cursor, size)
        else:
            return await super()._read(cursor, size)

    def _end(self) -> None:
        self._cursor = None  # read to the end; close() closes the result

    async def close(self) -> None:
        self._cursor = None
        if ASYNC:  # ASYNC
            await self._raw.run_sync(_close, self._result)
        else:
            self._result.close()


def _fetch(_sa_conn: sa.Connection, result: sa.CursorResult[Any], size: int | None) -> Sequence[Any]:
    return result.fetchall() if size is None else result.fetchmany(size)


def _close(_sa_conn: sa.Connection, result: sa.CursorResult[Any]) -> None:
    result.close()


def _execute_streaming(sa_conn: sa.Connection, sql: str, params: Any, batch_size: int) -> sa.CursorResult[Any]:
    options = {"stream_results": True, "max_row_buffer": batch_size}
    if params is None:
        return sa_conn.exec_driver_sql(sql, execution_options={**options, **_NO_PARAMS})
    return sa_conn.exec_driver_sql(sql, tuple(params) if type(params) is list else params, execution_options=options)


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


def driver_for(parts: EngineParts) -> AsyncSQLAlchemyDriver:
    """The driver for an engine: on postgresql+psycopg a subclass that uses psycopg itself."""
    if parts.dialect != "postgresql" or not parts.sa_engine.dialect.driver.startswith("psycopg"):
        return AsyncSQLAlchemyDriver(parts)
    from ._psycopg_async import AsyncDeferredBeginDriver, AsyncSQLAlchemyPsycopgDriver  # imports psycopg

    return (AsyncDeferredBeginDriver if parts.deferred_begin else AsyncSQLAlchemyPsycopgDriver)(parts)


class AsyncSQLAlchemyDriver(AsyncDriverBase[AsyncConnection]):
    """Any database SQLAlchemy has a dialect for."""

    errors: tuple[type[BaseException], ...] = (sa_exc.SQLAlchemyError, OSError, TypeError, ValueError)
    error_classes = ERROR_CLASSES
    on_connection = ListenerOf("_open")

    def __init__(self, parts: EngineParts, **features: Any) -> None:
        """``features``: the flags a subclass adds."""
        self.parts = parts
        self._engine = parts.engine
        self._open = parts.open
        self._dialect = dialect = parts.dialect
        self.translator = parts.translator
        self.limits = parts.limits
        self.loggers = parts.loggers
        self.features = Features(server_side_cursors=True, logs_sql=True, **dialect_features(dialect), **features)
        # Every connection lent out, until it is returned. A Connection sits in a reference
        # cycle (with its transaction), so a forgotten one is freed by the cyclic collector,
        # which runs SQLAlchemy's weakref rescue *before* our wrapper's __del__: the
        # connection would be returned twice (the second time under another user). Held
        # here, it stays reachable, and only the wrapper's __del__ returns it.
        self._lent: set[AsyncConnection] = set()
        self._closed = False

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
        total = max(self._open.count, out)
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
            if self._closed or self._broken(raw):
                # dispose() left it out: closing it here is the only close it gets; or it died
                # where SQLAlchemy has not seen it.
                await raw.invalidate()
            await raw.close()
        except sa_exc.DBAPIError:
            log.debug("error while returning a connection to the pool", exc_info=True)

    def _broken(self, raw: AsyncConnection) -> bool:
        """Whether the connection died where SQLAlchemy has not seen it (it sees its own statements)."""
        return False

    def describe(self, raw: AsyncConnection) -> str:
        sa_conn = sync_connection(raw)
        if sa_conn.closed or sa_conn.invalidated:
            return "closed"
        try:
            return describe_driver_connection(sa_conn.connection.driver_connection)
        except sa_exc.SQLAlchemyError:
            return "closed"

    def abandon(self, raw: AsyncConnection) -> None:
        self._lent.discard(raw)

    # -- transactions and statements ---------------------------------------------------

    async def begin(self, raw: AsyncConnection, isolation: IsolationLevel | None, readonly: bool) -> None:
        dialect = self._dialect
        if isolation is not None:
            await raw.execution_options(isolation_level=isolation_name(dialect, isolation))
        if readonly and dialect == "postgresql":
            await raw.execution_options(postgresql_readonly=True)  # the driver's read-only flag
        await raw.begin()
        if readonly and dialect == "sqlite":
            await raw.exec_driver_sql("PRAGMA query_only = 1")
        elif readonly and dialect != "postgresql":
            await raw.exec_driver_sql("SET TRANSACTION READ ONLY")

    def disown(self, raw: AsyncConnection) -> None:
        """The connection is SQLAlchemy's to use (an ORM session); see ``_psycopg_async``."""
        return None

    async def commit(self, raw: AsyncConnection) -> None:
        await raw.commit()

    async def rollback(self, raw: AsyncConnection) -> None:
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

    async def autocommit(self, raw: AsyncConnection, enabled: bool) -> None:
        # Turning it off again is SQLAlchemy's: it restores the level when the connection is returned.
        if enabled:
            await raw.execution_options(isolation_level="AUTOCOMMIT")

    async def command(self, raw: AsyncConnection, sql: str) -> None:
        await raw.exec_driver_sql(sql, execution_options=_NO_PARAMS)

    async def execute(self, raw: AsyncConnection, sql: str, params: Bound) -> AsyncCursorRows:
        if params is None:
            result = await raw.exec_driver_sql(sql, execution_options=_NO_PARAMS)
        elif type(params) is list:
            # SQLAlchemy reads a list as many parameter sets (executemany); one set is a tuple.
            result = await raw.exec_driver_sql(sql, tuple(params))
        else:
            result = await raw.exec_driver_sql(sql, params)
        return rows_of(result)

    async def stream(self, raw: AsyncConnection, sql: str, params: Bound, batch_size: int) -> AsyncRows:
        if ASYNC:  # ASYNC
            result = await raw.run_sync(_execute_streaming, sql, params, batch_size)
        else:
            result = _execute_streaming(raw, sql, params, batch_size)  # type: ignore[arg-type]
        return AsyncSQLAlchemyStream(raw, result)

    async def executemany(self, raw: AsyncConnection, sql: str, param_sets: Sequence[Bound]) -> int:
        batch: Any = [tuple(b) if type(b) is list else b for b in param_sets]
        result = await raw.exec_driver_sql(sql, batch)
        return result.rowcount

    def unwrap_error(self, exc: BaseException, raw: AsyncConnection | None) -> tuple[BaseException, bool]:
        if isinstance(exc, sa_exc.DBAPIError):
            return (exc.orig if exc.orig is not None else exc), bool(exc.connection_invalidated)
        if isinstance(exc, sa_exc.StatementError):
            return exc.orig or exc, False
        if isinstance(exc, sa_exc.ArgumentError):
            return ParameterError(str(exc), backend="sqlalchemy"), False
        if isinstance(exc, TypeError | ValueError):  # the driver cannot send a value (PyMySQL raises these)
            return ParameterError(f"the driver cannot send these parameters: {exc}", backend="sqlalchemy"), False
        return exc, False
