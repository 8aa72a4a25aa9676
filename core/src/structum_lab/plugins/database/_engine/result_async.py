"""The result of one statement, over the rows a driver returned, with SQLAlchemy's result API.

The engine adds what users rely on whatever the driver: ``scalar()``/``first()`` end the
result, fetching past the end gives ``None``/``[]``, ``one()`` and its kin raise
:class:`NoResultFound`/:class:`MultipleResultsFound`, a statement without rows says so
in the error (``ProgrammingError``), and driver errors while reading arrive translated.
A buffered result (``db.execute()`` on a driver whose rows live on its connection) is
the same class over rows held in a list.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol, TypeVar

from .._contract.driver_async import AsyncRows
from .._contract.errors import DatabaseError, MultipleResultsFound, NoResultFound, ProgrammingError
from .._contract.features import NoRows
from .._contract.rows import Row
from .messages import MULTIPLE_ROWS, NO_ROW, NO_ROWS

__all__ = ["AsyncBufferedResult", "AsyncEngineResult", "AsyncListRows", "AsyncScalarResult"]

E = TypeVar("E", bound=DatabaseError)


class _Translates(Protocol):
    """The part of the engine a result needs: its driver's errors, translated."""

    @property
    def backend(self) -> str: ...
    @property
    def read_errors(self) -> tuple[type[BaseException], ...]:
        """What reading rows may raise: the driver's errors and :class:`NoRows`."""
        ...

    def translate(self, exc: BaseException) -> DatabaseError: ...
    def error_class(self, core: type[E]) -> type[E]: ...


class _Detached:
    """The engine of a result whose rows are all in memory: nothing to translate."""

    backend = ""
    read_errors: tuple[type[BaseException], ...] = (NoRows,)

    def translate(self, exc: BaseException) -> DatabaseError:  # pragma: no cover - only NoRows is raised
        return DatabaseError(str(exc))

    def error_class(self, core: type[E]) -> type[E]:
        return core


def _first_value(row: Row) -> Any:
    return next(iter(row.values()), None)


class AsyncEngineResult:
    """Rows of one statement: ``fetchone``/``fetchmany(size=)``/``fetchall``, ``scalar``, ``rowcount``,
    and SQLAlchemy's ``all``/``first``/``one``/``one_or_none``/``scalar_one``/``scalar_one_or_none``/``scalars``.

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
        if isinstance(exc, NoRows) or not self._rows.returns_rows:
            return ProgrammingError(NO_ROWS, backend=self._engine.backend)
        return self._engine.translate(exc)

    async def fetchone(self) -> Row | None:
        if self._done:
            return None
        try:
            return await self._rows.fetchone()
        except self._engine.read_errors as exc:
            raise self._failed(exc) from exc

    async def fetchmany(self, size: int | None = None) -> list[Row]:
        """The next ``size`` rows; without ``size`` one row, as a DB-API cursor's ``arraysize``."""
        if self._done:
            return []
        try:
            return await self._rows.fetchmany(1 if size is None else max(size, 0))
        except self._engine.read_errors as exc:
            raise self._failed(exc) from exc

    async def fetchall(self) -> list[Row]:
        if self._done:
            return []
        try:
            return await self._rows.fetchall()
        except self._engine.read_errors as exc:
            raise self._failed(exc) from exc

    async def close(self) -> None:
        """Discard the remaining rows (the driver's cursor goes now)."""
        if not self._done:
            self._done = True
            await self._rows.close()

    async def scalar(self) -> Any:
        """The first column of the first row (``None`` without rows); the result is then closed."""
        if self._done:
            return None
        try:
            value = await self._rows.scalar()
        except self._engine.read_errors as exc:
            raise self._failed(exc) from exc
        await self.close()
        return value

    # -- SQLAlchemy's names ------------------------------------------------------------

    async def all(self) -> list[Row]:
        """Every remaining row."""
        return await self.fetchall()

    async def first(self) -> Row | None:
        """The first row, or ``None``; the result is then closed."""
        row = await self.fetchone()
        await self.close()
        return row

    async def one_or_none(self) -> Row | None:
        """The only row, or ``None``; :class:`MultipleResultsFound` if there are more."""
        rows = await self.fetchmany(2)
        await self.close()
        if len(rows) > 1:
            raise self._engine.error_class(MultipleResultsFound)(MULTIPLE_ROWS, backend=self._engine.backend)
        return rows[0] if rows else None

    async def one(self) -> Row:
        """The only row; :class:`NoResultFound` without one, :class:`MultipleResultsFound` with more."""
        row = await self.one_or_none()
        if row is None:
            raise self._engine.error_class(NoResultFound)(NO_ROW, backend=self._engine.backend)
        return row

    async def scalar_one(self) -> Any:
        """The first column of the only row (errors as :meth:`one`)."""
        return _first_value(await self.one())

    async def scalar_one_or_none(self) -> Any:
        """The first column of the only row, or ``None`` (errors as :meth:`one_or_none`)."""
        row = await self.one_or_none()
        return None if row is None else _first_value(row)

    def scalars(self) -> AsyncScalarResult:
        """The first column of every row: iterate it, or ``.all()``, ``.first()``, ``.one()``."""
        return AsyncScalarResult(self)

    async def buffered(self) -> AsyncEngineResult:
        """The rest of the rows, detached from the driver (before its connection is returned)."""
        rows = await self.fetchall() if self._rows.returns_rows else []
        detached = AsyncListRows(self.keys(), rows, self.rowcount, returns_rows=self._rows.returns_rows)
        return type(self)(detached, self._engine)

    async def __aiter__(self) -> AsyncIterator[Row]:
        while (row := await self.fetchone()) is not None:
            yield row

    def __repr__(self) -> str:
        if getattr(self._rows, "pending", False):  # queued in a pipelined transaction: repr sends nothing
            return f"<{type(self).__name__} not sent yet>"
        try:
            return f"<{type(self).__name__} rowcount={self.rowcount}>"
        except DatabaseError:  # its pipelined statement failed or did not run
            return f"<{type(self).__name__} not available>"


