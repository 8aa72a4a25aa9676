"""The connection, result and transaction objects of ``AsyncPostgresDatabase``.

The asyncio twins of ``_connection.py``, with the same transaction model (psycopg's
implicit ``BEGIN``). Leaving a block through an exception (cancellation included)
rolls back and returns the connection under ``asyncio.shield``, so a second
cancellation cannot leak a pooled connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

import psycopg
from psycopg import pq
from psycopg.rows import tuple_row

from structum_lab.plugins.database import (
    DatabaseError,
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
    executemany_batches,
    leaks,
    paused_gc,
)

from ._common import TRANSLATOR, sql_log
from ._connection import _no_rows_or
from ._pool import copy_statement, psycopg_isolation

if TYPE_CHECKING:
    from ._async import AsyncPostgresDatabase

__all__ = ["AsyncPostgresConnection", "AsyncPostgresResult", "async_commit"]

log = logging.getLogger("structum_lab.plugins.database")

_IDLE = pq.TransactionStatus.IDLE
_INERROR = pq.TransactionStatus.INERROR
_INTRANS = pq.TransactionStatus.INTRANS
_translate_sql = TRANSLATOR.__call__
_epoch = leaks.epoch


class AsyncPostgresResult:
    """Rows of one statement: ``await result.fetchone()``, ``rowcount``, ``async for row in result``."""

    __slots__ = ("_cursor", "_db", "_done")

    def __init__(self, cursor: psycopg.AsyncCursor[Row], db: Any) -> None:
        self._cursor = cursor
        self._db = db
        self._done = False

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def cursor(self) -> psycopg.AsyncCursor[Row]:
        """The psycopg cursor that holds the rows (escape hatch)."""
        return self._cursor

    def keys(self) -> list[str]:
        description = self._cursor.description
        return [column.name for column in description] if description else []

    async def fetchone(self) -> Row | None:
        if self._done:
            return None
        try:
            return await self._cursor.fetchone()
        except psycopg.Error as exc:
            raise _no_rows_or(self._db, exc, self._cursor) from exc

    async def fetchmany(self, size: int | None = None) -> list[Row]:
        if self._done:
            return []
        cursor = self._cursor
        try:
            with paused_gc(min(size or 0, max(cursor.rowcount, 0))):
                return await cursor.fetchmany(size or 0)
        except psycopg.Error as exc:
            raise _no_rows_or(self._db, exc, cursor) from exc

    async def fetchall(self) -> list[Row]:
        if self._done:
            return []
        cursor = self._cursor
        try:
            with paused_gc(cursor.rowcount):
                return await cursor.fetchall()
        except psycopg.Error as exc:
            raise _no_rows_or(self._db, exc, cursor) from exc

    async def scalar(self) -> Any:
        if self._done:
            return None
        cursor: Any = self._cursor
        try:
            cursor.row_factory = tuple_row  # by position: two columns may share a name
            values = await cursor.fetchone()
        except psycopg.Error as exc:
            raise _no_rows_or(self._db, exc, cursor) from exc
        self._done = True
        return None if values is None else values[0]

    async def __aiter__(self) -> AsyncIterator[Row]:
        while (row := await self.fetchone()) is not None:
            yield row


class _AsyncSavepoint:
    __slots__ = ("_conn", "_name")

    def __init__(self, conn: AsyncPostgresConnection) -> None:
        self._conn = conn
        self._name = ""

    async def __aenter__(self) -> AsyncPostgresConnection:
        conn = self._conn
        raw = conn._live()
        conn._depth += 1
        self._name = name = f"structum_sp_{conn._depth}"
        try:
            await raw.execute(f"SAVEPOINT {name}", prepare=False)
        except psycopg.Error as exc:
            conn._depth -= 1
            raise conn._db._translate(exc, raw) from exc
        return conn

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        conn = self._conn
        conn._depth -= 1
        raw = conn._raw
        if raw is None or raw.closed:
            return
        name = self._name
        if exc_type is None:
            try:
                await raw.execute(f"RELEASE SAVEPOINT {name}", prepare=False)
            except psycopg.Error as error:
                raise conn._db._translate(error, raw) from error
        else:
            try:
                await raw.execute(f"ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}", prepare=False)
            except (psycopg.Error, asyncio.CancelledError):
                log.debug("rollback to savepoint failed after %s", exc_type.__name__, exc_info=True)


class AsyncPostgresConnection:
    """A pooled async connection inside a transaction; use it from one task."""

    __slots__ = ("_db", "_depth", "_epoch", "_last", "_raw")

    def __init__(self, db: AsyncPostgresDatabase, raw: psycopg.AsyncConnection[Row]) -> None:
        self._db = db
        self._epoch = _epoch()
        self._raw: psycopg.AsyncConnection[Row] | None = raw
        self._last: AsyncPostgresResult | None = None
        self._depth = 0

    def __del__(self, _reclaim_later: Any = leaks.reclaim_later) -> None:
        # Dropped while still open: the reaper thread has the event loop roll it back and
        # return it (see the sync connection).
        raw = self._raw
        if raw is not None:
            self._raw = None
            _reclaim_later(self._epoch, self._db._reclaim, raw)

    def _live(self) -> psycopg.AsyncConnection[Row]:
        raw = self._raw
        if raw is None:
            raise TransactionError(CONNECTION_ENDED)
        return raw

    @property
    def closed(self) -> bool:
        return self._raw is None

    @property
    def psycopg_connection(self) -> psycopg.AsyncConnection[Row]:
        """The underlying ``psycopg.AsyncConnection``, inside the same transaction."""
        return self._live()

    async def execute(self, sql: str, params: Params = None) -> AsyncPostgresResult:
        """Run one statement: ``:name`` with a dict, ``%s``/``$1`` with a tuple or list, ``%(name)s`` with a dict."""
        raw = self._raw
        if raw is None:
            raise TransactionError(CONNECTION_ENDED)
        query, bound = _translate_sql(sql, params)
        cursor = raw.cursor()
        try:
            if bound is None:
                await cursor.execute(query)
            else:
                await cursor.execute(query, bound)
        except psycopg.Error as exc:
            raise self._db._translate(exc, raw) from exc
        if self._db._echo:
            sql_log.info("%s %r", query, bound)
        self._last = result = AsyncPostgresResult(cursor, self._db)
        return result

    async def executemany(self, sql: str, params_seq: Iterable[Params]) -> int:
        raw = self._live()
        statement = TRANSLATOR.prepare(sql)
        batch = statement.bind_many(params_seq)
        if not batch:
            return 0
        cursor = raw.cursor()
        total = 0
        try:
            for chunk in executemany_batches(batch):  # each a round trip under statement_deadline
                await cursor.executemany(statement.sql, cast("Any", chunk))
                total += cursor.rowcount
        except psycopg.Error as exc:
            raise self._db._translate(exc, raw) from exc
        return total

    async def copy_records(
        self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]] | AsyncIterable[Sequence[Any]]
    ) -> int:
        """Bulk-load ``rows`` (an iterable or async iterable) with COPY; returns the count."""
        raw = self._live()
        statement = copy_statement(table, columns)
        cursor = raw.cursor()
        count = 0
        try:
            async with cursor.copy(statement) as copy:
                write_row = copy.write_row
                if isinstance(rows, AsyncIterable):
                    async for row in rows:
                        await write_row(row)
                        count += 1
                else:
                    for row in rows:
                        await write_row(row)
                        count += 1
        except psycopg.Error as exc:
            raise self._db._translate(exc, raw) from exc
        return cursor.rowcount if cursor.rowcount >= 0 else count

    def _last_result(self) -> AsyncPostgresResult:
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

    async def commit(self) -> None:
        await async_commit(self._db, self._live())

    async def rollback(self) -> None:
        raw = self._live()
        try:
            await raw.rollback()
        except psycopg.Error as exc:
            raise self._db._translate(exc, raw) from exc

    async def close(self) -> None:
        raw = self._raw
        if raw is None:
            return
        self._raw = None
        self._last = None
        await asyncio.shield(self._db._release(raw))

    async def __aenter__(self) -> AsyncPostgresConnection:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        try:
            if exc_type is None and self._raw is not None:
                await async_commit(self._db, self._raw)
        finally:
            await self.close()


class _AsyncTransaction:
    __slots__ = ("_conn", "_db", "_isolation", "_nested", "_readonly", "_started", "_token")

    def __init__(self, db: AsyncPostgresDatabase, isolation: IsolationLevel | None, readonly: bool) -> None:
        self._db = db
        self._isolation = isolation
        self._readonly = readonly
        self._nested: _AsyncSavepoint | None = None
        self._started = 0.0

    async def __aenter__(self) -> AsyncPostgresConnection:
        db = self._db
        current = db._scope.current()
        if current is not None:
            if self._isolation is not None or self._readonly:
                raise TransactionError(NESTED_OPTIONS)
            self._nested = nested = _AsyncSavepoint(current)
            return await nested.__aenter__()
        if db._observed():
            self._started = time.perf_counter()
        raw = await db._checkout()
        if self._isolation is not None or self._readonly:
            try:
                if self._isolation is not None:
                    await raw.set_isolation_level(psycopg_isolation(self._isolation))
                if self._readonly:
                    await raw.set_read_only(True)
            except BaseException:
                await asyncio.shield(db._release(raw))
                raise
        self._conn = conn = AsyncPostgresConnection(db, raw)
        self._token = db._scope.enter(conn)
        return conn

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if self._nested is not None:
            await self._nested.__aexit__(exc_type, exc, tb)
            return
        db = self._db
        conn = self._conn
        db._scope.leave(self._token)
        raw = conn._raw
        error: BaseException | None = exc
        if raw is None:  # closed inside the block: its work was rolled back
            if self._started:
                db._transaction_finished("rollback", self._started, error)
            return
        conn._raw = None
        conn._last = None
        reset = self._isolation is not None or self._readonly
        try:
            if exc_type is None:
                try:
                    if raw.pgconn.transaction_status == _INTRANS:
                        await raw.commit()  # the common case, without async_commit's extra frame
                    else:
                        await async_commit(db, raw)  # nothing to commit, aborted, or broken
                except psycopg.Error as commit_error:
                    error = db._translate(commit_error, raw)
                    await asyncio.shield(db._rollback_and_release(raw, reset))
                    raise error from commit_error
                except BaseException as commit_error:
                    error = commit_error
                    await asyncio.shield(db._rollback_and_release(raw, reset))
                    raise
                if reset:
                    await db._reset_options(raw)
                await db._release(raw)
            else:
                # Cancellation lands here most often: finish the clean-up even if cancelled again.
                await asyncio.shield(db._rollback_and_release(raw, reset))
        finally:
            if self._started:
                db._transaction_finished("commit" if error is None else "rollback", self._started, error)


async def async_commit(db: Any, raw: psycopg.AsyncConnection[Row]) -> None:
    """COMMIT, refusing to report success for a transaction PostgreSQL has aborted."""
    if raw.pgconn.transaction_status == _INERROR:
        try:
            await raw.rollback()
        except psycopg.Error:
            log.debug("rollback of an aborted transaction failed", exc_info=True)
        raise TransactionError(ABORTED_TRANSACTION, sqlstate="25P02", backend="psycopg")
    try:
        await raw.commit()
    except psycopg.Error as exc:
        error: DatabaseError = db._translate(exc, raw)
        if not raw.closed and raw.pgconn.transaction_status != _IDLE:
            try:
                await raw.rollback()
            except psycopg.Error:
                log.debug("rollback after a failed commit failed", exc_info=True)
        raise error from exc
