"""``AsyncSQLAlchemyDatabase``: the asyncio twin of ``SQLAlchemyDatabase``.

Same options and semantics, on ``sqlalchemy.ext.asyncio``. The connection and result
objects are in ``_async_connection.py``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import exc as sa_exc

from structum_lab.plugins.database import (
    ConfigurationError,
    DatabaseError,
    DatabaseURL,
    HealthCheckResult,
    IsolationLevel,
    Params,
    TransactionError,
)
from structum_lab.plugins.database.kit import (
    FORK,
    NESTED_OPTIONS,
    AsyncBufferedResult,
    TransactionScope,
    adopt,
    leaks,
    normalize_isolation,
    round_trip_cap,
    run_health_check_async,
)

from ._async_connection import AsyncSQLAlchemyConnection, AsyncSQLAlchemyResult, detached
from ._common import EngineDatabase, describe_connection
from ._database import _ping

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection as SAAsyncConnection
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

__all__ = ["AsyncSQLAlchemyConnection", "AsyncSQLAlchemyDatabase", "AsyncSQLAlchemyResult"]

log = logging.getLogger("structum_lab.plugins.database")


class _AsyncTransaction:
    __slots__ = ("_conn", "_db", "_isolation", "_nested", "_readonly", "_started", "_token")

    def __init__(self, db: AsyncSQLAlchemyDatabase, isolation: IsolationLevel | None, readonly: bool) -> None:
        self._db = db
        self._isolation = isolation
        self._readonly = readonly
        self._nested: Any = None
        self._started = 0.0

    async def __aenter__(self) -> AsyncSQLAlchemyConnection:
        db = self._db
        current = db._scope.current()
        if current is not None:
            if self._isolation is not None or self._readonly:
                raise TransactionError(NESTED_OPTIONS)
            self._nested = current.transaction()
            return await self._nested.__aenter__()  # type: ignore[no-any-return]
        if db._observed():
            self._started = time.perf_counter()
        sa_conn = await db._checkout(self._isolation, self._readonly)
        conn = AsyncSQLAlchemyConnection(db, sa_conn, db._translator)
        try:
            await conn._begin()
            if self._readonly and (sql := db._readonly_sql(True)):
                await sa_conn.exec_driver_sql(sql)
        except BaseException as exc:
            await asyncio.shield(conn.close())
            if isinstance(exc, sa_exc.DBAPIError):
                raise db._translate(exc) from exc
            raise
        self._conn = conn
        self._token = db._scope.enter(conn)
        return conn

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if self._nested is not None:
            await self._nested.__aexit__(exc_type, exc, tb)
            return
        db = self._db
        conn = self._conn
        db._scope.leave(self._token)
        error: BaseException | None = exc
        try:
            if conn.closed:
                return
            if exc_type is None:
                try:
                    await conn._finish(commit=True)
                except sa_exc.DBAPIError as commit_error:
                    error = db._translate(commit_error)
                    raise error from commit_error
                except DatabaseError as refused:  # an aborted transaction is not reported as committed
                    error = refused
                    raise
            else:
                try:
                    await conn._finish(commit=False)
                except (sa_exc.DBAPIError, asyncio.CancelledError):
                    log.debug("rollback failed after %s", exc_type.__name__, exc_info=True)
            if self._readonly and db._dialect == "sqlite":
                await conn.sqlalchemy_connection.exec_driver_sql("PRAGMA query_only = 0")
        finally:
            await conn.close()
            if self._started:
                db._transaction_finished("commit" if error is None else "rollback", self._started, error)


class AsyncSQLAlchemyDatabase(EngineDatabase):
    """A database on a SQLAlchemy ``AsyncEngine``.

    A bare ``postgresql://`` uses psycopg 3 in async mode, ``sqlite://`` aiosqlite,
    ``mysql://``/``mariadb://`` aiomysql; ``postgresql+asyncpg://`` and
    ``mysql+asyncmy://`` work when those drivers are installed.
    """

    is_async = True
    _engine: AsyncEngine
    _scope: TransactionScope[AsyncSQLAlchemyConnection]

    def __init__(
        self,
        url: str | DatabaseURL,
        *,
        pool_size: int = 5,
        max_overflow: int = 10,
        pool_timeout: float = 30.0,
        pool_recycle: float | None = None,
        pool_pre_ping: bool = True,
        pool_use_lifo: bool = False,
        echo: bool = False,
        connect_args: Mapping[str, Any] | None = None,
        connect_timeout: float | None = 10.0,
        statement_timeout: float | None = None,
        statement_deadline: float | None = None,
        isolation_level: str | None = None,
        health_check_timeout: float = 5.0,
        health_degraded_ms: float = 1000.0,
        name: str | None = None,
        engine_options: Mapping[str, Any] | None = None,
        prepare_threshold: int | str | None = 5,
    ) -> None:
        if importlib.util.find_spec("greenlet") is None:
            raise ConfigurationError(
                'AsyncSQLAlchemyDatabase needs greenlet: pip install "structum-database-sqlalchemy[asyncio]"'
            )
        self._init_engine(
            url,
            is_async=True,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            pool_recycle=pool_recycle,
            pool_pre_ping=pool_pre_ping,
            pool_use_lifo=pool_use_lifo,
            echo=echo,
            connect_args=connect_args,
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
            statement_deadline=statement_deadline,
            isolation_level=isolation_level,
            health_check_timeout=health_check_timeout,
            health_degraded_ms=health_degraded_ms,
            name=name,
            engine_options=engine_options,
            prepare_threshold=prepare_threshold,
        )

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy ``AsyncEngine``."""
        return self._engine

    def transaction(self, *, isolation: IsolationLevel | None = None, readonly: bool = False) -> _AsyncTransaction:
        """``async with db.transaction() as conn:`` - commit on success, rollback on exception."""
        return _AsyncTransaction(self, normalize_isolation(isolation) if isolation else None, readonly)

    async def get_connection(self) -> AsyncSQLAlchemyConnection:
        """A connection you end yourself: ``await conn.commit()``, then ``await conn.close()``."""
        leaks.ensure_reaper()  # returns the connection if it is garbage-collected open
        sa_conn = await self._checkout(None, False)
        conn = AsyncSQLAlchemyConnection(self, sa_conn, self._translator)
        try:
            await conn._begin()
        except BaseException as exc:  # cancellation included: the connection goes back either way
            await asyncio.shield(conn.close())
            if isinstance(exc, sa_exc.DBAPIError):
                raise self._translate(exc) from exc
            raise
        return conn

    async def execute(self, sql: str, params: Params = None) -> AsyncBufferedResult:
        """Run one statement on its own and return all of its rows.

        On PostgreSQL it runs in autocommit: one round trip instead of three. Elsewhere
        it is a transaction of its own. Inside an open ``transaction()`` of the calling
        task it runs in that transaction.
        """
        current = self._scope.current()
        if current is not None:
            return detached((await current.execute(sql, params))._sync)
        sa_conn = await self._checkout(None, False)
        conn = AsyncSQLAlchemyConnection(self, sa_conn, self._translator)
        try:
            if self._dialect == "postgresql":
                await sa_conn.execution_options(isolation_level="AUTOCOMMIT")
                return detached((await conn.execute(sql, params))._sync)
            await conn._begin()
            result = detached((await conn.execute(sql, params))._sync)
            await conn._finish(commit=True)
            return result
        except sa_exc.DBAPIError as exc:
            raise self._translate(exc) from exc
        finally:
            await conn.close()

    @asynccontextmanager
    async def get_session(self, **session_options: Any) -> AsyncIterator[AsyncSession]:
        """An ``AsyncSession``, closed at the end of the block and rolled back if it raises.

        Inside an open ``transaction()`` the session joins it (commits become savepoints).
        """
        from sqlalchemy.ext.asyncio import AsyncSession

        current = self._scope.current()
        if current is not None:
            async with current.session() as joined:
                yield joined
            return
        sa_conn = await self._checkout(None, False)
        try:
            async with AsyncSession(bind=sa_conn, **session_options) as session:
                try:
                    yield session
                except BaseException:
                    await session.rollback()
                    raise
        finally:
            await self._release(sa_conn)

    async def health_check(self) -> HealthCheckResult:
        """One round trip with a hard deadline; never raises. DEGRADED when the pool is exhausted."""
        result = await run_health_check_async(
            self._probe,
            timeout_s=self.health_check_timeout,
            degraded_ms=self.health_degraded_ms,
            secrets=self._secrets,
            details=self._health_details,
        )
        self._plugins.health_checked(self, result)
        return result

    async def shutdown(self) -> None:
        """Close every pooled connection. Idempotent; the database is unusable afterwards."""
        if self._fork_epoch != FORK.epoch:
            adopt(self, self._after_fork)  # a forked child closes its own pool, never the parent's
        self._closed = True
        await self._engine.dispose()

    async def __aenter__(self) -> AsyncSQLAlchemyDatabase:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    # -- internals ---------------------------------------------------------------------

    async def _checkout(self, isolation: IsolationLevel | None, readonly: bool) -> SAAsyncConnection:
        self._check_open()
        started = self._stats.checkout_started()
        try:
            with round_trip_cap(self._ping_budget):  # the pre-ping: no answer in time, a dead connection
                sa_conn = await self._engine.connect()
        except sa_exc.TimeoutError as exc:
            raise self._exhausted(started) from exc
        except (sa_exc.DBAPIError, OSError) as exc:  # asyncpg raises OSError when it cannot connect
            raise self._connect_failed(started, exc) from exc
        except (TypeError, ValueError) as exc:  # the driver's connect() refused its arguments
            raise self._driver_refused(started, exc) from exc
        except BaseException:
            self._stats.checkout_failed(started, timed_out=False)  # cancelled while waiting
            raise
        self._stats.checkout_done(started)
        self._lent.add(sa_conn)
        try:
            if isolation is not None:
                await sa_conn.execution_options(isolation_level=self._isolation_option(isolation))
            if readonly and self._dialect == "postgresql":
                await sa_conn.execution_options(postgresql_readonly=True)
        except (sa_exc.ArgumentError, sa_exc.DBAPIError) as exc:
            await self._release(sa_conn)
            raise self._error(exc, context=f"cannot use isolation level {isolation!r}") from exc
        return sa_conn

    async def _release(self, sa_conn: SAAsyncConnection) -> None:
        self._stats.released()
        self._lent.discard(sa_conn)
        try:
            await sa_conn.close()
        except sa_exc.DBAPIError:
            log.debug("error while returning a connection to the pool", exc_info=True)

    def _reclaim(self, sa_conn: SAAsyncConnection, loop: asyncio.AbstractEventLoop) -> None:
        """Return a connection whose wrapper was garbage-collected open (on the reaper thread)."""
        detail = describe_connection(sa_conn.sync_connection)
        if not leaks.run_on_loop(loop, self._release(sa_conn)):
            # Its event loop is gone: the driver connection cannot be closed without it.
            self._stats.released()
        leaks.warn_leak(self._name, detail)

    async def _probe(self, timeout_s: float) -> None:
        self._refuse_if_exhausted()
        with round_trip_cap(timeout_s):  # the probe's round trips end with the health deadline
            sa_conn = await self._checkout(None, False)
            try:
                if not self._pre_ping:
                    await sa_conn.run_sync(_ping)
            finally:
                await self._release(sa_conn)
