"""The connection and result objects the SQLAlchemy backend hands to user code.

SQL goes to the driver through ``Connection.exec_driver_sql`` after core's cached
translation of the placeholders: it skips SQLAlchemy's statement compilation (so
it is cheaper than ``text()``) and it never mistakes ``':x'`` in a literal for a
parameter. Rows are read straight from the DB-API cursor into core ``Row`` dicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from structum_lab.plugins.database import (
    DatabaseError,
    ParameterError,
    Params,
    ProgrammingError,
    Row,
    TransactionError,
)
from structum_lab.plugins.database.kit import (
    ABORTED_TRANSACTION,
    CONNECTION_ENDED,
    NO_ROWS,
    NOTHING_EXECUTED,
    BufferedResult,
    Translator,
    executemany_batches,
    leaks,
    paused_gc,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ._database import SQLAlchemyDatabase

_PQ_INERROR = 3  # libpq's PQTRANS_INERROR

__all__ = [
    "STATEMENT_ERRORS",
    "SQLAlchemyConnection",
    "SQLAlchemyResult",
    "reset_driver_transaction",
    "statement_error",
]

_NO_PARAMS = {"no_parameters": True}
_epoch = leaks.epoch


def postgres_aborted(sa_conn: sa.Connection | None) -> bool:
    """PostgreSQL has aborted the transaction: a statement failed and no savepoint was
    rolled back to. COMMIT would then silently roll back; we report it instead.

    Only psycopg exposes the state (``info.transaction_status``); other drivers say no.
    """
    if sa_conn is None:
        return False
    driver = sa_conn.connection.driver_connection
    status = getattr(getattr(driver, "info", None), "transaction_status", None)
    return status is not None and int(status) == _PQ_INERROR


def reset_driver_transaction(sa_conn: sa.Connection) -> None:
    """Roll back at the driver after a failed COMMIT.

    SQLAlchemy then considers the transaction finished and its pool skips the
    rollback on return, but the driver may still be inside it (SQLite keeps the
    transaction and its locks after SQLITE_BUSY on COMMIT). A connection that
    cannot even roll back is invalidated rather than pooled.
    """
    try:
        dbapi_connection = sa_conn.connection.dbapi_connection
        if dbapi_connection is not None:
            dbapi_connection.rollback()
    except Exception:
        sa_conn.invalidate()


#: What running a statement through ``exec_driver_sql`` raises (``DBAPIError`` is a
#: ``StatementError``); :func:`statement_error` turns each into the core error.
STATEMENT_ERRORS = (sa_exc.StatementError, sa_exc.ArgumentError, TypeError, ValueError)


def statement_error(db: Any, exc: BaseException) -> DatabaseError:
    """The core error for one of :data:`STATEMENT_ERRORS`."""
    if isinstance(exc, sa_exc.DBAPIError):
        return db._translate(exc)  # type: ignore[no-any-return]
    if isinstance(exc, sa_exc.StatementError):
        return db._translate(exc.orig or exc)  # type: ignore[no-any-return]
    if isinstance(exc, sa_exc.ArgumentError):
        return ParameterError(str(exc), backend="sqlalchemy")
    # TypeError, ValueError: the driver cannot send a value (PyMySQL raises these).
    return ParameterError(f"the driver cannot send these parameters: {exc}", backend="sqlalchemy")


class SQLAlchemyResult:
    """Rows of one statement: ``fetchone``/``fetchmany``/``fetchall``, ``rowcount``."""

    __slots__ = ("_cursor", "_keys", "_result", "_returns_rows", "rowcount")

    def __init__(self, result: sa.CursorResult[Any]) -> None:
        self._result = result
        cursor: Any = result.cursor
        self._cursor = cursor
        description = cursor.description if cursor is not None else None
        # No description: DML without RETURNING (SQLAlchemy has already closed the cursor).
        self._keys: list[str] = [d[0] for d in description] if description else []
        self._returns_rows = description is not None
        self.rowcount: int = cursor.rowcount if cursor is not None else result.rowcount

    def _rows_cursor(self) -> Any:
        """The DB-API cursor, or None once every row has been read."""
        if not self._returns_rows:
            raise ProgrammingError(NO_ROWS)
        return self._cursor

    def _exhausted(self) -> None:
        # Later fetches answer "no more rows", as a DB-API cursor does, instead of failing.
        self._cursor = None
        self._result.close()

    def keys(self) -> list[str]:
        return list(self._keys)

    def fetchone(self) -> Row | None:
        cursor = self._rows_cursor()
        values = cursor.fetchone() if cursor is not None else None
        if values is None:
            if cursor is not None:
                self._exhausted()
            return None
        return Row(zip(self._keys, values, strict=True))

    def fetchmany(self, size: int | None = None) -> list[Row]:
        cursor = self._rows_cursor()
        if cursor is None:
            return []
        batch = cursor.fetchmany(size) if size is not None else cursor.fetchmany()
        if not batch:
            self._exhausted()
        keys = self._keys
        with paused_gc(len(batch)):
            return [Row(zip(keys, values, strict=False)) for values in batch]  # the cursor gives one value per key

    def fetchall(self) -> list[Row]:
        cursor = self._rows_cursor()
        if cursor is None:
            return []
        batch = cursor.fetchall()
        self._exhausted()
        keys = self._keys
        with paused_gc(len(batch)):
            return [Row(zip(keys, values, strict=False)) for values in batch]  # the cursor gives one value per key

    def scalar(self) -> Any:
        cursor = self._rows_cursor()
        values = cursor.fetchone() if cursor is not None else None
        if cursor is not None:
            self._exhausted()
        return None if values is None else values[0]

    def __iter__(self) -> Iterator[Row]:
        while (row := self.fetchone()) is not None:
            yield row

    def close(self) -> None:
        self._result.close()

    def buffered(self) -> BufferedResult:
        """The rest of the rows, detached from the cursor (before its connection is returned)."""
        return BufferedResult(self._keys, self.fetchall() if self._returns_rows else [], self.rowcount)


class _Savepoint:
    """``with conn.transaction():`` - a SAVEPOINT released on success, rolled back on error."""

    __slots__ = ("_conn", "_nested")

    def __init__(self, conn: SQLAlchemyConnection) -> None:
        self._conn = conn
        self._nested: sa.NestedTransaction | None = None

    def __enter__(self) -> SQLAlchemyConnection:
        sa_conn = self._conn._live()
        try:
            self._nested = sa_conn.begin_nested()
        except sa_exc.DBAPIError as exc:
            raise self._conn._db._translate(exc) from exc
        return self._conn

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        nested = self._nested
        if nested is None or not nested.is_active:
            return
        try:
            if exc_type is None:
                nested.commit()
            else:
                nested.rollback()
        except sa_exc.DBAPIError as error:
            if exc_type is None:
                raise self._conn._db._translate(error) from error
            # The original exception is the one the caller needs to see.


class SQLAlchemyConnection:
    """A pooled connection inside a transaction.

    Not thread-safe, like the SQLAlchemy ``Connection`` it wraps: use one per thread
    (each ``db.transaction()`` call gives its caller its own).
    """

    __slots__ = ("_db", "_epoch", "_last", "_sa", "_translate_sql", "_tx")

    def __init__(self, db: SQLAlchemyDatabase, sa_conn: sa.Connection, translator: Translator) -> None:
        self._db = db
        self._epoch = _epoch()
        self._sa: sa.Connection | None = sa_conn
        self._tx: sa.RootTransaction | None = None
        self._translate_sql = translator
        self._last: SQLAlchemyResult | None = None

    def __del__(self, _reclaim_later: Any = leaks.reclaim_later) -> None:
        # Dropped while still open (get_connection() without close()): the reaper thread
        # rolls back and returns the connection. SQLAlchemy's own rescue would wait for
        # the cyclic collector, and a finalizer itself must not block or lock.
        sa_conn = self._sa
        if sa_conn is not None:
            self._sa = None
            _reclaim_later(self._epoch, self._db._reclaim, sa_conn)

    # -- state ---------------------------------------------------------------------------

    def _live(self) -> sa.Connection:
        sa_conn = self._sa
        if sa_conn is None:
            raise TransactionError(CONNECTION_ENDED)
        return sa_conn

    @property
    def closed(self) -> bool:
        return self._sa is None

    @property
    def sqlalchemy_connection(self) -> sa.Connection:
        """The underlying SQLAlchemy ``Connection`` (escape hatch for Core constructs)."""
        return self._live()

    def _begin(self) -> None:
        self._tx = self._live().begin()

    # -- statements ----------------------------------------------------------------------

    def execute(self, sql: str, params: Params = None) -> SQLAlchemyResult:
        """Run one statement; ``:name`` placeholders with a dict (``%s``/``$1`` with a tuple also work)."""
        sa_conn = self._sa
        if sa_conn is None:
            raise TransactionError(CONNECTION_ENDED)
        driver_sql, bound = self._translate_sql(sql, params)
        try:
            if bound is None:
                result = sa_conn.exec_driver_sql(driver_sql, execution_options=_NO_PARAMS)
            elif type(bound) is list:
                # SQLAlchemy reads a list as many parameter sets (executemany); one set is a tuple.
                result = sa_conn.exec_driver_sql(driver_sql, tuple(bound))
            else:
                result = sa_conn.exec_driver_sql(driver_sql, bound)
        except STATEMENT_ERRORS as exc:
            raise statement_error(self._db, exc) from exc
        self._last = wrapped = SQLAlchemyResult(result)
        return wrapped

    def executemany(self, sql: str, params_seq: Iterable[Params]) -> int:
        """Run one statement for each parameter set (the driver's executemany); returns rows affected."""
        sa_conn = self._live()
        statement = self._translate_sql.prepare(sql)
        batch = statement.bind_many(params_seq)
        if not batch:
            return 0
        param_sets = [tuple(b) if type(b) is list else b for b in batch]
        total = 0
        try:
            for chunk in executemany_batches(param_sets):  # each a round trip under statement_deadline
                result = sa_conn.exec_driver_sql(statement.sql, chunk)
                total = total + result.rowcount if total >= 0 and result.rowcount >= 0 else -1
        except STATEMENT_ERRORS as exc:
            raise statement_error(self._db, exc) from exc
        return total

    def _last_result(self) -> SQLAlchemyResult:
        if self._last is None:
            raise ProgrammingError(NOTHING_EXECUTED)
        return self._last

    def fetchone(self) -> Row | None:
        """Fetch from the last ``execute()`` result (DB-API cursor style)."""
        return self._last_result().fetchone()

    def fetchmany(self, size: int | None = None) -> list[Row]:
        return self._last_result().fetchmany(size)

    def fetchall(self) -> list[Row]:
        return self._last_result().fetchall()

    # -- transactions --------------------------------------------------------------------

    def transaction(self) -> _Savepoint:
        """A nested transaction (SAVEPOINT): ``with conn.transaction(): ...``."""
        return _Savepoint(self)

    def session(self) -> Session:
        """An ORM ``Session`` joined to this connection's transaction.

        ``session.commit()`` inside only releases a savepoint; the enclosing
        ``transaction()`` decides. Close it (``with conn.session() as s:``) when done.
        """
        from sqlalchemy.orm import Session

        return Session(bind=self._live(), join_transaction_mode="create_savepoint")

    def commit(self) -> None:
        """Commit the work so far; the connection stays usable in a new transaction."""
        sa_conn = self._live()
        if self._db._dialect == "postgresql" and postgres_aborted(sa_conn):
            self.rollback()
            raise TransactionError(ABORTED_TRANSACTION, sqlstate="25P02", backend="sqlalchemy")
        try:
            if self._tx is not None and self._tx.is_active:
                self._tx.commit()
            elif sa_conn.in_transaction():
                sa_conn.commit()
        except sa_exc.DBAPIError as exc:
            reset_driver_transaction(sa_conn)
            raise self._db._translate(exc) from exc
        try:
            self._tx = sa_conn.begin()
        except sa_exc.DBAPIError as exc:
            raise self._db._translate(exc) from exc

    def rollback(self) -> None:
        """Roll back the work so far; the connection stays usable in a new transaction."""
        sa_conn = self._live()
        try:
            if self._tx is not None and self._tx.is_active:
                self._tx.rollback()
            elif sa_conn.in_transaction():
                sa_conn.rollback()
            self._tx = sa_conn.begin()
        except sa_exc.DBAPIError as exc:
            raise self._db._translate(exc) from exc

    def close(self) -> None:
        """Roll back anything uncommitted and return the connection to the pool."""
        sa_conn = self._sa
        if sa_conn is None:
            return
        self._sa = None
        self._last = None
        self._db._release(sa_conn)

    def _finish(self, commit: bool) -> None:
        """End the root transaction (used by ``db.transaction()``'s exit)."""
        tx = self._tx
        sa_conn = self._live()
        if commit:
            if self._db._dialect == "postgresql" and postgres_aborted(sa_conn):
                self._finish(commit=False)
                raise TransactionError(ABORTED_TRANSACTION, sqlstate="25P02", backend="sqlalchemy")
            try:
                if tx is not None and tx.is_active:
                    tx.commit()
                elif sa_conn.in_transaction():
                    sa_conn.commit()
            except sa_exc.DBAPIError:
                reset_driver_transaction(sa_conn)
                raise
        elif tx is not None and tx.is_active:
            tx.rollback()
        elif sa_conn.in_transaction():
            sa_conn.rollback()

    def __enter__(self) -> SQLAlchemyConnection:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        try:
            if exc_type is None and self._sa is not None:
                try:
                    self._finish(commit=True)
                except sa_exc.DBAPIError as error:
                    raise self._db._translate(error) from error
        finally:
            self.close()
