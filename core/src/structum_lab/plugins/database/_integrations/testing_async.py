"""Rollback-isolated databases for tests (used by the pytest plugin, usable on their own).

An :class:`AsyncRollbackDatabase` (``RollbackDatabase`` for sync code) pins one
connection inside a transaction that the test rolls back at the end. Everything the
code under test does through it - its own ``transaction()`` blocks, ``get_connection()``,
``commit()``, ``rollback()``, ORM sessions - runs in savepoints of that transaction, so
it behaves as usual and still leaves nothing behind. It only needs the public
``Connection`` API, so it works on every backend.

Callers are serialized, since a connection serves one caller at a time: other threads
(a FastAPI ``TestClient`` runs the app in one) or tasks wait; the same thread or task
may nest. A connection from ``get_connection()`` holds the database until it is closed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from .._contract.errors import ConfigurationError, TransactionError
from .._contract.health import HealthCheckResult
from .._contract.protocols import (
    AsyncConnection,
    AsyncDatabaseInterface,
    AsyncResult,
    IsolationLevel,
    Params,
    PoolInfo,
)
from .._contract.rows import Row
from .._engine.result_async import AsyncBufferedResult
from .locks import AsyncReentrantLock

__all__ = ["AsyncRollbackDatabase"]

_CLOSED = "this test connection has been closed; open a new one with db.transaction() or db.get_connection()"


def _session_of(conn: object) -> Any:
    session = getattr(conn, "session", None)
    if session is None:
        raise ConfigurationError(
            f"ORM sessions need the SQLAlchemy backend; this test database uses {type(conn).__name__}. "
            "Run the tests with --structum-db-backend sqlalchemy"
        )
    return session()


class _Undo(Exception):
    """Raised into a savepoint's exit to make it roll back."""


class _AsyncPinnedConnection:
    """A view of the pinned connection whose commit/rollback act on a savepoint."""

    def __init__(self, conn: AsyncConnection, lock: AsyncReentrantLock | None = None) -> None:
        self._conn = conn
        self._savepoint: AbstractAsyncContextManager[Any] | None = None
        self._closed = False
        self._lock = lock  # held until close() (a connection from get_connection())

    async def _open(self) -> None:
        self._savepoint = self._conn.transaction()
        await self._savepoint.__aenter__()

    async def _end(self, keep: bool) -> None:
        savepoint, self._savepoint = self._savepoint, None
        if savepoint is not None:
            if keep:
                await savepoint.__aexit__(None, None, None)
            else:
                await savepoint.__aexit__(_Undo, _Undo(), None)

    async def _finish(self, keep: bool) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._end(keep)
        finally:
            if self._lock is not None:
                self._lock.release()

    def _live(self) -> AsyncConnection:
        if self._closed:
            raise TransactionError(_CLOSED)
        return self._conn

    @property
    def closed(self) -> bool:
        return self._closed

    async def execute(self, sql: str, params: Params = None) -> AsyncResult:
        return await self._live().execute(sql, params)

    async def executemany(self, sql: str, params_seq: Iterable[Params]) -> int:
        return await self._live().executemany(sql, params_seq)

    async def fetchone(self) -> Row | None:
        return await self._live().fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Row]:
        return await self._live().fetchmany(size)

    async def fetchall(self) -> list[Row]:
        return await self._live().fetchall()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        async with self._live().transaction():
            yield self

    def session(self) -> Any:
        """An ORM session inside the test transaction (SQLAlchemy backend)."""
        return _session_of(self._live())

    async def commit(self) -> None:
        self._live()
        await self._end(keep=True)
        await self._open()

    async def rollback(self) -> None:
        self._live()
        await self._end(keep=False)
        await self._open()

    async def close(self) -> None:
        await self._finish(keep=False)

    async def __aenter__(self) -> _AsyncPinnedConnection:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        await self._finish(keep=exc_type is None)

    def __getattr__(self, name: str) -> Any:
        # Backend extras (copy_records, sqlalchemy_connection, ...) pass through.
        return getattr(self._live(), name)


class AsyncRollbackDatabase:
    """A database for one test: every change is rolled back when the test ends."""

    def __init__(self, database: AsyncDatabaseInterface, connection: AsyncConnection) -> None:
        self._db = database
        self._conn = connection
        self._lock = AsyncReentrantLock()

    @property
    def name(self) -> str:
        return self._db.name

    @property
    def backend(self) -> str:
        return self._db.backend

    @property
    def url(self) -> str:
        return self._db.url

    @property
    def database(self) -> AsyncDatabaseInterface:
        """The real database underneath (its pool, its engine)."""
        return self._db

    @property
    def connection(self) -> AsyncConnection:
        """The pinned connection, inside the test's transaction."""
        return self._conn

    @asynccontextmanager
    async def transaction(
        self, *, isolation: IsolationLevel | None = None, readonly: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        """A savepoint of the test transaction; isolation/readonly cannot apply and are ignored."""
        await self._lock.acquire()
        try:
            pinned = _AsyncPinnedConnection(self._conn)
            await pinned._open()
            try:
                yield pinned
            except BaseException:
                await pinned._finish(keep=False)
                raise
            await pinned._finish(keep=True)
        finally:
            self._lock.release()

    def in_transaction(self) -> bool:
        return False

    async def execute(self, sql: str, params: Params = None) -> AsyncBufferedResult:
        """One statement in a savepoint of the test transaction, rows detached."""
        async with self.transaction() as conn:
            result = await conn.execute(sql, params)
            rows = await result.fetchall() if result.keys() else []
            return AsyncBufferedResult(result.keys(), rows, result.rowcount)

    async def get_connection(self, *, readonly: bool = False) -> AsyncConnection:
        """A connection you commit/rollback/close yourself; it holds the database until closed."""
        await self._lock.acquire()
        pinned = _AsyncPinnedConnection(self._conn, self._lock)
        try:
            await pinned._open()
        except BaseException:
            self._lock.release()
            raise
        return pinned

    @asynccontextmanager
    async def get_session(self, **options: Any) -> AsyncIterator[Any]:
        async with self.transaction() as conn, conn.session() as session:  # type: ignore[attr-defined]
            yield session

    async def health_check(self) -> HealthCheckResult:
        return await self._db.health_check()

    def get_pool_info(self) -> PoolInfo:
        return self._db.get_pool_info()

    async def shutdown(self) -> None:
        """No-op: the test fixture owns the real database."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} over {self._db!r}>"
