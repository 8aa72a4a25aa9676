"""COPY both ways on a psycopg connection, for every backend that reaches one.

``copy_in`` streams records into ``COPY table (columns) FROM STDIN``; ``copy_out`` reads
``COPY (query) TO STDOUT`` row by row, with the query's column types set first so that
values come back as Python objects (Decimal, datetime, bytes, JSON, arrays, None), not
text. Both go through psycopg's adapters; memory holds one block of the stream.

``copy_out`` reads :data:`COPY_BATCH` rows per ``wait()`` of the connection rather than one
(psycopg's ``Copy.rows()`` waits once per row): the per-row wait, with the statement
deadline's checks, cost a third of the time of a large COPY. A deadline then bounds each
batch, not each row.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from typing import Any, Final

from psycopg import AsyncConnection, sql
from psycopg.abc import PQGen

from .._contract.errors import ParameterError
from .._engine.flavour import ASYNC

__all__ = ["COPY_BATCH", "copy_in", "copy_out", "copy_statement"]

#: Rows of a COPY TO read per wait of the connection.
COPY_BATCH: Final = 1000


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
        read_row = getattr(copy, "_read_row_gen", None)
        if read_row is None:  # pragma: no cover - a psycopg without it: one wait per row
            async for record in copy.rows():
                yield record
            return
        wait = conn.wait
        while True:
            batch = await wait(_rows(read_row, COPY_BATCH))
            for record in batch:
                yield record
            if len(batch) < COPY_BATCH:
                return


def _rows(read_row: Any, size: int) -> PQGen[list[tuple[Any, ...]]]:
    """Up to ``size`` rows of the COPY (fewer: its end), as one generator for ``wait()``."""
    rows: list[tuple[Any, ...]] = []
    append = rows.append
    for _ in range(size):
        row = yield from read_row()
        if row is None:
            break
        append(row)
    return rows
