"""The connection and result objects of ``AsyncSQLAlchemyDatabase``.

SQLAlchemy buffers the rows of an async result, so fetching is synchronous work
behind ``await``: the result object reuses the sync one and only adds the ``async``
surface.
"""

from __future__ import annotations

import logging
from asyncio import get_running_loop, shield
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import exc as sa_exc

from structum_lab.plugins.database import Params, ProgrammingError, Row, TransactionError
from structum_lab.plugins.database.kit import (
    ABORTED_TRANSACTION,
    CONNECTION_ENDED,
    NOTHING_EXECUTED,
    AsyncBufferedResult,
    AwaitableResult,
    Translator,
    executemany_batches,
    leaks,
)

from ._connection import STATEMENT_ERRORS, SQLAlchemyResult, postgres_aborted, reset_driver_transaction, statement_error

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection as SAAsyncConnection
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.ext.asyncio import AsyncTransaction as SAAsyncTransaction

    from ._async import AsyncSQLAlchemyDatabase

__all__ = ["AsyncSQLAlchemyConnection", "AsyncSQLAlchemyResult", "detached"]

log = logging.getLogger("structum_lab.plugins.database")
_NO_PARAMS = {"no_parameters": True}
_epoch = leaks.epoch


def detached(result: SQLAlchemyResult) -> AsyncBufferedResult:
    buffered = result.buffered()
    return AsyncBufferedResult(buffered.keys(), buffered.fetchall(), buffered.rowcount)


class AsyncSQLAlchemyResult(AwaitableResult):
    """Rows of one statement; ``await result.fetchone()``, ``rowcount``. The rows arrived
    with the statement (SQLAlchemy's asyncio results are buffered), so nothing is awaited."""

    __slots__ = ()
    _sync: SQLAlchemyResult

    def __init__(self, sync: SQLAlchemyResult) -> None:
        super().__init__(sync)


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

    __slots__ = ("_db", "_epoch", "_last", "_loop", "_sa", "_translate_sql", "_tx")

    def __init__(self, db: AsyncSQLAlchemyDatabase, sa_conn: SAAsyncConnection, translator: Translator) -> None:
        self._db = db
        self._epoch = _epoch()
        self._loop = get_running_loop()  # where the connection must be returned if it leaks
        self._sa: SAAsyncConnection | None = sa_conn
        self._tx: SAAsyncTransaction | None = None
        self._translate_sql = translator
        self._last: AsyncSQLAlchemyResult | None = None

    def __del__(self, _reclaim_later: Any = leaks.reclaim_later) -> None:
        # Dropped while still open: the reaper thread has the event loop roll it back and
        # return it. SQLAlchemy's own rescue drops asyncio connections without closing them.
        sa_conn = self._sa
        if sa_conn is not None:
            self._sa = None
            _reclaim_later(self._epoch, self._db._reclaim, sa_conn, self._loop)

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
            elif type(bound) is list:
                # SQLAlchemy reads a list as many parameter sets (executemany); one set is a tuple.
                result = await sa_conn.exec_driver_sql(driver_sql, tuple(bound))
            else:
                result = await sa_conn.exec_driver_sql(driver_sql, bound)
        except STATEMENT_ERRORS as exc:
            raise statement_error(self._db, exc) from exc
        self._last = wrapped = AsyncSQLAlchemyResult(SQLAlchemyResult(result))
        return wrapped

    async def executemany(self, sql: str, params_seq: Iterable[Params]) -> int:
        sa_conn = self._live()
        statement = self._translate_sql.prepare(sql)
        batch = statement.bind_many(params_seq)
        if not batch:
            return 0
        param_sets = [tuple(b) if type(b) is list else b for b in batch]
        total = 0
        try:
            for chunk in executemany_batches(param_sets):  # each a round trip under statement_deadline
                result = await sa_conn.exec_driver_sql(statement.sql, chunk)
                total = total + result.rowcount if total >= 0 and result.rowcount >= 0 else -1
        except STATEMENT_ERRORS as exc:
            raise statement_error(self._db, exc) from exc
        return total

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
        # Shielded: a second cancellation (asyncio.timeout, a TaskGroup) arriving during the
        # return would leave the connection checked out of SQLAlchemy's pool for good.
        await shield(self._db._release(sa_conn))

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
