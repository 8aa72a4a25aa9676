"""COPY both ways on a psycopg connection, for every backend that reaches one.

``copy_in`` streams records into ``COPY table (columns) FROM STDIN``; ``copy_out`` reads
``COPY (query) TO STDOUT`` row by row, with the query's column types set first so that
values come back as Python objects (Decimal, datetime, bytes, JSON, arrays, None), not
text. Both go through psycopg's adapters; memory holds one block of the stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from typing import Any

from psycopg import AsyncConnection, sql

from .._contract.errors import ParameterError
from .._engine.flavour import ASYNC

__all__ = ["copy_in", "copy_out", "copy_statement"]


def copy_statement(table: str, columns: Sequence[str]) -> sql.Composed:
    """``COPY "schema"."table" ("a", "b") FROM STDIN`` with every name quoted by psycopg."""
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


async def copy_in(
    conn: AsyncConnection[Any],
    table: str,
    columns: Sequence[str],
    records: Iterable[Sequence[Any]] | AsyncIterable[Sequence[Any]],
) -> int:
    """Bulk-load ``records`` into ``table``; returns how many rows the server took."""
    statement = copy_statement(table, columns)
    cursor = conn.cursor()
    count = 0
    async with cursor.copy(statement) as copy:
        write_row = copy.write_row
        plain: Iterable[Sequence[Any]] = ()
        if ASYNC:  # ASYNC
            if isinstance(records, AsyncIterable):
                async for record in records:
                    await write_row(record)
                    count += 1
            else:
                plain = records
        else:
            plain = records  # type: ignore[assignment]
        for record in plain:
            await write_row(record)
            count += 1
    return cursor.rowcount if cursor.rowcount >= 0 else count


async def copy_out(conn: AsyncConnection[Any], query: str, params: Any = None) -> AsyncIterator[tuple[Any, ...]]:
    """The rows of ``COPY (query) TO STDOUT`` as tuples of Python values, streamed."""
    cursor = conn.cursor()
    # The column types, so that each value is loaded as what it is (one round trip, no rows).
    probe = f"SELECT * FROM ({query}) AS structum_copy LIMIT 0"
    if params is None:
        await cursor.execute(probe)
    else:
        await cursor.execute(probe, params)
    types = [column.type_code for column in cursor.description or ()]
    statement = f"COPY ({query}) TO STDOUT"
    async with cursor.copy(statement, params) as copy:
        copy.set_types(types)
        async for record in copy.rows():
            yield record
