"""What the backend hooks into a SQLAlchemy engine's events: the count of open connections,
SQLite's transactions, MySQL's statement timeout, checkout liveness and driver deadlines.

docs/backends/sqlalchemy.md gives the rules ("Round trips", "Options", "SQLite
transactions"); core owns them (``kit.needs_ping``, ``kit.deadline_connect_args``).
"""

from __future__ import annotations

from time import monotonic
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc

from structum_lab.plugins.database import kit
from structum_lab.plugins.database.kit import PRE_PING_WINDOW, driver_socket, needs_ping, ping_forced, readable_probe

__all__ = ["PRE_PING_WINDOW", "count_connections", "deadline_connect_args", "install_listeners"]

_USED: Final = "structum_used"
_PROBE: Final = "structum_probe"


def count_connections(engine: sa.Engine) -> kit.OpenConnections:
    """Core's count of open connections, on the pool's events (before ``_bounded_connect``'s
    ``do_connect``, which opens the connection itself: a connection is timed from here)."""
    counter = kit.OpenConnections()
    event.listen(engine, "do_connect", counter.connecting)
    event.listen(engine, "connect", counter.opened)
    event.listen(engine, "close", counter.gone)
    event.listen(engine, "detach", counter.gone)  # still open, but no longer the pool's
    return counter


def install_listeners(
    engine: sa.Engine, *, statement_timeout: float | None, deadline: float | None, pre_ping: bool, autocommit: bool
) -> None:
    """The dialect's own listeners; liveness where the driver's socket is reachable or the
    DB-API connections stay in autocommit mode (``autocommit``); the driver's deadline."""
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

    if pre_ping or autocommit:
        _install_liveness(engine, pre_ping=pre_ping, autocommit=autocommit)
    if deadline is not None:
        _install_deadline(engine, deadline)


def _install_liveness(engine: sa.Engine, *, pre_ping: bool, autocommit: bool) -> None:
    """Connections stamped with their last use and socket probe, pinged at checkout only when
    core's rule says so; a failed ping raises ``InvalidatePoolError``, so SQLAlchemy does what
    its ``pool_pre_ping`` does on a disconnect, within the same checkout."""
    dialect = engine.dialect
    dbapi_error: Any = dialect.loaded_dbapi.Error

    @event.listens_for(engine, "connect")
    def _stamp(dbapi_connection: Any, record: Any) -> None:
        if autocommit:
            dbapi_connection.autocommit = True
        info = record.info
        info[_USED] = monotonic()
        fd = driver_socket(record.driver_connection)
        if fd is not None:
            info[_PROBE] = readable_probe(fd)

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[_USED] = monotonic()

    @event.listens_for(engine, "checkout")
    def _check(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if autocommit and not dbapi_connection.autocommit:  # an isolation level set through SQLAlchemy
            dbapi_connection.autocommit = True
        if not pre_ping:
            return
        info = record.info
        if not ping_forced() and not needs_ping(info.get(_USED, 0.0), info.get(_PROBE), PRE_PING_WINDOW):
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dbapi_error as error:
            if dialect.is_disconnect(error, dbapi_connection, None):
                # SQLAlchemy invalidates this connection and the older ones, and reconnects.
                raise sa_exc.InvalidatePoolError("the pooled connection failed its checkout ping") from error
            raise


def _psycopg(deadline: float, *, is_async: bool) -> Any:
    from structum_lab.plugins.database.kit_psycopg import bounded_connection_class  # imports psycopg

    return bounded_connection_class(deadline, is_async=is_async)


def deadline_connect_args(driver: str, deadline: float | None, *, is_async: bool) -> dict[str, Any]:
    """Driver arguments that put ``deadline`` on every round trip (merged under the user's)."""
    if deadline is not None and is_async and driver.startswith("psycopg"):
        # SQLAlchemy's psycopg dialect takes the function that opens a driver connection.
        return {"async_creator_fn": _psycopg(deadline, is_async=True).connect}
    return kit.deadline_connect_args(driver, deadline)


def _install_deadline(engine: sa.Engine, deadline: float) -> None:
    """Sync psycopg: connections of core's bounded subclass. asyncpg: a ``command_timeout``
    that fired discards the connection (asyncpg would keep it)."""
    dialect = engine.dialect
    if dialect.driver == "psycopg" and not dialect.is_async:
        connection_class = _psycopg(deadline, is_async=False)

        @event.listens_for(engine, "do_connect")
        def _bounded_connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
            return connection_class.connect(*cargs, **cparams)

    elif dialect.driver == "asyncpg":

        @event.listens_for(engine, "handle_error")
        def _command_timed_out(context: sa.engine.ExceptionContext) -> BaseException | None:
            # asyncpg raises a bare TimeoutError and keeps the connection, whose state is then
            # unknown (a cancel request is on its way): SQLAlchemy must invalidate it, and the
            # caller gets a DBAPIError the backend turns into ConnectionLostError.
            if not isinstance(context.original_exception, TimeoutError):
                return None
            context.is_disconnect = True
            # Closed at once: SQLAlchemy's invalidation would first try a graceful close, which
            # waits up to 2 s more for a server that is not answering.
            sa_conn = context.connection
            driver = sa_conn.connection.driver_connection if sa_conn is not None and not sa_conn.invalidated else None
            if driver is not None:
                driver.terminate()
            timed_out = TimeoutError(kit.deadline_message(deadline, deadline))
            return sa_exc.OperationalError(
                context.statement, context.parameters, timed_out, connection_invalidated=True
            )
