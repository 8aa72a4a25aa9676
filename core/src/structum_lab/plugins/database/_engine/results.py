"""The awaitable face of a synchronous result (for backends whose async results are
already on the client). The buffered results are the engine's (``result_async.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from .._contract.protocols import Result
from .._contract.rows import Row

__all__ = ["AwaitableResult"]


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
