"""The result of one statement, over the rows a driver returned.

The engine adds what users rely on whatever the driver: ``scalar()`` ends the result,
fetching past the end gives ``None``/``[]``, a statement without rows says so in the
error (``ProgrammingError``), and driver errors while reading arrive translated.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from .._contract.driver_async import AsyncRows
from .._contract.errors import DatabaseError, ProgrammingError
from .._contract.rows import Row
from .messages import NO_ROWS
from .results import AsyncBufferedResult

__all__ = ["AsyncEngineResult"]


class _Translates(Protocol):
    """The part of the engine a result needs: its driver's errors, translated."""

    @property
    def backend(self) -> str: ...
    @property
    def errors(self) -> tuple[type[BaseException], ...]: ...
    def translate(self, exc: BaseException) -> DatabaseError: ...


class AsyncEngineResult:
    """Rows of one statement: ``fetchone``/``fetchmany(size=)``/``fetchall``/``scalar``, ``rowcount``.

    Iterating (``async for row in result``) fetches one row at a time.
    """

    __slots__ = ("_done", "_engine", "_rows")

    def __init__(self, rows: AsyncRows, engine: _Translates) -> None:
        self._rows = rows
        self._engine = engine
        self._done = False

    @property
    def rowcount(self) -> int:
        """Rows affected (INSERT/UPDATE/DELETE) or returned (when the driver knows); -1 if unknown."""
        return self._rows.rowcount

    def keys(self) -> list[str]:
        """Column names in select-list order."""
        return self._rows.keys()

    def _failed(self, exc: BaseException) -> DatabaseError:
        if not self._rows.returns_rows:
            return ProgrammingError(NO_ROWS, backend=self._engine.backend)
        return self._engine.translate(exc)

    async def fetchone(self) -> Row | None:
        if self._done:
            return None
        try:
            return await self._rows.fetchone()
        except self._engine.errors as exc:
            raise self._failed(exc) from exc

    async def fetchmany(self, size: int | None = None) -> list[Row]:
        """The next ``size`` rows; without ``size`` one row, as a DB-API cursor's ``arraysize``."""
        if self._done:
            return []
        try:
            return await self._rows.fetchmany(1 if size is None else max(size, 0))
        except self._engine.errors as exc:
            raise self._failed(exc) from exc

    async def fetchall(self) -> list[Row]:
        if self._done:
            return []
        try:
            return await self._rows.fetchall()
        except self._engine.errors as exc:
            raise self._failed(exc) from exc

    async def scalar(self) -> Any:
        """The first column of the first row (``None`` without rows); the result is then exhausted."""
        if self._done:
            return None
        try:
            value = await self._rows.scalar()
        except self._engine.errors as exc:
            raise self._failed(exc) from exc
        self._done = True
        return value

    async def buffered(self) -> AsyncBufferedResult:
        """The rest of the rows, detached from the driver (before its connection is returned)."""
        rows = await self.fetchall() if self._rows.returns_rows else []
        return AsyncBufferedResult(self.keys(), rows, self.rowcount)

    async def __aiter__(self) -> AsyncIterator[Row]:
        while (row := await self.fetchone()) is not None:
            yield row

    def __repr__(self) -> str:
        return f"<{type(self).__name__} rowcount={self.rowcount}>"
