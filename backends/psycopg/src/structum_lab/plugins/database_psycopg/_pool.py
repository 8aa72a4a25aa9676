"""The pieces between psycopg_pool and the database classes.

* :class:`ConnectMonitor` remembers how the last connection attempt went. psycopg_pool
  connects in background workers and never tells a waiting caller that the server is
  down; the monitor lets a checkout fail fast with the real connection error instead
  of waiting out ``pool_timeout``.
* The connection classes handed to the pool (one subclass per database, so each
  reports to its own monitor) stamp every connection with what the checkout's
  liveness test needs: when it was created and last used, and a zero-round-trip
  "is the socket readable?" probe. An idle PostgreSQL connection receives nothing
  unless the server closed it (terminated backend, restart, idle timeout) or sent a
  notification, so a readable socket at checkout is the cue for a real ping.
* :func:`row_factory` builds core :class:`Row` dicts exactly as psycopg's ``dict_row``
  builds dicts.
"""

from __future__ import annotations

import select
from collections.abc import Callable, Sequence
from time import monotonic
from typing import TYPE_CHECKING, Any, Final

from psycopg.rows import no_result

from structum_lab.plugins.database import IsolationLevel, Row
from structum_lab.plugins.database.kit_psycopg import AsyncPsycopgDeadline, PsycopgDeadline

if TYPE_CHECKING:
    from psycopg import AsyncConnection, Connection

__all__ = [
    "ConnectMonitor",
    "async_connection_class",
    "copy_statement",
    "row_factory",
    "sync_connection_class",
]


def _names_from_description(cursor: Any) -> list[str] | None:
    description = cursor.description
    return None if description is None else [column.name for column in description]


_column_names: Callable[[Any], list[str] | None]
try:  # psycopg's own name reader, as used by dict_row (the fastest way to the column names)
    from psycopg.rows import _get_names as _column_names
except ImportError:  # pragma: no cover - a later psycopg without the private helper
    _column_names = _names_from_description


_PSYCOPG_ISOLATION: Final = {
    "read_uncommitted": "READ_UNCOMMITTED",
    "read_committed": "READ_COMMITTED",
    "repeatable_read": "REPEATABLE_READ",
    "serializable": "SERIALIZABLE",
}


def psycopg_isolation(level: IsolationLevel | None) -> Any:
    """psycopg's ``IsolationLevel`` member for a core level name (None stays None)."""
    if level is None:
        return None
    from psycopg import IsolationLevel as PgIsolation

    return PgIsolation[_PSYCOPG_ISOLATION[level]]


def row_factory(cursor: Any) -> Callable[[Sequence[Any]], Row]:
    """psycopg row factory producing core ``Row`` dicts (``dict_row`` with another class)."""
    names = _column_names(cursor)
    if names is None:
        return no_result

    def make_row(values: Sequence[Any]) -> Row:
        return Row(zip(names, values))  # noqa: B905 - one value per column, by construction

    return make_row


class ConnectMonitor:
    """The outcome of the latest connection attempt, shared by the pool's workers and callers.

    ``up`` is False until a connection succeeds, after a failed attempt, and after a
    checkout found a dead connection (the server may be restarting); ``error`` is the
    latest connection error, cleared when a new doubt starts or a connection succeeds.
    Plain attribute writes: readers only need the latest value, not a consistent pair.
    """

    __slots__ = ("error", "up")

    def __init__(self) -> None:
        self.up = False
        self.error: BaseException | None = None

    def still_up(self) -> bool:
        """``up``, read again after a wait (during which a pool worker may have changed it)."""
        return self.up

    def succeeded(self) -> None:
        self.error = None
        self.up = True

    def failed(self, error: BaseException) -> None:
        self.up = False
        self.error = error

    def suspect(self) -> None:
        """A connection died: wait for the next attempt's outcome before trusting the pool again."""
        self.up = False
        self.error = None


