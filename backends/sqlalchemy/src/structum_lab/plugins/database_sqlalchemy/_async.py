"""``AsyncSQLAlchemyDatabase``: the asyncio twin of ``SQLAlchemyDatabase``.

Same options and semantics, on ``sqlalchemy.ext.asyncio``. SQLAlchemy buffers the
rows of an async result, so fetching is synchronous work behind ``await``; the
result object reuses the sync one and only adds the ``async`` surface.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping
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
    ProgrammingError,
    Row,
    TransactionError,
)
from structum_lab.plugins.database.kit import (
    ABORTED_TRANSACTION,
    CONNECTION_ENDED,
    NESTED_OPTIONS,
    NOTHING_EXECUTED,
    AsyncBufferedResult,
    TransactionScope,
    Translator,
    normalize_isolation,
    run_health_check_async,
)

from ._common import EngineDatabase
from ._connection import SQLAlchemyResult, postgres_aborted, reset_driver_transaction
from ._database import _ping

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection as SAAsyncConnection
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
    from sqlalchemy.ext.asyncio import AsyncTransaction as SAAsyncTransaction

__all__ = ["AsyncSQLAlchemyConnection", "AsyncSQLAlchemyDatabase", "AsyncSQLAlchemyResult"]

log = logging.getLogger("structum_lab.plugins.database")
_NO_PARAMS = {"no_parameters": True}


def _detached(result: SQLAlchemyResult) -> AsyncBufferedResult:
    buffered = result.buffered()
    return AsyncBufferedResult(buffered.keys(), buffered.fetchall(), buffered.rowcount)


class AsyncSQLAlchemyResult:
    """Rows of one statement; ``await result.fetchone()``, ``rowcount``."""

    __slots__ = ("_sync",)

    def __init__(self, sync: SQLAlchemyResult) -> None:
        self._sync = sync

    @property
    def rowcount(self) -> int:
        return self._sync.rowcount

    def keys(self) -> list[str]:
        return self._sync.keys()

    async def fetchone(self) -> Row | None:
        return self._sync.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Row]:
        return self._sync.fetchmany(size)

    async def fetchall(self) -> list[Row]:
        return self._sync.fetchall()

    async def scalar(self) -> Any:
        return self._sync.scalar()

    async def __aiter__(self) -> AsyncIterator[Row]:
        while (row := self._sync.fetchone()) is not None:
            yield row


class _AsyncSavepoint:
    __slots__ = ("_conn", "_nested")

    def __init__(self, conn: AsyncSQLAlchemyConnection) -> None:
        self._conn = conn
        self._nested: Any = None

    async def __aenter__(self) -> AsyncSQLAlchemyConnection:
        try:
            self._nested = await self._conn._live().begin_nested()
        except sa_exc.DBAPIError as exc:
            raise self._conn._db._translate(exc) from exc
        return self._conn

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        nested = self._nested
        if nested is None or not nested.is_active:
            return
        try:
            if exc_type is None:
                await nested.commit()
            else:
                await nested.rollback()
        except sa_exc.DBAPIError as error:
            if exc_type is None:
                raise self._conn._db._translate(error) from error


class AsyncSQLAlchemyConnection:
    """A pooled async connection inside a transaction; use it from one task."""

    __slots__ = ("_db", "_last", "_sa", "_translate_sql", "_tx")

    def __init__(self, db: AsyncSQLAlchemyDatabase, sa_conn: SAAsyncConnection, translator: Translator) -> None:
        self._db = db
        self._sa: SAAsyncConnection | None = sa_conn
        self._tx: SAAsyncTransaction | None = None
        self._translate_sql = translator
        self._last: AsyncSQLAlchemyResult | None = None

    def _live(self) -> SAAsyncConnection:
        sa_conn = self._sa
        if sa_conn is None:
            raise TransactionError(CONNECTION_ENDED)
        return sa_conn

    @property
    def closed(self) -> bool:
        return self._sa is None

    @property
    def sqlalchemy_connection(self) -> SAAsyncConnection:
        """The underlying SQLAlchemy ``AsyncConnection``."""
        return self._live()

    async def _begin(self) -> None:
        self._tx = await self._live().begin()

    async def execute(self, sql: str, params: Params = None) -> AsyncSQLAlchemyResult:
        sa_conn = self._sa
        if sa_conn is None:
            raise TransactionError(CONNECTION_ENDED)
        driver_sql, bound = self._translate_sql(sql, params)
        try:
            if bound is None:
                result = await sa_conn.exec_driver_sql(driver_sql, execution_options=_NO_PARAMS)
            else:
                result = await sa_conn.exec_driver_sql(driver_sql, bound)
        except sa_exc.DBAPIError as exc:
            raise self._db._translate(exc) from exc
        except sa_exc.StatementError as exc:
            raise self._db._translate(exc.orig or exc) from exc
        self._last = wrapped = AsyncSQLAlchemyResult(SQLAlchemyResult(result))
        return wrapped

    async def executemany(self, sql: str, params_seq: Iterable[Params]) -> int:
        sa_conn = self._live()
        statement = self._translate_sql.prepare(sql)
        batch = statement.bind_many(params_seq)
        if not batch:
            return 0
        try:
            result = await sa_conn.exec_driver_sql(statement.sql, batch)
        except sa_exc.DBAPIError as exc:
            raise self._db._translate(exc) from exc
        return result.rowcount

    def _last_result(self) -> AsyncSQLAlchemyResult:
        if self._last is None:
            raise ProgrammingError(NOTHING_EXECUTED)
        return self._last

    async def fetchone(self) -> Row | None:
        return await self._last_result().fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Row]:
        return await self._last_result().fetchmany(size)

    async def fetchall(self) -> list[Row]:
        return await self._last_result().fetchall()

    def transaction(self) -> _AsyncSavepoint:
        """A nested transaction (SAVEPOINT): ``async with conn.transaction(): ...``."""
        return _AsyncSavepoint(self)

    def session(self) -> AsyncSession:
        """An ``AsyncSession`` joined to this connection's transaction (commits become savepoints)."""
        from sqlalchemy.ext.asyncio import AsyncSession

        return AsyncSession(bind=self._live(), join_transaction_mode="create_savepoint")

    async def commit(self) -> None:
        sa_conn = self._live()
        if self._db._dialect == "postgresql" and postgres_aborted(sa_conn.sync_connection):
            await self.rollback()
            raise TransactionError(ABORTED_TRANSACTION, sqlstate="25P02", backend="sqlalchemy")
        try:
            if self._tx is not None and self._tx.is_active:
                await self._tx.commit()
            elif sa_conn.in_transaction():
                await sa_conn.commit()
        except sa_exc.DBAPIError as exc:
            await sa_conn.run_sync(reset_driver_transaction)
            raise self._db._translate(exc) from exc
        try:
            self._tx = await sa_conn.begin()
        except sa_exc.DBAPIError as exc:
            raise self._db._translate(exc) from exc

    async def rollback(self) -> None:
        sa_conn = self._live()
        try:
            if self._tx is not None and self._tx.is_active:
                await self._tx.rollback()
            elif sa_conn.in_transaction():
                await sa_conn.rollback()
            self._tx = await sa_conn.begin()
        except sa_exc.DBAPIError as exc:
            raise self._db._translate(exc) from exc

    async def close(self) -> None:
        sa_conn = self._sa
        if sa_conn is None:
            return
        self._sa = None
        self._last = None
        await self._db._release(sa_conn)

    async def _finish(self, commit: bool) -> None:
        tx = self._tx
        sa_conn = self._live()
        if commit:
            if self._db._dialect == "postgresql" and postgres_aborted(sa_conn.sync_connection):
                await self._finish(commit=False)
                raise TransactionError(ABORTED_TRANSACTION, sqlstate="25P02", backend="sqlalchemy")
            try:
                if tx is not None and tx.is_active:
                    await tx.commit()
                elif sa_conn.in_transaction():
                    await sa_conn.commit()
            except sa_exc.DBAPIError:
                await sa_conn.run_sync(reset_driver_transaction)
                raise
        elif tx is not None and tx.is_active:
            await tx.rollback()
        elif sa_conn.in_transaction():
            await sa_conn.rollback()

    async def __aenter__(self) -> AsyncSQLAlchemyConnection:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        try:
            if exc_type is None and self._sa is not None:
                try:
                    await self._finish(commit=True)
                except sa_exc.DBAPIError as error:
                    raise self._db._translate(error) from error
        finally:
            await self.close()


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
            await db._release(sa_conn)
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
        isolation_level: str | None = None,
        health_check_timeout: float = 5.0,
        health_degraded_ms: float = 1000.0,
        name: str | None = None,
        engine_options: Mapping[str, Any] | None = None,
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
            isolation_level=isolation_level,
            health_check_timeout=health_check_timeout,
            health_degraded_ms=health_degraded_ms,
            name=name,
            engine_options=engine_options,
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
        sa_conn = await self._checkout(None, False)
        conn = AsyncSQLAlchemyConnection(self, sa_conn, self._translator)
        try:
            await conn._begin()
        except sa_exc.DBAPIError as exc:
            await self._release(sa_conn)
            raise self._translate(exc) from exc
        return conn

    async def execute(self, sql: str, params: Params = None) -> AsyncBufferedResult:
        """Run one statement on its own and return all of its rows.

        On PostgreSQL it runs in autocommit: one round trip instead of three. Elsewhere
        it is a transaction of its own. Inside an open ``transaction()`` of the calling
        task it runs in that transaction.
        """
        current = self._scope.current()
        if current is not None:
            return _detached((await current.execute(sql, params))._sync)
        sa_conn = await self._checkout(None, False)
        conn = AsyncSQLAlchemyConnection(self, sa_conn, self._translator)
        try:
            if self._dialect == "postgresql":
                await sa_conn.execution_options(isolation_level="AUTOCOMMIT")
                return _detached((await conn.execute(sql, params))._sync)
            await conn._begin()
            result = _detached((await conn.execute(sql, params))._sync)
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
            sa_conn = await self._engine.connect()
        except sa_exc.TimeoutError as exc:
            raise self._exhausted(started) from exc
        except sa_exc.DBAPIError as exc:
            raise self._connect_failed(started, exc) from exc
        except BaseException:
            self._stats.checkout_failed(started, timed_out=False)  # cancelled while waiting
            raise
        self._stats.checkout_done(started)
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
        try:
            await sa_conn.close()
        except sa_exc.DBAPIError:
            log.debug("error while returning a connection to the pool", exc_info=True)

    async def _probe(self, timeout_s: float) -> None:
        self._refuse_if_exhausted()
        sa_conn = await self._checkout(None, False)
        try:
            if not self._pre_ping:
                await sa_conn.run_sync(_ping)
        finally:
            await self._release(sa_conn)
