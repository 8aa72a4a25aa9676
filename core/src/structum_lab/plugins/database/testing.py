"""Rollback-isolated databases for tests (used by the pytest plugin, usable on their own).

A :class:`RollbackDatabase` pins one connection inside a transaction that the test
rolls back at the end. Everything the code under test does through it - its own
``transaction()`` blocks, ``get_connection()``, ``commit()``, ``rollback()``, ORM
sessions - runs in savepoints of that transaction, so it behaves as usual and still
leaves nothing behind. It only needs the public ``Connection`` API, so it works on
every backend.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager, contextmanager
from typing import Any

from ._errors import ConfigurationError, TransactionError
from ._health import HealthCheckResult
from ._protocols import (
    AsyncConnection,
    AsyncDatabaseInterface,
    AsyncResult,
    Connection,
    DatabaseInterface,
    IsolationLevel,
    Params,
    PoolInfo,
    Result,
)
from ._results import AsyncBufferedResult, BufferedResult
from ._rows import Row

__all__ = ["AsyncRollbackDatabase", "RollbackDatabase"]

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
    """Raised into a savepoint's __exit__ to make it roll back."""


class _PinnedConnection:
    """A view of the pinned connection whose commit/rollback act on a savepoint."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._savepoint: AbstractContextManager[Any] | None = None
        self._closed = False

    def _open(self) -> None:
        self._savepoint = self._conn.transaction()
        self._savepoint.__enter__()

    def _end(self, keep: bool) -> None:
        savepoint, self._savepoint = self._savepoint, None
        if savepoint is not None:
            if keep:
                savepoint.__exit__(None, None, None)
            else:
                savepoint.__exit__(_Undo, _Undo(), None)

    def _live(self) -> Connection:
        if self._closed:
            raise TransactionError(_CLOSED)
        return self._conn

    @property
    def closed(self) -> bool:
        return self._closed

    def execute(self, sql: str, params: Params = None) -> Result:
        return self._live().execute(sql, params)

    def executemany(self, sql: str, params_seq: Iterable[Params]) -> int:
        return self._live().executemany(sql, params_seq)

    def fetchone(self) -> Row | None:
        return self._live().fetchone()

    def fetchmany(self, size: int | None = None) -> list[Row]:
        return self._live().fetchmany(size)

    def fetchall(self) -> list[Row]:
        return self._live().fetchall()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self._live().transaction():
            yield self

    def session(self) -> Any:
        """An ORM session inside the test transaction (SQLAlchemy backend)."""
        return _session_of(self._live())

    def commit(self) -> None:
        self._live()
        self._end(keep=True)
        self._open()

    def rollback(self) -> None:
        self._live()
        self._end(keep=False)
        self._open()

    def close(self) -> None:
        if not self._closed:
            self._end(keep=False)
            self._closed = True

    def __enter__(self) -> _PinnedConnection:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if not self._closed:
            self._end(keep=exc_type is None)
            self._closed = True

    def __getattr__(self, name: str) -> Any:
        # Backend extras (copy_records, sqlalchemy_connection, ...) pass through.
        return getattr(self._live(), name)


class RollbackDatabase:
    """A database for one test: every change is rolled back when the test ends.

    Calls from other threads (a FastAPI ``TestClient`` runs the app in one) share the
    pinned connection and are serialized, since a connection serves one caller at a time.
    """

    def __init__(self, database: DatabaseInterface, connection: Connection) -> None:
        self._db = database
        self._conn = connection
        self._lock = threading.RLock()

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
    def database(self) -> DatabaseInterface:
        """The real database underneath (its pool, its engine)."""
        return self._db

    @property
    def connection(self) -> Connection:
        """The pinned connection, inside the test's transaction."""
        return self._conn

    @contextmanager
    def transaction(self, *, isolation: IsolationLevel | None = None, readonly: bool = False) -> Iterator[Connection]:
        """A savepoint of the test transaction; isolation/readonly cannot apply and are ignored."""
        with self._lock:
            pinned = _PinnedConnection(self._conn)
            pinned._open()
            try:
                yield pinned
            except BaseException:
                pinned._closed = True
                pinned._end(keep=False)
                raise
            else:
                pinned._closed = True
                pinned._end(keep=True)

    def in_transaction(self) -> bool:
        return False

    def execute(self, sql: str, params: Params = None) -> BufferedResult:
        """One statement in a savepoint of the test transaction, rows detached."""
        with self.transaction() as conn:
            result = conn.execute(sql, params)
            rows = result.fetchall() if result.keys() else []
            return BufferedResult(result.keys(), rows, result.rowcount)

    def get_connection(self) -> Connection:
        """A connection you commit/rollback/close yourself; it holds the lock until closed."""
        self._lock.acquire()
        pinned = _LockedPinnedConnection(self._conn, self._lock)
        pinned._open()
        return pinned

    @contextmanager
    def get_session(self, **options: Any) -> Iterator[Any]:
        with self.transaction() as conn, conn.session() as session:  # type: ignore[attr-defined]
            yield session

    def health_check(self) -> HealthCheckResult:
        return self._db.health_check()

    def get_pool_info(self) -> PoolInfo:
        return self._db.get_pool_info()

    def shutdown(self) -> None:
        """No-op: the test fixture owns the real database."""

    def __repr__(self) -> str:
        return f"<RollbackDatabase over {self._db!r}>"


class _LockedPinnedConnection(_PinnedConnection):
    def __init__(self, conn: Connection, lock: threading.RLock) -> None:
        super().__init__(conn)
        self._lock = lock

    def close(self) -> None:
        if not self._closed:
            try:
                super().close()
            finally:
                self._lock.release()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if not self._closed:
            try:
                super().__exit__(exc_type, exc, tb)
            finally:
                self._lock.release()


# -- asyncio ------------------------------------------------------------------------------


class _AsyncPinnedConnection:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
        self._savepoint: AbstractAsyncContextManager[Any] | None = None
        self._closed = False

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
        if not self._closed:
            await self._end(keep=False)
            self._closed = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._live(), name)


class AsyncRollbackDatabase:
    """The asyncio counterpart of :class:`RollbackDatabase` (tasks are serialized)."""

    def __init__(self, database: AsyncDatabaseInterface, connection: AsyncConnection) -> None:
        self._db = database
        self._conn = connection
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None

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
        return self._db

    @property
    def connection(self) -> AsyncConnection:
        return self._conn

    @asynccontextmanager
    async def transaction(
        self, *, isolation: IsolationLevel | None = None, readonly: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        task = asyncio.current_task()
        nested = self._owner is not None and self._owner is task
        if not nested:
            await self._lock.acquire()
            self._owner = task
        pinned = _AsyncPinnedConnection(self._conn)
        try:
            await pinned._open()
            try:
                yield pinned
            except BaseException:
                pinned._closed = True
                await pinned._end(keep=False)
                raise
            pinned._closed = True
            await pinned._end(keep=True)
        finally:
            if not nested:
                self._owner = None
                self._lock.release()

    def in_transaction(self) -> bool:
        return False

    async def execute(self, sql: str, params: Params = None) -> AsyncBufferedResult:
        async with self.transaction() as conn:
            result = await conn.execute(sql, params)
            rows = await result.fetchall() if result.keys() else []
            return AsyncBufferedResult(result.keys(), rows, result.rowcount)

    async def get_connection(self) -> AsyncConnection:
        pinned = _AsyncPinnedConnection(self._conn)
        await pinned._open()
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
        return f"<AsyncRollbackDatabase over {self._db!r}>"