def _readable_probe(fd: int) -> Callable[[int], list[Any]]:
    """A function that, called with 0, returns without blocking a non-empty list when
    ``fd`` has input (or hung up). The bound ``poll`` itself: it runs on every checkout."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)  # POLLHUP/POLLERR/POLLNVAL are always reported
        return poller.poll

    def readable(timeout: int) -> list[Any]:  # pragma: no cover - Windows
        return select.select([fd], [], [], timeout)[0]

    return readable


def _stamp(conn: Any, isolation: Any) -> None:
    conn._sdb_created = conn._sdb_used = monotonic()
    conn._sdb_readable = _readable_probe(conn.pgconn.socket)
    conn._sdb_pool = None
    if isolation is not None:
        conn.isolation_level = isolation


def sync_connection_class(
    monitor: ConnectMonitor, isolation: IsolationLevel | None, deadline: float | None
) -> type[Connection[Row]]:
    """A ``psycopg.Connection`` subclass whose ``connect`` reports to ``monitor`` and whose
    waits for the server give up after ``deadline`` seconds (core's ``kit_psycopg``)."""
    from psycopg import Connection

    level = psycopg_isolation(isolation)

    class StructumConnection(PsycopgDeadline, Connection[Row]):
        _sdb_deadline = deadline
        _sdb_created: float
        _sdb_used: float
        _sdb_readable: Callable[[int], list[Any]]
        _sdb_pool: Any

        @classmethod
        def connect(cls, conninfo: str = "", **kwargs: Any) -> StructumConnection:
            try:
                conn = super().connect(conninfo, **kwargs)
            except Exception as exc:
                monitor.failed(exc)
                raise
            _stamp(conn, level)
            monitor.succeeded()
            return conn

    StructumConnection.__qualname__ = "StructumConnection"
    return StructumConnection


def async_connection_class(
    monitor: ConnectMonitor, isolation: IsolationLevel | None, deadline: float | None
) -> type[AsyncConnection[Row]]:
    """The asyncio twin of :func:`sync_connection_class`."""
    from psycopg import AsyncConnection

    level = psycopg_isolation(isolation)

    class AsyncStructumConnection(AsyncPsycopgDeadline, AsyncConnection[Row]):
        _sdb_deadline = deadline
        _sdb_created: float
        _sdb_used: float
        _sdb_readable: Callable[[int], list[Any]]
        _sdb_pool: Any

        @classmethod
        async def connect(cls, conninfo: str = "", **kwargs: Any) -> AsyncStructumConnection:
            try:
                conn = await super().connect(conninfo, **kwargs)
            except Exception as exc:
                monitor.failed(exc)
                raise
            if level is not None:
                await conn.set_isolation_level(level)
            _stamp(conn, None)
            monitor.succeeded()
            return conn

    AsyncStructumConnection.__qualname__ = "AsyncStructumConnection"
    return AsyncStructumConnection


def copy_statement(table: str, columns: Sequence[str]) -> Any:
    """``COPY "schema"."table" ("a", "b") FROM STDIN`` with every name quoted by psycopg."""
    from psycopg import sql

    from structum_lab.plugins.database import ParameterError

    if not isinstance(table, str) or not table:
        raise ParameterError(f"copy_records needs a table name such as 'items' or 'app.items', got {table!r}")
    parts = table.split(".")
    if len(parts) > 2 or not all(parts):
        raise ParameterError(f"copy_records: {table!r} is not 'table' or 'schema.table'")
    if isinstance(columns, str | bytes):
        raise ParameterError("copy_records needs a sequence of column names such as ['id', 'name'], got a string")
    target = sql.Identifier(*parts)
    names = list(columns)
    if not names:
        return sql.SQL("COPY {} FROM STDIN").format(target)
    column_list = sql.SQL(", ").join(sql.Identifier(name) for name in names)
    return sql.SQL("COPY {} ({}) FROM STDIN").format(target, column_list)
