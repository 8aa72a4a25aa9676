"""The rows of one statement on a psycopg cursor, for the engine (-> cursor_rows.py).

The cursor's row factory makes core ``Row`` dicts (:func:`.rows.row_factory`). On a
client-side cursor the whole result arrived with the statement, so the rows stay readable
after the connection is returned; on a server-side one (``conn.stream()``) each fetch may
be a round trip. :func:`open_stream` declares such a cursor, for ``conn.stream()`` on every
backend that reaches a psycopg connection.
"""

from __future__ import annotations

import itertools
from typing import Any, Final

from psycopg import AsyncConnection, AsyncCursor, AsyncServerCursor
from psycopg.rows import tuple_row

from .._contract.rows import Row, paused_gc
from .rows import row_factory

__all__ = ["AsyncPsycopgRows", "open_stream"]

#: Numbers the server-side cursors of ``conn.stream()``: their names are unique in the
#: process (``next()`` on a count is atomic, as a generator shared by threads is not).
_STREAMS: Final = itertools.count(1)


async def open_stream(conn: AsyncConnection[Any], sql: str, params: Any, batch_size: int) -> AsyncPsycopgRows:
    """``sql`` on a server-side cursor (``DECLARE ... CURSOR``, inside the connection's
    transaction), whose rows are then fetched ``batch_size`` per round trip."""
    cursor = conn.cursor(name=f"structum_stream_{next(_STREAMS)}", row_factory=row_factory)
    cursor.itersize = batch_size
    await cursor.execute(sql, params)
    return AsyncPsycopgRows(cursor)


class AsyncPsycopgRows:
    """The rows of one statement on a psycopg cursor whose row factory makes ``Row`` dicts."""

    __slots__ = ("cursor",)

    def __init__(self, cursor: AsyncCursor[Row] | AsyncServerCursor[Row]) -> None:
        self.cursor = cursor

    @property
    def rowcount(self) -> int:
        return self.cursor.rowcount

    @property
    def returns_rows(self) -> bool:
        return self.cursor.description is not None

    def keys(self) -> list[str]:
        description = self.cursor.description
        return [column.name for column in description] if description else []

    async def fetchone(self) -> Row | None:
        return await self.cursor.fetchone()

    async def fetchmany(self, size: int) -> list[Row]:
        if size <= 0:
            return []
        cursor = self.cursor
        with paused_gc(min(size, max(cursor.rowcount, 0))):
            return await cursor.fetchmany(size)

    async def fetchall(self) -> list[Row]:
        cursor = self.cursor
        with paused_gc(cursor.rowcount):
            return await cursor.fetchall()

    async def scalar(self) -> object:
        cursor: Any = self.cursor
        cursor.row_factory = tuple_row  # by position, not through the dict: two columns may share a name
        values = await cursor.fetchone()
        return None if values is None else values[0]

    async def close(self) -> None:
        await self.cursor.close()