class AsyncScalarResult:
    """The first-column values of a result (``result.scalars()``)."""

    __slots__ = ("_result",)

    def __init__(self, result: AsyncEngineResult) -> None:
        self._result = result

    async def all(self) -> list[Any]:
        return [_first_value(row) for row in await self._result.fetchall()]

    async def fetchall(self) -> list[Any]:
        return await self.all()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return [_first_value(row) for row in await self._result.fetchmany(size)]

    async def first(self) -> Any:
        row = await self._result.first()
        return None if row is None else _first_value(row)

    async def one(self) -> Any:
        return await self._result.scalar_one()

    async def one_or_none(self) -> Any:
        return await self._result.scalar_one_or_none()

    async def __aiter__(self) -> AsyncIterator[Any]:
        async for row in self._result:
            yield _first_value(row)


class AsyncListRows:
    """Rows already fetched, in a list (what a buffered result reads)."""

    __slots__ = ("_keys", "_position", "_rows", "returns_rows", "rowcount")

    def __init__(self, keys: Sequence[str], rows: list[Row], rowcount: int, *, returns_rows: bool) -> None:
        self._keys = list(keys)
        self._rows = rows
        self._position = 0
        self.rowcount = rowcount
        self.returns_rows = returns_rows

    def _check(self) -> None:
        if not self.returns_rows:
            raise NoRows

    def keys(self) -> list[str]:
        return list(self._keys)

    async def fetchone(self) -> Row | None:
        self._check()
        position = self._position
        if position >= len(self._rows):
            return None
        self._position = position + 1
        return self._rows[position]

    async def fetchmany(self, size: int) -> list[Row]:
        self._check()
        start = self._position
        self._position = end = min(len(self._rows), start + size)
        return self._rows[start:end]

    async def fetchall(self) -> list[Row]:
        self._check()
        start, self._position = self._position, len(self._rows)
        return self._rows[start:] if start else self._rows

    async def scalar(self) -> object:
        row = await self.fetchone()
        return None if row is None else _first_value(row)

    async def close(self) -> None:
        self._position = len(self._rows)


class AsyncBufferedResult(AsyncEngineResult):
    """A result over rows already fetched (``AsyncBufferedResult(keys, rows, rowcount)``)."""

    __slots__ = ()

    def __init__(self, keys: Sequence[str], rows: list[Row], rowcount: int) -> None:
        super().__init__(AsyncListRows(keys, rows, rowcount, returns_rows=bool(keys)), _Detached())
