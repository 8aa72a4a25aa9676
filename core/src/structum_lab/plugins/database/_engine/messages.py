"""Messages every backend uses for the same misuse, so users read the same words
whichever backend the configuration selected."""

from __future__ import annotations

from typing import Final

__all__ = [
    "ABORTED_TRANSACTION",
    "CONNECTION_ENDED",
    "MULTIPLE_ROWS",
    "NESTED_OPTIONS",
    "NOTHING_EXECUTED",
    "NOT_BEGUN",
    "NO_ROW",
    "NO_ROWS",
]

CONNECTION_ENDED: Final = (
    "this connection's transaction has ended (its transaction() block exited or close() was called); "
    "open a new one with db.transaction() or db.get_connection()"
)
NESTED_OPTIONS: Final = (
    "isolation and readonly apply to a whole transaction; this transaction() is nested in an "
    "open one (it becomes a savepoint), so set them on the outermost transaction()"
)
NO_ROWS: Final = (
    "the statement returned no rows (INSERT/UPDATE/DELETE without RETURNING); "
    "use result.rowcount for the number of affected rows"
)
NOT_BEGUN: Final = (
    "this transaction has not begun yet (BEGIN goes with its first statement, and a pipelined block queues "
    "its statements): run a statement or 'await conn.start()' before using the driver's connection"
)
NOTHING_EXECUTED: Final = "no statement has been executed on this connection yet; call execute() first"
ABORTED_TRANSACTION: Final = (
    "the transaction was rolled back, not committed: a statement in it failed and the transaction was not "
    "rolled back to a savepoint, so PostgreSQL aborted it. Catch errors inside 'with conn.transaction():' "
    "(a savepoint) to continue after a failed statement"
)
NO_ROW: Final = "the statement returned no row, and one() needs exactly one; use one_or_none() or first() to allow none"
MULTIPLE_ROWS: Final = (
    "the statement returned more than one row, and one()/one_or_none() need at most one; "
    "use first() for the first row, or add a WHERE clause or LIMIT 1"
)
