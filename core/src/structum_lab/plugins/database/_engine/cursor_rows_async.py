"""The rows of one statement on a PEP 249 cursor, as core ``Row`` dicts (-> cursor_rows.py).

For a backend whose driver returns rows as tuples (sqlite3, PyMySQL, the DB-API cursor
under SQLAlchemy): the keys come from ``cursor.description``, each fetch zips them with
the values, and the result is closed as soon as its rows are read to the end, so that a
SQLite read lock or a server-side cursor does not outlive the reading. Fetching rows of a
statement that has none (DML without RETURNING) raises :class:`NoRows`; fetching rows
with two columns of one name raises the ``ProgrammingError`` of ``duplicate_columns`` (a
dict cannot hold both), while :meth:`scalar` still reads by position.

The fetches are coroutines only to fit :class:`AsyncRows`: the cursor's own methods are
called, which do not wait (the rows arrived with the statement). Where a fetch must wait
(a server-side cursor of a driver that blocks), ``run`` runs it: ``await run(function,
*args)``, in a thread or in SQLAlchemy's greenlet, and ``close()`` closes the result there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .._contract.features import NoRows
from .._contract.rows import Row, duplicate_columns, paused_gc

__all__ = ["AsyncCursorRows"]


class AsyncCursorRows:
    """The rows of one statement on ``cursor``, a DB-API cursor that has run it.

    ``keys``: the column names, when they are not the cursor's ``description`` (``None``
    there: a statement without rows). ``rowcount``: when the cursor's is not the one to
    report (``-1`` for a stream). ``close``: what ends the result (by default the cursor's
    ``close``). ``cursor=None`` is a statement without rows whose cursor is gone already.
    ``run``: what runs a fetch and ``close`` where they may wait (see above).
    """

    __slots__ = ("_close", "_cursor", "_duplicated", "_keys", "_run", "returns_rows", "rowcount")

    def __init__(
        self,
        cursor: Any,
        *,
        keys: Sequence[str] | None = None,
        rowcount: int | None = None,
        close: Callable[[], object] | None = None,
        run: Callable[..., Any] | None = None,
    ) -> None:
        if keys is None and cursor is not None:
            description = cursor.description
            if description is not None:
                keys = [column[0] for column in description]
        self.returns_rows = keys is not None
        self._keys: list[str] = list(keys) if keys is not None else []
        self._duplicated = duplicate_columns(self._keys)
        self._cursor = cursor if keys is not None else None
        self.rowcount: int = cursor.rowcount if rowcount is None else rowcount
        self._close = close if close is not None or cursor is None else cursor.close
        self._run = run

    def keys(self) -> list[str]:
        return list(self._keys)

    async def _read(self, cursor: Any, size: int | None) -> Sequence[Any]:
        """Up to ``size`` rows of values (``None``: all that are left) from ``cursor``."""
        if self._run is not None:
            return await self._run(_fetch, cursor, size)  # type: ignore[no-any-return]
        if size is None:
            return cursor.fetchall()  # type: ignore[no-any-return]
        if size == 1:
            values = cursor.fetchone()
            return () if values is None else (values,)
        return cursor.fetchmany(size)  # type: ignore[no-any-return]

    def _open(self) -> Any:
        """The cursor to read from (``None`` once read to the end), after the checks of a fetch."""
        if not self.returns_rows:
            raise NoRows
        if self._duplicated is not None:
            raise self._duplicated
        return self._cursor

    def _end(self) -> None:
        # Later fetches answer "no more rows"; the cursor (and SQLite's read lock) goes now.
        cursor, self._cursor = self._cursor, None
        if cursor is not None and self._close is not None and self._run is None:  # else close() does
            self._close()

    def _dicts(self, batch: Sequence[Any]) -> list[Row]:
        keys = self._keys
        with paused_gc(len(batch)):
            return [Row(zip(keys, values, strict=False)) for values in batch]  # one value per key

    async def fetchone(self) -> Row | None:
        cursor = self._open()
        batch = () if cursor is None else await self._read(cursor, 1)
        if not batch:
            self._end()
            return None
        return Row(zip(self._keys, batch[0], strict=True))

    async def fetchmany(self, size: int) -> list[Row]:
        cursor = self._open()
        if cursor is None or size <= 0:
            return []
        batch = await self._read(cursor, size)
        if not batch:
            self._end()
        return self._dicts(batch)

    async def fetchall(self) -> list[Row]:
        cursor = self._open()
        if cursor is None:
            return []
        batch = await self._read(cursor, None)
        self._end()
        return self._dicts(batch)

    async def scalar(self) -> object:
        if not self.returns_rows:
            raise NoRows
        cursor = self._cursor
        batch = () if cursor is None else await self._read(cursor, 1)
        self._end()
        return batch[0][0] if batch else None

    async def close(self) -> None:
        self._end()
        close, run = self._close, self._run
        if run is not None and close is not None:
            self._close = None
            await run(close)


def _fetch(cursor: Any, size: int | None) -> Sequence[Any]:
    return cursor.fetchall() if size is None else cursor.fetchmany(size)  # type: ignore[no-any-return]
