"""Results that hold all their rows, for statements run outside a caller's transaction.

``db.execute()`` returns its connection to the pool before returning, so the rows
must travel with the result: a driver cursor must not be read once another caller
owns its connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from .._contract.protocols import Result
from .._contract.rows import Row

__all__ = ["AsyncBufferedResult", "AwaitableResult", "BufferedResult"]


class BufferedResult:
    """A :class:`Result` over rows already fetched; fetching past the end gives None/[]."""

    __slots__ = ("_keys", "_position", "_rows", "rowcount")

    def __init__(self, keys: Sequence[str], rows: list[Row], rowcount: int) -> None:
        self._keys = list(keys)
        self._rows = rows
        self._position = 0
        self.rowcount = rowcount

    def keys(self) -> list[str]:
        return list(self._keys)

    def fetchone(self) -> Row | None:
        if self._position >= len(self._rows):
            return None
        row = self._rows[self._position]
        self._position += 1
        return row

    def fetchmany(self, size: int | None = None) -> list[Row]:
        start = self._position
        end = min(len(self._rows), start + (1 if size is None else max(size, 0)))  # DB-API: arraysize 1
        self._position = end
        return self._rows[start:end]

    def fetchall(self) -> list[Row]:
        rows = self._rows[self._position :] if self._position else self._rows
        self._position = len(self._rows)
        return rows

    def scalar(self) -> Any:
        row = self.fetchone()
        self._position = len(self._rows)
        return None if row is None else next(iter(row.values()), None)

    def __iter__(self) -> Iterator[Row]:
        while (row := self.fetchone()) is not None:
            yield row

    def __repr__(self) -> str:
        return f"<BufferedResult rows={len(self._rows)} rowcount={self.rowcount}>"


class AwaitableResult:
    """The awaitable face of a result whose rows are already on the client (a buffered
    result, or a driver result read without I/O): ``await result.fetchone()`` and so on."""

    __slots__ = ("_sync",)

    def __init__(self, sync: Result) -> None:
        self._sync = sync

    @property
    def rowcount(self) -> int:
        return self._sync.rowcount

    def keys(self) -> list[str]:
        return self._sync.keys()

    async def fetchone(self) -> Row | None:
        return self._sync.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Row]:
        return self._sync.fetchmany(size)

    async def fetchall(self) -> list[Row]:
        return self._sync.fetchall()

    async def scalar(self) -> Any:
        return self._sync.scalar()

    async def __aiter__(self) -> AsyncIterator[Row]:
        while (row := self._sync.fetchone()) is not None:
            yield row


class AsyncBufferedResult(AwaitableResult):
    """The awaitable face of :class:`BufferedResult` (nothing is awaited underneath)."""

    __slots__ = ()

    def __init__(self, keys: Sequence[str], rows: list[Row], rowcount: int) -> None:
        super().__init__(BufferedResult(keys, rows, rowcount))
