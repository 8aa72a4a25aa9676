"""``SQLAlchemyDatabase``: a pooled SQLAlchemy engine behind the core API."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from structum_lab.plugins.database import (
    DatabaseError,
    DatabaseURL,
    HealthCheckResult,
    IsolationLevel,
    Params,
    TransactionError,
)
from structum_lab.plugins.database.kit import (
    FORK,
    NESTED_OPTIONS,
    BufferedResult,
    TransactionScope,
    adopt,
    leaks,
    normalize_isolation,
    round_trip_cap,
    run_health_check,
)

from ._common import EngineDatabase, SQLAlchemyPoolTimeoutError, describe_connection
from ._connection import SQLAlchemyConnection

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["SQLAlchemyDatabase", "SQLAlchemyPoolTimeoutError"]

log = logging.getLogger("structum_lab.plugins.database")


class _Transaction:
    """``with db.transaction() as conn:`` (class-based: cheaper than @contextmanager)."""

    __slots__ = ("_conn", "_db", "_isolation", "_nested", "_readonly", "_started", "_token")

    def __init__(self, db: SQLAlchemyDatabase, isolation: IsolationLevel | None, readonly: bool) -> None:
        self._db = db
        self._isolation = isolation
        self._readonly = readonly
        self._nested: Any = None
        self._started = 0.0

    def __enter__(self) -> SQLAlchemyConnection:
        db = self._db
        current = db._scope.current()
        if current is not None:
            if self._isolation is not None or self._readonly:
                raise TransactionError(NESTED_OPTIONS)
            self._nested = current.transaction()
            return self._nested.__enter__()  # type: ignore[no-any-return]
        if db._observed():
            self._started = time.perf_counter()
        sa_conn = db._checkout(self._isolation, self._readonly)
        conn = SQLAlchemyConnection(db, sa_conn, db._translator)
        try:
            conn._begin()
            if self._readonly and (sql := db._readonly_sql(True)):
                sa_conn.exec_driver_sql(sql)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sa_exc.DBAPIError):
                raise db._translate(exc) from exc
            raise
        self._conn = conn
        self._token = db._scope.enter(conn)
        return conn

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if self._nested is not None:
            self._nested.__exit__(exc_type, exc, tb)
            return
        db = self._db
        conn = self._conn
        db._scope.leave(self._token)
        error: BaseException | None = exc
        try:
            if conn.closed:
                return
            if exc_type is None:
                try:
                    conn._finish(commit=True)
                except sa_exc.DBAPIError as commit_error:
                    error = db._translate(commit_error)
                    raise error from commit_error
                except DatabaseError as refused:  # an aborted transaction is not reported as committed
                    error = refused
                    raise
            else:
                try:
                    conn._finish(commit=False)
                except sa_exc.DBAPIError:
                    # The connection is likely dead and the pool discards it; the caller's
                    # exception is the one that explains what happened.
                    log.debug("rollback failed after %s", exc_type.__name__, exc_info=True)
            if self._readonly and db._dialect == "sqlite":
                conn.sqlalchemy_connection.exec_driver_sql("PRAGMA query_only = 0")
        finally:
            conn.close()
            if self._started:
                db._transaction_finished("commit" if error is None else "rollback", self._started, error)


class SQLAlchemyDatabase(EngineDatabase):
    """A database on a SQLAlchemy engine: SQLite, PostgreSQL, MySQL/MariaDB and more.

    ``url`` is any SQLAlchemy URL; a bare ``postgresql://`` uses psycopg 3, a bare
    ``mysql://`` PyMySQL. The pool options are SQLAlchemy's, with the same names.
    """

    _engine: sa.Engine
    _scope: TransactionScope[SQLAlchemyConnection]

    def __init__(
        self,
        url: str | DatabaseURL,
        *,
        pool_size: int = 5,
        max_overflow: int = 10,
        pool_timeout: float = 30.0,
        pool_recycle: float | None = None,
        pool_pre_ping: bool = True,
        pool_use_lifo: bool = False,
        echo: bool = False,
        connect_args: Mapping[str, Any] | None = None,
        connect_timeout: float | None = 10.0,
        statement_timeout: float | None = None,
        statement_deadline: float | None = None,
        isolation_level: str | None = None,
        health_check_timeout: float = 5.0,
        health_degraded_ms: float = 1000.0,
        name: str | None = None,
        engine_options: Mapping[str, Any] | None = None,
        prepare_threshold: int | str | None = 5,
    ) -> None:
        self._init_engine(
            url,
            is_async=False,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            pool_recycle=pool_recycle,
            pool_pre_ping=pool_pre_ping,
            pool_use_lifo=pool_use_lifo,
            echo=echo,
            connect_args=connect_args,
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
            statement_deadline=statement_deadline,
            isolation_level=isolation_level,
            health_check_timeout=health_check_timeout,
            health_degraded_ms=health_degraded_ms,
            name=name,
            engine_options=engine_options,
            prepare_threshold=prepare_threshold,
        )

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy ``Engine`` (for Alembic, ``MetaData.create_all`` and Core)."""
        return self._engine

    def transaction(self, *, isolation: IsolationLevel | None = None, readonly: bool = False) -> _Transaction:
        """A transaction: commit on success, rollback on any exception (re-raised).

        Called while a transaction is open in the same thread, it becomes a
        savepoint of that one. ``isolation`` (``"serializable"``, ...) and
        ``readonly`` apply to this transaction only.
        """
        return _Transaction(self, normalize_isolation(isolation) if isolation else None, readonly)

    def get_connection(self) -> SQLAlchemyConnection:
        """A connection in a transaction you end yourself: ``commit()``/``rollback()``, then ``close()``.

        Also a context manager (commits on success, rolls back on error, closes).
        """
        leaks.ensure_reaper()  # returns the connection if it is garbage-collected open
        sa_conn = self._checkout(None, False)
        conn = SQLAlchemyConnection(self, sa_conn, self._translator)
        try:
            conn._begin()
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sa_exc.DBAPIError):
                raise self._translate(exc) from exc
            raise
        return conn

    def execute(self, sql: str, params: Params = None) -> BufferedResult:
        """Run one statement on its own and return all of its rows.

        On PostgreSQL it runs in autocommit: one round trip instead of three
        (BEGIN, the statement, COMMIT). Elsewhere it is a transaction of its own.
        Called inside an open ``transaction()`` it runs in that transaction.
        """
        current = self._scope.current()
        if current is not None:
            return current.execute(sql, params).buffered()
        sa_conn = self._checkout(None, False)
        conn = SQLAlchemyConnection(self, sa_conn, self._translator)
        try:
            if self._dialect == "postgresql":
                sa_conn.execution_options(isolation_level="AUTOCOMMIT")
                return conn.execute(sql, params).buffered()
            conn._begin()
            result = conn.execute(sql, params).buffered()
            conn._finish(commit=True)
            return result
        except sa_exc.DBAPIError as exc:
            raise self._translate(exc) from exc
        finally:
            conn.close()

    @contextmanager
    def get_session(self, **session_options: Any) -> Iterator[Session]:
        """An ORM ``Session``, closed when the block ends and rolled back if it raises.

        Inside an open ``transaction()`` the session joins it (commits become savepoints).
        """
        from sqlalchemy.orm import Session

        current = self._scope.current()
        if current is not None:
            with current.session() as joined:
                yield joined
            return
        sa_conn = self._checkout(None, False)
        try:
            with Session(bind=sa_conn, **session_options) as session:
                try:
                    yield session
                except BaseException:
                    session.rollback()
                    raise
        finally:
            self._release(sa_conn)

    def health_check(self) -> HealthCheckResult:
        """One round trip with a hard deadline; never raises. DEGRADED when the pool is exhausted."""
        result = run_health_check(
            self._probe,
            timeout_s=self.health_check_timeout,
            degraded_ms=self.health_degraded_ms,
            secrets=self._secrets,
            details=self._health_details,
        )
        self._plugins.health_checked(self, result)
        return result

    def shutdown(self) -> None:
        """Close every pooled connection. Idempotent; the database is unusable afterwards."""
        if self._fork_epoch != FORK.epoch:
            adopt(self, self._after_fork)  # a forked child closes its own pool, never the parent's
        self._closed = True
        self._engine.dispose()

    def __enter__(self) -> SQLAlchemyDatabase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    # -- internals ---------------------------------------------------------------------

    def _checkout(self, isolation: IsolationLevel | None, readonly: bool) -> sa.Connection:
        self._check_open()
        started = self._stats.checkout_started()
        try:
            with round_trip_cap(self._ping_budget):  # the pre-ping: no answer in time, a dead connection
                sa_conn = self._engine.connect()
        except sa_exc.TimeoutError as exc:
            raise self._exhausted(started) from exc
        except (sa_exc.DBAPIError, OSError) as exc:  # asyncpg raises OSError when it cannot connect
            raise self._connect_failed(started, exc) from exc
        except (TypeError, ValueError) as exc:  # the driver's connect() refused its arguments
            raise self._driver_refused(started, exc) from exc
        self._stats.checkout_done(started)
        self._lent.add(sa_conn)
        try:
            if isolation is not None:
                sa_conn.execution_options(isolation_level=self._isolation_option(isolation))
            if readonly and self._dialect == "postgresql":
                sa_conn.execution_options(postgresql_readonly=True)
        except (sa_exc.ArgumentError, sa_exc.DBAPIError) as exc:
            self._release(sa_conn)
            raise self._error(exc, context=f"cannot use isolation level {isolation!r}") from exc
        return sa_conn

    def _release(self, sa_conn: sa.Connection) -> None:
        self._stats.released()
        self._lent.discard(sa_conn)
        try:
            sa_conn.close()
        except sa_exc.DBAPIError:
            log.debug("error while returning a connection to the pool", exc_info=True)

    def _reclaim(self, sa_conn: sa.Connection) -> None:
        """Return a connection whose wrapper was garbage-collected open (on the reaper thread)."""
        detail = describe_connection(sa_conn)
        self._release(sa_conn)
        leaks.warn_leak(self._name, detail)

    def _probe(self, timeout_s: float) -> None:
        self._refuse_if_exhausted()
        with round_trip_cap(timeout_s):  # the probe's round trips end with the health deadline
            sa_conn = self._checkout(None, False)
            try:
                if not self._pre_ping:
                    # With pre-ping on, the checkout above already made the one round trip.
                    _ping(sa_conn)
            finally:
                self._release(sa_conn)


def _ping(sa_conn: sa.Connection) -> None:
    """The dialect's own cheapest round trip (``SELECT 1``, or ``... FROM DUAL`` on Oracle)."""
    dbapi_connection = sa_conn.connection.dbapi_connection
    if dbapi_connection is not None:
        sa_conn.dialect.do_ping(dbapi_connection)
