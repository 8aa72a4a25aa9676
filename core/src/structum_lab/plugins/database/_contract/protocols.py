"""The contracts: what a database, a connection and a result look like to users.

Every backend's objects satisfy these Protocols structurally; application code types
against them (``db: DatabaseInterface``) and so does not change when the backend
does. Optional capabilities (ORM sessions, COPY) are separate small Protocols, checked
with ``isinstance`` at run time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any, Literal, Protocol, TypedDict, runtime_checkable

from .health import HealthCheckResult
from .rows import Row

__all__ = [
    "AsyncConnection",
    "AsyncDatabaseInterface",
    "AsyncResult",
    "Connection",
    "DatabaseInterface",
    "IsolationLevel",
    "Params",
    "PoolInfo",
    "Result",
    "SupportsAsyncSessions",
    "SupportsCopy",
    "SupportsAsyncCopy",
    "SupportsSessions",
]

IsolationLevel = Literal["read_uncommitted", "read_committed", "repeatable_read", "serializable"]

#: A dict for ``:name``/``%(name)s`` placeholders, a tuple or list for ``%s``/``$1``.
Params = Mapping[str, Any] | Sequence[Any] | None


class PoolInfo(TypedDict, total=False):
    """Pool figures; the first four keys are present for every backend.

    - ``checked_out``: connections lent to callers right now.
    - ``available``: open connections idle in the pool, ready to lend.
    - ``total``: open connections (``checked_out + available``).
    - ``overflow``: open connections beyond ``size`` (0 when at or under).
    - ``size``: the steady pool size; ``max_size``: the hard cap (size + max_overflow).
    - ``requests_waiting``: callers waiting for a connection now.
    - ``checkouts``, ``timeouts``, ``connections_lost``: counters since start.
    - ``max_wait_ms``: the longest checkout wait seen (starvation shows here).
    """

    checked_out: int
    available: int
    total: int
    overflow: int
    size: int
    max_size: int
    min_size: int
    requests_waiting: int
    checkouts: int
    timeouts: int
    connections_lost: int
    max_wait_ms: float


class Result(Protocol):
    """Rows of one statement, fetched on demand."""

    @property
    def rowcount(self) -> int:
        """Rows affected by INSERT/UPDATE/DELETE (or returned, when the driver knows); -1 if unknown."""
        ...

    def keys(self) -> list[str]: ...
    def fetchone(self) -> Row | None: ...
    def fetchmany(self, size: int | None = None) -> list[Row]: ...
    def fetchall(self) -> list[Row]: ...
    def scalar(self) -> Any:
        """First column of the first row, or ``None`` when there is no row."""
        ...

    def __iter__(self) -> Iterator[Row]: ...


class Connection(Protocol):
    """A connection lent by the pool, inside a transaction."""

    @property
    def closed(self) -> bool: ...
    def execute(self, sql: str, params: Params = None) -> Result: ...
    def executemany(self, sql: str, params_seq: Iterable[Params]) -> int: ...
    def fetchone(self) -> Row | None: ...
    def fetchmany(self, size: int | None = None) -> list[Row]: ...
    def fetchall(self) -> list[Row]: ...
    def transaction(self) -> AbstractContextManager[Connection]:
        """A savepoint: rolled back alone if its block raises."""
        ...

    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def close(self) -> None: ...


class DatabaseInterface(Protocol):
    """A pooled database; what every synchronous backend class provides."""

    @property
    def name(self) -> str: ...
    @property
    def backend(self) -> str: ...
    @property
    def url(self) -> str:
        """The URL with its password masked."""
        ...

    def transaction(
        self, *, isolation: IsolationLevel | None = None, readonly: bool = False
    ) -> AbstractContextManager[Connection]: ...
    def get_connection(self) -> Connection: ...
    def execute(self, sql: str, params: Params = None) -> Result:
        """One statement on its own (one round trip where the driver allows), rows included."""
        ...

    def health_check(self) -> HealthCheckResult: ...
    def get_pool_info(self) -> PoolInfo: ...
    def shutdown(self) -> None: ...


class AsyncResult(Protocol):
    @property
    def rowcount(self) -> int: ...
    def keys(self) -> list[str]: ...
    async def fetchone(self) -> Row | None: ...
    async def fetchmany(self, size: int | None = None) -> list[Row]: ...
    async def fetchall(self) -> list[Row]: ...
    async def scalar(self) -> Any: ...
    def __aiter__(self) -> AsyncIterator[Row]: ...


class AsyncConnection(Protocol):
    @property
    def closed(self) -> bool: ...
    async def execute(self, sql: str, params: Params = None) -> AsyncResult: ...
    async def executemany(self, sql: str, params_seq: Iterable[Params]) -> int: ...
    async def fetchone(self) -> Row | None: ...
    async def fetchmany(self, size: int | None = None) -> list[Row]: ...
    async def fetchall(self) -> list[Row]: ...
    def transaction(self) -> AbstractAsyncContextManager[AsyncConnection]: ...
    async def commit(self) -> None: ...
    async def rollback(self) -> None: ...
    async def close(self) -> None: ...


class AsyncDatabaseInterface(Protocol):
    """A pooled database used from asyncio; the async twin of :class:`DatabaseInterface`."""

    @property
    def name(self) -> str: ...
    @property
    def backend(self) -> str: ...
    @property
    def url(self) -> str: ...
    def transaction(
        self, *, isolation: IsolationLevel | None = None, readonly: bool = False
    ) -> AbstractAsyncContextManager[AsyncConnection]: ...
    async def get_connection(self) -> AsyncConnection: ...
    async def execute(self, sql: str, params: Params = None) -> AsyncResult: ...
    async def health_check(self) -> HealthCheckResult: ...
    def get_pool_info(self) -> PoolInfo: ...
    async def shutdown(self) -> None: ...


@runtime_checkable
class SupportsSessions(Protocol):
    """Databases that hand out SQLAlchemy ORM sessions."""

    def get_session(self) -> AbstractContextManager[Any]: ...


@runtime_checkable
class SupportsAsyncSessions(Protocol):
    def get_session(self) -> AbstractAsyncContextManager[Any]: ...


@runtime_checkable
class SupportsCopy(Protocol):
    """Connections that can bulk-load rows with the COPY protocol."""

    def copy_records(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int: ...


@runtime_checkable
class SupportsAsyncCopy(Protocol):
    async def copy_records(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int: ...
