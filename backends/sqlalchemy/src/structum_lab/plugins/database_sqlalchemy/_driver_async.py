"""The SQLAlchemy driver: connections of a SQLAlchemy engine, verb by verb.

SQL goes through ``Connection.exec_driver_sql`` after core's translation of the placeholders
(no statement compilation), and rows are read from the DB-API cursor into core ``Row`` dicts
(core's ``CursorRows``; SQLAlchemy's asyncio results are buffered, so reading them needs no
``await``). On ``postgresql+psycopg`` the driver is a subclass (``_psycopg_async``).
docs/backends/sqlalchemy.md ("How statements run", "Round trips") says what users see.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from functools import partial
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection  # sync: from sqlalchemy import Connection
from sqlalchemy.pool import QueuePool

from structum_lab.plugins.database import IsolationLevel, ParameterError, PoolInfo, kit
from structum_lab.plugins.database.kit import ASYNC, AsyncCursorRows, AsyncDriverBase, AsyncRows, Bound

from ._engine import ERROR_CLASSES, EngineParts, sync_connection

__all__ = ["AsyncSQLAlchemyDriver", "driver_for", "rows_of"]

_NO_PARAMS: Final = {"no_parameters": True}


def rows_of(result: sa.CursorResult[Any]) -> AsyncCursorRows:
    """The rows of one statement, from the DB-API cursor under SQLAlchemy's result (which
    their end closes). No cursor: DML without RETURNING, whose cursor SQLAlchemy has closed."""
    cursor: Any = result.cursor
    if cursor is None:
        return AsyncCursorRows(None, rowcount=result.rowcount)
    return AsyncCursorRows(cursor, close=result.close)


def _call(_sa_conn: sa.Connection, function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)``, through ``run_sync``: in SQLAlchemy's greenlet, where its asyncio drivers may wait."""
    return function(*args)


def _execute_streaming(sa_conn: sa.Connection, sql: str, params: Any, batch_size: int) -> sa.CursorResult[Any]:
    options = {"stream_results": True, "max_row_buffer": batch_size}
    if params is None:
        return sa_conn.exec_driver_sql(sql, execution_options={**options, **_NO_PARAMS})
    return sa_conn.exec_driver_sql(sql, tuple(params) if type(params) is list else params, execution_options=options)


def reset_driver_transaction(sa_conn: sa.Connection) -> None:
    """Roll back at the driver after a failed COMMIT, which SQLAlchemy counts as the end of the
    transaction while the driver may still be in it (SQLite after SQLITE_BUSY); a connection
    that cannot even roll back is invalidated rather than pooled."""
    try:
        dbapi_connection = sa_conn.connection.dbapi_connection
        if dbapi_connection is not None:
            dbapi_connection.rollback()
    except Exception:
        sa_conn.invalidate()


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
    on_connection = kit.ListenerOf("_open")

    def __init__(self, parts: EngineParts, **features: Any) -> None:
        """``features``: the flags a subclass adds."""
        self.parts = parts
        self._engine = parts.engine
        self._open = parts.open
        self._dialect = dialect = parts.dialect
        self.translator = parts.translator
        self.limits = parts.limits
        self.loggers = parts.loggers
        sql = kit.dialect_features(dialect)
        self.features = kit.Features(server_side_cursors=True, logs_sql=True, **sql, **features)
        # Every connection lent out, until it is returned: a forgotten one (in a reference cycle
        # with its transaction) would meet SQLAlchemy's weakref rescue before our wrapper's
        # __del__ and be returned twice, the second time under another user.
        self._lent: set[AsyncConnection] = set()
        self._closed = False

    # -- the pool ----------------------------------------------------------------------

    async def close(self) -> None:
        self._closed = True
        await self._engine.dispose()

    def after_fork(self) -> object:
        """SQLAlchemy's recipe: a pool of its own, the parent's connections left open and unused."""
        engine = self.parts.sa_engine
        inherited = engine.pool
        engine.dispose(close=False)
        self._lent = set()
        return inherited

    def pool_figures(self, checked_out: int) -> PoolInfo:
        pool = self.parts.sa_engine.pool
        if not isinstance(pool, QueuePool):  # StaticPool (in-memory SQLite): one shared connection
            return kit.pool_figures(checked_out, 1, 1, 1, available=int(not checked_out), overflow=0)
        out = pool.checkedout()
        # The open connections: checkedin() also counts slots whose connection was closed
        # (invalidated after an error or a cancellation) until their next checkout. QueuePool
        # counts overflow from -size.
        total = max(self._open.count, out)
        return kit.pool_figures(out, total, pool.size(), self.limits.max_size, overflow=max(0, pool.overflow()))

    async def acquire(self, *, ping: bool) -> AsyncConnection:
        parts = self.parts
        try:
            # The checkout's ping (``_events``): no answer in time, a dead connection.
            with kit.round_trip_cap(parts.ping_budget), kit.forced_ping() if ping else nullcontext():
                sa_conn: AsyncConnection = await self._engine.connect()
        except sa_exc.TimeoutError as exc:
            raise kit.PoolExhausted from exc
        except (sa_exc.DBAPIError, OSError) as exc:  # asyncpg raises OSError when it cannot connect
            orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
            if isinstance(orig, TimeoutError) and not str(orig):  # asyncpg's says nothing
                raise TimeoutError(f"no answer within connect_timeout={self.parts.connect_timeout:g} s") from exc
            raise
        self._lent.add(sa_conn)
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
            kit.log.debug("error while returning a connection to the pool", exc_info=True)

    def _broken(self, raw: AsyncConnection) -> bool:
        """Whether the connection died where SQLAlchemy has not seen it (it sees its own statements)."""
        return False

    def describe(self, raw: AsyncConnection) -> str:
        sa_conn = sync_connection(raw)
        if sa_conn.closed or sa_conn.invalidated:
            return "closed"
        try:
            return kit.describe_driver_connection(sa_conn.connection.driver_connection)
        except sa_exc.SQLAlchemyError:
            return "closed"

    def abandon(self, raw: AsyncConnection) -> None:
        self._lent.discard(raw)

    # -- transactions and statements ---------------------------------------------------

    async def begin(self, raw: AsyncConnection, isolation: IsolationLevel | None, readonly: bool) -> None:
        dialect = self._dialect
        if isolation is not None:
            await raw.execution_options(isolation_level=kit.isolation_name(dialect, isolation))
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
        # A server-side cursor (stream_results): each fetch may be a round trip.
        if ASYNC:  # ASYNC
            result = await raw.run_sync(_execute_streaming, sql, params, batch_size)
            run: Any = partial(raw.run_sync, _call)  # type: ignore[call-arg]
        else:
            result, run = _execute_streaming(raw, sql, params, batch_size), None  # type: ignore[arg-type]
        return AsyncCursorRows(result, keys=list(result.keys()), rowcount=-1, close=result.close, run=run)

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
