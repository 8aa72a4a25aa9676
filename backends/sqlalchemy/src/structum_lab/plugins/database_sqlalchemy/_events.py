"""What the backend hooks into a SQLAlchemy engine's events: the count of open connections,
SQLite's transactions, MySQL's statement timeout, checkout liveness and driver deadlines
(the rules are core's; docs/backends/sqlalchemy.md says what users see)."""

from __future__ import annotations

from time import monotonic
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc

from structum_lab.plugins.database import kit
from structum_lab.plugins.database.kit import PRE_PING_WINDOW, driver_socket, needs_ping, ping_forced, readable_probe

__all__ = ["PRE_PING_WINDOW", "bounded_connect", "count_connections", "install_listeners"]

_USED: Final = "structum_used"
_PROBE: Final = "structum_probe"
_FRESH: Final = "structum_fresh"


def count_connections(engine: sa.Engine) -> kit.OpenConnections:
    """Core's count of open connections, on the pool's events (before ``_bounded_connect``'s
    ``do_connect``, which opens the connection itself: a connection is timed from here).
    Counted by pool entry: an entry whose connect listeners were interrupted (a cancellation
    while ``_stamp`` sets autocommit) is closed by SQLAlchemy without a close event."""
    counter = kit.OpenConnections(holds=lambda record: record.dbapi_connection is not None)
    event.listen(engine, "do_connect", counter.connecting)
    event.listen(engine, "connect", counter.opened)
    event.listen(engine, "close", counter.gone)
    event.listen(engine, "detach", counter.gone)  # still open, but no longer the pool's
    return counter


def install_listeners(
    engine: sa.Engine, *, statement_timeout: float | None, deadline: float | None, pre_ping: bool, autocommit: bool
) -> None:
    """The dialect's listeners, checkout liveness (``autocommit``: DB-API connections kept in
    autocommit mode) and the driver's deadline."""
    dialect = engine.dialect.name
    if dialect == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_autocommit_driver(dbapi_connection: Any, _record: Any) -> None:
            # pysqlite's own transaction handling skips BEGIN before SELECT and
            # commits around DDL; we take it over so BEGIN/SAVEPOINT mean what they say.
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN")

    elif dialect in ("mysql", "mariadb") and statement_timeout:

        @event.listens_for(engine, "connect")
        def _mysql_statement_timeout(dbapi_connection: Any, _record: Any) -> None:
            kit.set_mysql_statement_timeout(dbapi_connection, statement_timeout)

    _install_liveness(engine, pre_ping=pre_ping, autocommit=autocommit)
    if deadline is not None:
        _install_deadline(engine, deadline)


def _install_liveness(engine: sa.Engine, *, pre_ping: bool, autocommit: bool) -> None:
    """A ping at checkout when core's rule says so (``pre_ping``) or the caller needs the round
    trip (``kit.forced_ping``). A failed one raises ``InvalidatePoolError``: SQLAlchemy then
    reconnects within the same checkout and replaces the older connections."""
    dialect = engine.dialect
    dbapi_error: Any = dialect.loaded_dbapi.Error

    if pre_ping or autocommit:  # else only a forced ping, which needs no stamps

        @event.listens_for(engine, "connect")
        def _stamp(dbapi_connection: Any, record: Any) -> None:
            if autocommit:
                dbapi_connection.autocommit = True
            info = record.info
            info[_USED] = monotonic()
            info[_FRESH] = True  # just connected: alive
            fd = driver_socket(record.driver_connection)
            if fd is not None:
                info[_PROBE] = readable_probe(fd)

    if pre_ping:

        @event.listens_for(engine, "checkin")
        def _returned(_dbapi_connection: Any, record: Any) -> None:
            if record is not None:
                record.info[_USED] = monotonic()

    @event.listens_for(engine, "checkout")
    def _check(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if autocommit and not dbapi_connection.autocommit:  # an isolation level set through SQLAlchemy
            dbapi_connection.autocommit = True
        info = record.info
        fresh = info.pop(_FRESH, False)
        if not ping_forced() and (
            not pre_ping or fresh or not needs_ping(info.get(_USED, 0.0), info.get(_PROBE), PRE_PING_WINDOW)
        ):
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dbapi_error as error:
            if dialect.is_disconnect(error, dbapi_connection, None):
                # SQLAlchemy invalidates this connection and the older ones, and reconnects.
                raise sa_exc.InvalidatePoolError("the pooled connection failed its checkout ping") from error
            raise


def bounded_connect(deadline: float, *, is_async: bool) -> Any:
    """``connect`` of core's psycopg class whose waits give up after ``deadline`` seconds."""
    from structum_lab.plugins.database.kit_psycopg import bounded_connection_class  # imports psycopg

    return bounded_connection_class(deadline, is_async=is_async).connect


def _install_deadline(engine: sa.Engine, deadline: float) -> None:
    """Sync psycopg: connections of core's bounded subclass. asyncpg: a ``command_timeout``
    that fired discards the connection (asyncpg would keep it)."""
    dialect = engine.dialect
    if dialect.driver == "psycopg" and not dialect.is_async:
        connect = bounded_connect(deadline, is_async=False)

        @event.listens_for(engine, "do_connect")
        def _bounded_connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
            return connect(*cargs, **cparams)

    elif dialect.driver == "asyncpg":

        @event.listens_for(engine, "handle_error")
        def _command_timed_out(context: sa.engine.ExceptionContext) -> BaseException | None:
            # asyncpg keeps a connection whose state is unknown (a cancel request is on its way).
            if not isinstance(context.original_exception, TimeoutError):
                return None
            context.is_disconnect = True
            # Closed at once: SQLAlchemy's graceful close would wait up to 2 s more for a silent server.
            sa_conn = context.connection
            driver = sa_conn.connection.driver_connection if sa_conn is not None and not sa_conn.invalidated else None
            if driver is not None:
                driver.terminate()
            timed_out = TimeoutError(kit.deadline_message(deadline, deadline))
            return sa_exc.OperationalError(
                context.statement, context.parameters, timed_out, connection_invalidated=True
            )
