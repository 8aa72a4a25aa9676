"""The transaction block and the connection a database with replicas hands out.

:class:`AsyncRoutedTransaction` enters the chosen member's own ``transaction()`` block and
records which member the calling thread or task is in, so a nested ``transaction()`` is a
savepoint on that member and ``db.execute()`` joins it. :class:`AsyncTrackedConnection`
wraps a primary connection from ``get_connection()``: its commits count for
read-your-writes and its read-only errors for failover. Both report to the router
(``replicas_async.py``) through :class:`AsyncRouter`.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from contextvars import Token
from types import TracebackType
from typing import Protocol

from .._contract.errors import ConnectionFailedError, ConnectionLostError
from .._contract.protocols import AsyncConnection, AsyncDatabaseInterface, AsyncResult, IsolationLevel, Params
from .._contract.rows import Row
from .replica_state import Member

__all__ = ["CONNECTION_ERRORS", "AsyncRoutedTransaction", "AsyncRouter", "AsyncTrackedConnection", "Block", "Entry"]

#: The member a thread's or task's routed transaction is in, and that thread or task.
Entry = tuple[Member[AsyncDatabaseInterface], int]
Block = AbstractAsyncContextManager[AsyncConnection]
CONNECTION_ERRORS = (ConnectionFailedError, ConnectionLostError)


class AsyncRouter(Protocol):
    """What the blocks need from the database with replicas."""

    def _ensure_watching(self) -> None: ...
    def _current(self) -> Member[AsyncDatabaseInterface] | None: ...
    def _enter(self, member: Member[AsyncDatabaseInterface]) -> Token[Entry | None]: ...
    def _leave(self, token: Token[Entry | None]) -> None: ...
    def _writer(self) -> Member[AsyncDatabaseInterface]: ...
    async def _enter_read(
        self, isolation: IsolationLevel | None, pipeline: bool, after: str | None
    ) -> tuple[Member[AsyncDatabaseInterface], Block, AsyncConnection]: ...
    def _committed(self) -> None: ...
    def _lost(self, member: Member[AsyncDatabaseInterface], exc: BaseException) -> None: ...
    def _primary_failed(self, exc: BaseException, db: AsyncDatabaseInterface) -> None: ...


class AsyncRoutedTransaction:
    """``async with db.transaction(readonly=...) as conn:`` on a database with replicas."""

    __slots__ = (
        "_after",
        "_block",
        "_isolation",
        "_member",
        "_pipeline",
        "_readonly",
        "_router",
        "_token",
        "_written",
    )

    _block: Block
    _member: Member[AsyncDatabaseInterface]

    def __init__(
        self, router: AsyncRouter, isolation: IsolationLevel | None, readonly: bool, pipeline: bool, after: str | None
    ) -> None:
        self._router = router
        self._isolation = isolation
        self._readonly = readonly
        self._pipeline = pipeline
        self._after = after
        self._token: Token[Entry | None] | None = None
        self._written: AsyncDatabaseInterface | None = None

    async def __aenter__(self) -> AsyncConnection:
        router = self._router
        router._ensure_watching()
        active = router._current()
        if active is not None:
            # Inside a routed transaction: that member's own rules (a savepoint, or its refusal).
            self._block = active.db.transaction(
                isolation=self._isolation, readonly=self._readonly, pipeline=self._pipeline
            )
            return await self._block.__aenter__()
        if self._readonly:
            member, self._block, conn = await router._enter_read(self._isolation, self._pipeline, self._after)
        else:
            member = router._writer()
            db = member.db
            self._block = db.transaction(isolation=self._isolation, pipeline=self._pipeline)
            try:
                conn = await self._block.__aenter__()
            except BaseException as exc:
                router._primary_failed(exc, db)
                raise
            self._written = db
        self._member = member
        self._token = router._enter(member)
        return conn

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        token = self._token
        if token is None:  # nested: the member's savepoint
            return await self._block.__aexit__(exc_type, exc, tb)
        router = self._router
        router._leave(token)
        written = self._written
        try:
            suppressed = await self._block.__aexit__(exc_type, exc, tb)
        except BaseException as error:
            if written is not None:
                router._primary_failed(error, written)
            raise
        if written is not None:
            if exc is None:
                router._committed()
            else:
                router._primary_failed(exc, written)
        elif isinstance(exc, CONNECTION_ERRORS) and self._member.role == "replica":
            router._lost(self._member, exc)  # out of rotation now, not at the next read's checkout
        return suppressed


class AsyncTrackedConnection:
    """A primary connection from ``get_connection()``. Anything else it has (``psycopg_connection``,
    ``copy_records``, ...) is the wrapped connection's."""

    __slots__ = ("_conn", "_db", "_router")

    def __init__(self, router: AsyncRouter, db: AsyncDatabaseInterface, conn: AsyncConnection) -> None:
        self._router = router
        self._db = db
        self._conn = conn

    def __getattr__(self, name: str) -> object:
        return getattr(self._conn, name)

    @property
    def closed(self) -> bool:
        return self._conn.closed

    async def execute(self, sql: str, params: Params = None) -> AsyncResult:
        try:
            return await self._conn.execute(sql, params)
        except BaseException as exc:
            self._router._primary_failed(exc, self._db)
            raise

    async def executemany(self, sql: str, params_seq: Iterable[Params]) -> int:
        try:
            return await self._conn.executemany(sql, params_seq)
        except BaseException as exc:
            self._router._primary_failed(exc, self._db)
            raise

    async def fetchone(self) -> Row | None:
        return await self._conn.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Row]:
        return await self._conn.fetchmany(size)

    async def fetchall(self) -> list[Row]:
        return await self._conn.fetchall()

    def transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return self._conn.transaction()

    async def flush(self) -> None:
        await self._conn.flush()

    async def commit(self) -> None:
        try:
            await self._conn.commit()
        except BaseException as exc:
            self._router._primary_failed(exc, self._db)
            raise
        self._router._committed()

    async def rollback(self) -> None:
        await self._conn.rollback()

    async def close(self) -> None:
        await self._conn.close()

    async def __aenter__(self) -> AsyncTrackedConnection:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is None and not self._conn.closed:
                await self.commit()
        finally:
            await self.close()
