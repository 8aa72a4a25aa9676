"""BEGIN sent with a psycopg connection's next statement, whoever sends it.

For a layer above psycopg that does not issue every statement itself (SQLAlchemy's psycopg
driver, under which ORM sessions and Core run their own): the connection is in autocommit
mode, :func:`install_deferred_begin` gives it cursor classes that honour a pending BEGIN,
and :func:`defer_begin` sets one. The next statement on a plain cursor goes out with it as
one simple-protocol message (core's ``begun_query``: the values bound on the client); a
server-side cursor, ``executemany`` and anything else sends it first on its own
(:func:`send_begin`). COMMIT and ROLLBACK need nothing: psycopg sends them only when the
server is inside a transaction, and a BEGIN that never went out is dropped with
:func:`take_begin`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from psycopg import AsyncConnection, AsyncCursor, AsyncServerCursor

from .batch_async import begun_query

__all__ = ["defer_begin", "install_deferred_begin", "send_begin", "take_begin"]


def install_deferred_begin(conn: AsyncConnection[Any]) -> None:
    """Make ``conn``'s cursors send a pending BEGIN (once per connection, when it is opened)."""
    conn.cursor_factory = AsyncDeferredBeginCursor
    conn.server_cursor_factory = AsyncDeferredBeginServerCursor
    conn._sdb_begin = None  # type: ignore[attr-defined]


def defer_begin(conn: AsyncConnection[Any], begin: str) -> None:
    """``begin`` goes out with the next statement on ``conn``."""
    conn._sdb_begin = begin  # type: ignore[attr-defined]


def take_begin(conn: AsyncConnection[Any]) -> str | None:
    """The pending BEGIN, no longer pending (``None``: there is none)."""
    begin: str | None = getattr(conn, "_sdb_begin", None)
    if begin is not None:
        conn._sdb_begin = None  # type: ignore[attr-defined]
    return begin


async def send_begin(conn: AsyncConnection[Any]) -> None:
    """Send the pending BEGIN now, on its own (before I/O that cannot carry it)."""
    begin = take_begin(conn)
    if begin is not None:
        await conn.execute(begin, prepare=False)


class AsyncDeferredBeginCursor(AsyncCursor[Any]):
    """A cursor whose next statement carries its connection's pending BEGIN."""

    async def execute(
        self, query: Any, params: Any = None, *, prepare: bool | None = None, binary: bool | None = None
    ) -> AsyncDeferredBeginCursor:
        conn = self.connection
        begin = take_begin(conn)
        if begin is None:
            await super().execute(query, params, prepare=prepare, binary=binary)
        elif not isinstance(query, str) or binary:  # a composed query or binary results: not as text
            await conn.execute(begin, prepare=False)
            await super().execute(query, params, prepare=prepare, binary=binary)
        else:
            # Never prepared: a message of two statements cannot be.
            await super().execute(begun_query(conn, begin, query, params), prepare=False)
            self.nextset()  # past BEGIN's result, to the statement's
        return self

    async def executemany(self, query: Any, params_seq: Iterable[Any], *, returning: bool = False) -> None:
        await send_begin(self.connection)
        await super().executemany(query, params_seq, returning=returning)


class AsyncDeferredBeginServerCursor(AsyncServerCursor[Any]):
    """A server-side cursor: its DECLARE must run inside the transaction, so BEGIN goes first."""

    async def execute(self, query: Any, params: Any = None, *, binary: bool | None = None, **kwargs: Any) -> Any:
        await send_begin(self.connection)
        return await super().execute(query, params, binary=binary, **kwargs)
