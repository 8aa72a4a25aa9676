"""Several statements in one round trip on a psycopg connection: one simple-protocol message.

``BEGIN ...;`` with the first statement of a transaction, and the statements of a
``transaction(pipeline=True)`` block (with its ``COMMIT`` when the block ends), go out as
one ``Query`` message: the server runs them in order and stops at the first error. The
values are bound by psycopg on the client (``ClientCursor``: quoted and escaped for the
connection's encoding, each in parentheses), because the simple protocol has no
parameters; docs/transactions.md says what a program can tell apart.

Why not psycopg's pipeline mode: in a transaction it syncs after the implicit BEGIN, so
BEGIN still costs a round trip, and entering and leaving it costs more client CPU than a
3-statement transaction saves (measured in issue 13). One message also needs no prepared
statements, so it works unchanged through PgBouncer in transaction mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncClientCursor, AsyncConnection, pq

from .._contract.errors import ProgrammingError
from .._contract.features import BatchFailed
from .._engine.result_async import AsyncListRows
from .._engine.sql_lexer import POSTGRESQL, count_statements
from .rows import parenthesized, row_factory

__all__ = ["AsyncBatchCursor", "begun_query", "run_batch"]

_FATAL = pq.ExecStatus.FATAL_ERROR

#: Why a pipelined statement must be one statement: its results are matched by position.
ONE_STATEMENT = (
    "a statement in a pipelined transaction must be exactly one SQL statement (results are matched to "
    "statements by position); split {sql!r} into one execute() per statement"
)


class AsyncBatchCursor(AsyncClientCursor[Any]):
    """A ``ClientCursor`` that remembers which result of a multi-statement message failed.

    psycopg raises the first error and drops the results; ``failed_at`` is that result's
    position (None when psycopg checked nothing, or a later psycopg renamed the hook).
    """

    failed_at: int | None = None

    def _check_results(self, results: list[Any]) -> None:
        for index, result in enumerate(results):
            if result.status == _FATAL:
                self.failed_at = index
                break
        super()._check_results(results)


def _inline(cursor: AsyncClientCursor[Any], sql: str, params: Any) -> str:
    if params is None:
        return sql
    return cursor.mogrify(parenthesized(sql), params)


def begun_query(conn: AsyncConnection[Any], begin: str, sql: str, params: Any) -> str:
    """``begin`` and the statement as one simple-protocol query, the values bound on the client."""
    if params is None:  # nothing to bind: no cursor needed
        return f"{begin};\n{sql}"
    return f"{begin};\n{_inline(AsyncClientCursor(conn), sql, params)}"


async def run_batch(
    conn: AsyncConnection[Any], begin: str | None, statements: Sequence[tuple[str, Any]], end: str | None
) -> list[AsyncListRows]:
    """Send ``begin``, the statements and ``end`` in one message; each statement's rows, in a list.

    If statement ``i`` fails, raises ``BatchFailed(i)`` from psycopg's error (``None``: the
    BEGIN or the COMMIT failed); the server ran none of the statements after it.
    """
    cursor = AsyncBatchCursor(conn)
    cursor.row_factory = row_factory
    parts = [] if begin is None else [begin]
    for sql, params in statements:
        if count_statements(sql, POSTGRESQL) != 1:
            raise ProgrammingError(ONE_STATEMENT.format(sql=sql))
        parts.append(_inline(cursor, sql, params))
    if end is not None:
        parts.append(end)
    # A newline after each statement: a trailing "-- comment" must not swallow the next one.
    try:
        await cursor.execute(";\n".join(parts))
    except Exception as exc:
        position = cursor.failed_at
        index = None if position is None else position - (begin is not None)
        raise BatchFailed(index if index is not None and 0 <= index < len(statements) else None) from exc
    if begin is not None:
        cursor.nextset()
    results: list[AsyncListRows] = []
    for position in range(len(statements)):
        if position:
            cursor.nextset()
        description = cursor.description
        rows = await cursor.fetchall() if description is not None else []
        keys = [column.name for column in description] if description is not None else []
        results.append(AsyncListRows(keys, rows, cursor.rowcount, returns_rows=description is not None))
    await cursor.close()
    return results
