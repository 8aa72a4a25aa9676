"""Checkout liveness for the engine's pool, as the psycopg backend does it (HikariCP's idea).

A connection used within the last :data:`PRE_PING_WINDOW` seconds is handed out after a
zero-round-trip test (core's ``readable_probe``: an idle connection's socket receives
nothing unless the server closed it); an older one, or one whose socket is readable, gets
the dialect's own ping. A failed ping raises SQLAlchemy's ``InvalidatePoolError`` from the
pool's ``checkout`` event, so SQLAlchemy does what its ``pool_pre_ping`` does on a
disconnect: it discards that connection, marks every older pooled one for replacement and
reconnects, within the same checkout; the caller sees no error.

This replaces SQLAlchemy's ``pool_pre_ping`` (a round trip on every checkout) where the
driver's socket is reachable: psycopg (sync and asyncio) and PyMySQL. Other drivers keep
SQLAlchemy's; SQLite, a local file, is never pinged. ``pool_pre_ping=False``: no ping at
checkout at all (a health check still makes its round trip).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from time import monotonic
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc

from structum_lab.plugins.database.kit import readable_probe

__all__ = ["PRE_PING_WINDOW", "forced_ping", "install_liveness", "probes_socket"]

#: Seconds after its last use during which a connection is trusted without a ping.
PRE_PING_WINDOW: Final = 0.5
_USED: Final = "structum_used"
_PROBE: Final = "structum_probe"
_PROBED_DRIVERS: Final = frozenset({"psycopg", "pymysql"})
_FORCE: ContextVar[bool] = ContextVar("structum_force_ping", default=False)


def probes_socket(dialect: str, driver: str) -> bool:
    """Whether checkouts on this driver are checked here (else SQLAlchemy's pre-ping, if any)."""
    return dialect != "sqlite" and driver in _PROBED_DRIVERS


@contextmanager
def forced_ping() -> Iterator[None]:
    """Checkouts inside ping whatever the window says (a health check needs the round trip)."""
    token = _FORCE.set(True)
    try:
        yield
    finally:
        _FORCE.reset(token)


def _socket(driver_connection: Any) -> int | None:
    pgconn = getattr(driver_connection, "pgconn", None)  # psycopg
    if pgconn is not None:
        return int(pgconn.socket)
    sock = getattr(driver_connection, "_sock", None)  # PyMySQL
    return None if sock is None else int(sock.fileno())


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
        fd = _socket(record.driver_connection)
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
        if not _FORCE.get() and monotonic() - info.get(_USED, 0.0) <= PRE_PING_WINDOW:
            probe = info.get(_PROBE)
            if probe is not None and not probe(0):
                return
        try:
            dialect.do_ping(dbapi_connection)
        except dbapi_error as error:
            if dialect.is_disconnect(error, dbapi_connection, None):
                # SQLAlchemy invalidates this connection and the older ones, and reconnects.
                raise sa_exc.InvalidatePoolError("the pooled connection failed its checkout ping") from error
            raise
