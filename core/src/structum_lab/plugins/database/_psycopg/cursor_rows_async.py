"""The rows of one statement on a psycopg cursor, for the engine (-> cursor_rows.py).

The cursor's row factory makes core ``Row`` dicts (:func:`.rows.row_factory`). On a
client-side cursor the whole result arrived with the statement, so the rows stay readable
after the connection is returned; on a server-side one (``conn.stream()``) each fetch may
be a round trip.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncCursor, AsyncServerCursor
from psycopg.rows import tuple_row

from .._contract.rows import Row, paused_gc

__all__ = ["AsyncPsycopgRows"]


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
