"""The connection, result and transaction objects of ``PostgresDatabase``.

Connections run in psycopg's default (non-autocommit) mode: the first statement of a
transaction sends ``BEGIN``, ``commit()`` sends ``COMMIT``. That is exactly what a raw
``psycopg_pool`` transaction costs, an empty transaction costs no round trip, and raw
``SAVEPOINT``/``ROLLBACK TO SAVEPOINT`` statements work because a transaction is
always open. Per-transaction isolation and read-only mode are psycopg connection
attributes, folded into that same ``BEGIN``.

The context managers are classes (not ``@contextmanager``): they sit on the hot path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

import psycopg
from psycopg import pq
from psycopg.rows import tuple_row

from structum_lab.plugins.database import (
    DatabaseError,
    IsolationLevel,
    Params,
    ProgrammingError,
    Row,
    TransactionError,
)
from structum_lab.plugins.database.kit import (
    ABORTED_TRANSACTION,
    CONNECTION_ENDED,
    NESTED_OPTIONS,
    NO_ROWS,
    NOTHING_EXECUTED,
    executemany_batches,
    leaks,
    paused_gc,
)

from ._common import TRANSLATOR, sql_log
from ._pool import copy_statement, psycopg_isolation

if TYPE_CHECKING:
    from ._database import PostgresDatabase

__all__ = ["PostgresConnection", "PostgresResult"]

log = logging.getLogger("structum_lab.plugins.database")

_IDLE = pq.TransactionStatus.IDLE
_INERROR = pq.TransactionStatus.INERROR
_translate_sql = TRANSLATOR.__call__
_epoch = leaks.epoch


def _no_rows_or(db: Any, exc: psycopg.Error, cursor: Any) -> DatabaseError:
    """A fetch failed: either the statement returns no rows, or a value could not be loaded."""
    if isinstance(exc, psycopg.ProgrammingError) and cursor.description is None:
        return ProgrammingError(NO_ROWS, backend="psycopg")
    return db._translate(exc)  # type: ignore[no-any-return]


class PostgresResult:
    """Rows of one statement: ``fetchone``/``fetchmany(size=)``/``fetchall``/``scalar``, ``rowcount``.

    Rows are fetched from psycopg's client-side cursor (the whole result arrived with
    the statement), so a result stays readable after later statements and after its
    transaction ended. Fetching past the end gives ``None``/``[]``, as a DB-API cursor.
    """

    __slots__ = ("_cursor", "_db", "_done")

    def __init__(self, cursor: psycopg.Cursor[Row], db: Any) -> None:
        self._cursor = cursor
        self._db = db
        self._done = False

    @property
    def rowcount(self) -> int:
        """Rows affected (INSERT/UPDATE/DELETE) or returned (SELECT); -1 if unknown."""
        return self._cursor.rowcount

    @property
    def cursor(self) -> psycopg.Cursor[Row]:
        """The psycopg cursor that holds the rows (escape hatch)."""
        return self._cursor

    def keys(self) -> list[str]:
        description = self._cursor.description
        return [column.name for column in description] if description else []

    def fetchone(self) -> Row | None:
        if self._done:
            return None
        try:
            return self._cursor.fetchone()
        except psycopg.Error as exc:
            raise _no_rows_or(self._db, exc, self._cursor) from exc

    def fetchmany(self, size: int | None = None) -> list[Row]:
        if self._done:
            return []
        cursor = self._cursor
        try:
            with paused_gc(min(size or 0, max(cursor.rowcount, 0))):
                return cursor.fetchmany(size or 0)
        except psycopg.Error as exc:
            raise _no_rows_or(self._db, exc, cursor) from exc

    def fetchall(self) -> list[Row]:
        if self._done:
            return []
        cursor = self._cursor
        try:
            with paused_gc(cursor.rowcount):
                return cursor.fetchall()
        except psycopg.Error as exc:
            raise _no_rows_or(self._db, exc, cursor) from exc

    def scalar(self) -> Any:
        """The first column of the first row (``None`` without rows); the result is then exhausted."""
        if self._done:
            return None
        cursor: Any = self._cursor
        try:
            # By position, not through the dict: two columns may share a name.
            cursor.row_factory = tuple_row
            values = cursor.fetchone()
        except psycopg.Error as exc:
            raise _no_rows_or(self._db, exc, cursor) from exc
        self._done = True
        return None if values is None else values[0]

    def __iter__(self) -> Iterator[Row]:
        while (row := self.fetchone()) is not None:
            yield row


class _Savepoint:
    """``with conn.transaction():`` - a SAVEPOINT released on success, rolled back to on error."""

    __slots__ = ("_conn", "_name")

    def __init__(self, conn: PostgresConnection) -> None:
        self._conn = conn
        self._name = ""

    def __enter__(self) -> PostgresConnection:
        conn = self._conn
        raw = conn._live()
        conn._depth += 1
        self._name = name = f"structum_sp_{conn._depth}"
        try:
            raw.execute(f"SAVEPOINT {name}", prepare=False)
        except psycopg.Error as exc:
            conn._depth -= 1
            raise conn._db._translate(exc, raw) from exc
        return conn

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        conn = self._conn
        conn._depth -= 1
        raw = conn._raw
        if raw is None or raw.closed:
            return
        name = self._name
        if exc_type is None:
            try:
                raw.execute(f"RELEASE SAVEPOINT {name}", prepare=False)
            except psycopg.Error as error:
                raise conn._db._translate(error, raw) from error
        else:
            try:
                raw.execute(f"ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}", prepare=False)
            except psycopg.Error:
                # The caller's exception is the one that explains what happened.
                log.debug("rollback to savepoint failed after %s", exc_type.__name__, exc_info=True)


class PostgresConnection:
    """A pooled connection inside a transaction.

    Not thread-safe: use one per thread (each ``db.transaction()`` gives its caller its own).
    """

    __slots__ = ("_db", "_depth", "_epoch", "_last", "_raw")

    def __init__(self, db: PostgresDatabase, raw: psycopg.Connection[Row]) -> None:
        self._db = db
        self._epoch = _epoch()
        self._raw: psycopg.Connection[Row] | None = raw
        self._last: PostgresResult | None = None
        self._depth = 0

    def __del__(self, _reclaim_later: Any = leaks.reclaim_later) -> None:
        # Dropped while still open (get_connection() without close()): the reaper thread
        # rolls back and returns the connection; a finalizer itself must not block or lock.
        raw = self._raw
        if raw is not None:
            self._raw = None
            _reclaim_later(self._epoch, self._db._reclaim, raw)

    def _live(self) -> psycopg.Connection[Row]:
        raw = self._raw
        if raw is None:
            raise TransactionError(CONNECTION_ENDED)
        return raw

    @property
    def closed(self) -> bool:
        return self._raw is None

    @property
    def psycopg_connection(self) -> psycopg.Connection[Row]:
        """The underlying ``psycopg.Connection``, inside the same transaction (escape hatch)."""
        return self._live()

    # -- statements ----------------------------------------------------------------------

    def execute(self, sql: str, params: Params = None) -> PostgresResult:
        """Run one statement: ``:name`` with a dict, ``%s``/``$1`` with a tuple or list, ``%(name)s`` with a dict."""
        raw = self._raw
        if raw is None:
            raise TransactionError(CONNECTION_ENDED)
        query, bound = _translate_sql(sql, params)
        cursor = raw.cursor()
        try:
            if bound is None:
                cursor.execute(query)
            else:
                cursor.execute(query, bound)
        except psycopg.Error as exc:
            raise self._db._translate(exc, raw) from exc
        if self._db._echo:
            sql_log.info("%s %r", query, bound)
        self._last = result = PostgresResult(cursor, self._db)
        return result

    def executemany(self, sql: str, params_seq: Iterable[Params]) -> int:
        """One statement for each parameter set, pipelined by psycopg; returns the rows affected."""
        raw = self._live()
        statement = TRANSLATOR.prepare(sql)
        batch = statement.bind_many(params_seq)
        if not batch:
            return 0
        cursor = raw.cursor()
        total = 0
        try:
            for chunk in executemany_batches(batch):  # each a round trip under statement_deadline
                cursor.executemany(statement.sql, cast("Any", chunk))
                total += cursor.rowcount
        except psycopg.Error as exc:
            raise self._db._translate(exc, raw) from exc
        return total

    def copy_records(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        """Bulk-load ``rows`` into ``table`` (``"name"`` or ``"schema.name"``) with COPY; returns the count.

        Much faster than ``executemany`` for thousands of rows (one stream, no per-row
        statement); values go through psycopg's adapters as text.
        """
        raw = self._live()
        statement = copy_statement(table, columns)
        cursor = raw.cursor()
        count = 0
        try:
            with cursor.copy(statement) as copy:
                write_row = copy.write_row
                for row in rows:
                    write_row(row)
                    count += 1
        except psycopg.Error as exc:
            raise self._db._translate(exc, raw) from exc
        return cursor.rowcount if cursor.rowcount >= 0 else count

    def _last_result(self) -> PostgresResult:
        if self._last is None:
            raise ProgrammingError(NOTHING_EXECUTED)
        return self._last

    def fetchone(self) -> Row | None:
        """Fetch from the last ``execute()`` result (DB-API cursor style, spec section 1.1)."""
        return self._last_result().fetchone()

    def fetchmany(self, size: int | None = None) -> list[Row]:
        return self._last_result().fetchmany(size)

    def fetchall(self) -> list[Row]:
        return self._last_result().fetchall()

    # -- transactions --------------------------------------------------------------------

    def transaction(self) -> _Savepoint:
        """A nested transaction (SAVEPOINT): ``with conn.transaction(): ...``."""
        return _Savepoint(self)

    def commit(self) -> None:
        """Commit the work so far; the next statement starts a new transaction."""
        self._db._commit(self._live())

    def rollback(self) -> None:
        """Roll back the work so far; the next statement starts a new transaction."""
        raw = self._live()
        try:
            raw.rollback()
        except psycopg.Error as exc:
            raise self._db._translate(exc, raw) from exc

    def close(self) -> None:
        """Roll back anything uncommitted and return the connection to the pool."""
        raw = self._raw
        if raw is None:
            return
        self._raw = None
        self._last = None
        self._db._release(raw)

    def __enter__(self) -> PostgresConnection:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        try:
            if exc_type is None and self._raw is not None:
                self._db._commit(self._raw)
        finally:
            self.close()


class _Transaction:
    """``with db.transaction() as conn:`` (class-based: cheaper than @contextmanager)."""

    __slots__ = ("_conn", "_db", "_isolation", "_nested", "_readonly", "_started", "_token")

    def __init__(self, db: PostgresDatabase, isolation: IsolationLevel | None, readonly: bool) -> None:
        self._db = db
        self._isolation = isolation
        self._readonly = readonly
        self._nested: _Savepoint | None = None
        self._started = 0.0

    def __enter__(self) -> PostgresConnection:
        db = self._db
        current = db._scope.current()
        if current is not None:
            if self._isolation is not None or self._readonly:
                raise TransactionError(NESTED_OPTIONS)
            self._nested = nested = _Savepoint(current)
            return nested.__enter__()
        if db._observed():
            self._started = time.perf_counter()
        raw = db._checkout()
        if self._isolation is not None or self._readonly:
            try:
                if self._isolation is not None:
                    raw.isolation_level = psycopg_isolation(self._isolation)
                if self._readonly:
                    raw.read_only = True
            except BaseException:
                db._release(raw)
                raise
        self._conn = conn = PostgresConnection(db, raw)
        self._token = db._scope.enter(conn)
        return conn

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if self._nested is not None:
            self._nested.__exit__(exc_type, exc, tb)
            return
        db = self._db
        conn = self._conn
        db._scope.leave(self._token)
        raw = conn._raw
        error: BaseException | None = exc
        outcome: Literal["commit", "rollback"] = "commit" if exc_type is None else "rollback"
        try:
            if raw is None:  # closed inside the block: its work was rolled back
                outcome = "rollback"
                return
            if exc_type is None:
                try:
                    db._commit(raw)
                except BaseException as commit_error:
                    error = commit_error
                    outcome = "rollback"
                    raise
            else:
                try:
                    raw.rollback()
                except psycopg.Error:
                    # The connection is likely dead and the pool discards it; the caller's
                    # exception is the one that explains what happened.
                    log.debug("rollback failed after %s", exc_type.__name__, exc_info=True)
        finally:
            if raw is not None:
                conn._raw = None
                conn._last = None
                if self._isolation is not None or self._readonly:
                    db._reset_options(raw)
                db._release(raw)
            if self._started:
                db._transaction_finished(outcome, self._started, error)


def commit(db: Any, raw: psycopg.Connection[Row]) -> None:
    """COMMIT, refusing to report success for a transaction PostgreSQL has aborted."""
    if raw.pgconn.transaction_status == _INERROR:
        try:
            raw.rollback()
        except psycopg.Error:
            log.debug("rollback of an aborted transaction failed", exc_info=True)
        raise TransactionError(ABORTED_TRANSACTION, sqlstate="25P02", backend="psycopg")
    try:
        raw.commit()
    except psycopg.Error as exc:
        error = db._translate(exc, raw)
        if not raw.closed and raw.pgconn.transaction_status != _IDLE:
            try:
                raw.rollback()
            except psycopg.Error:
                log.debug("rollback after a failed commit failed", exc_info=True)
        raise error from exc
