"""Checkout liveness for the engine's pool, as the psycopg backend does it (HikariCP's idea).

Core's rule (``kit.needs_ping``): a connection used within the last
:data:`PRE_PING_WINDOW` seconds is handed out after a zero-round-trip test (core's
``readable_probe``: an idle connection's socket receives nothing unless the server closed
it); an older one, or one whose socket is readable, gets the dialect's own ping. A failed
ping raises SQLAlchemy's ``InvalidatePoolError`` from the pool's ``checkout`` event, so
SQLAlchemy does what its ``pool_pre_ping`` does on a disconnect: it discards that
connection, marks every older pooled one for replacement and reconnects, within the same
checkout; the caller sees no error.

This replaces SQLAlchemy's ``pool_pre_ping`` (a round trip on every checkout) where the
driver's socket is reachable (core's ``SOCKET_DRIVERS``: psycopg, sync and asyncio, and
PyMySQL). Other drivers keep SQLAlchemy's; SQLite, a local file, is never pinged.
``pool_pre_ping=False``: no ping at checkout at all (a health check still makes its round trip).
"""

from __future__ import annotations

from time import monotonic
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc

from structum_lab.plugins.database.kit import PRE_PING_WINDOW, driver_socket, needs_ping, ping_forced, readable_probe

__all__ = ["PRE_PING_WINDOW", "install_liveness"]

_USED: Final = "structum_used"
_PROBE: Final = "structum_probe"


def install_liveness(engine: sa.Engine, *, pre_ping: bool, autocommit: bool) -> None:
    """Stamp connections with their last use and socket probe; check them at checkout when
    ``pre_ping``; keep the DB-API connections in autocommit mode when ``autocommit`` (an
    isolation level set through SQLAlchemy turns it off when the connection is returned)."""
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

    if not pre_ping and not autocommit:
        return

    @event.listens_for(engine, "checkout")
    def _check(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if autocommit and not dbapi_connection.autocommit:
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
