"""Client-side deadlines for the drivers under the engine, through SQLAlchemy.

The rules are core's ``_deadline.py``, the drivers' own arguments ``kit.deadline_connect_args``.

* psycopg 3, sync and async: the engine opens its connections through a psycopg
  subclass whose waits for the server give up after ``statement_deadline`` seconds
  (core's ``kit_psycopg``), close the connection and raise ``OperationalError``, which
  SQLAlchemy sees as a disconnect (invalidated, never reused).
* asyncpg: its own client-side ``command_timeout``; a connection whose command timed out
  is invalidated (asyncpg would keep it).
* PyMySQL: ``read_timeout``, a socket timeout after which PyMySQL closes the connection.
* SQLite is local; aiomysql has no read timeout: no client-side deadline there.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc

from structum_lab.plugins.database import kit

__all__ = ["deadline_connect_args", "install_deadline"]


def _psycopg(deadline: float, *, is_async: bool) -> Any:
    from structum_lab.plugins.database.kit_psycopg import bounded_connection_class  # imports psycopg

    return bounded_connection_class(deadline, is_async=is_async)


def deadline_connect_args(driver: str, deadline: float | None, *, is_async: bool) -> dict[str, Any]:
    """Driver arguments that put ``deadline`` on every round trip (merged under the user's)."""
    if deadline is not None and is_async and driver.startswith("psycopg"):
        # SQLAlchemy's psycopg dialect takes the function that opens a driver connection.
        return {"async_creator_fn": _psycopg(deadline, is_async=True).connect}
    return kit.deadline_connect_args(driver, deadline)


def install_deadline(engine: sa.Engine, deadline: float | None) -> None:
    """Sync psycopg: open the engine's connections with the bounded subclass.
    asyncpg: a ``command_timeout`` that fired discards the connection."""
    if deadline is None:
        return
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
