"""SQLAlchemy's psycopg driver (``postgresql+psycopg``): psycopg itself, under SQLAlchemy.

:class:`AsyncSQLAlchemyPsycopgDriver` has the verbs psycopg answers (core's
``AsyncPsycopgVerbs``) and LISTEN. :class:`AsyncDeferredBeginDriver` sends BEGIN with a
transaction's first statement: the DB-API connections are in autocommit mode with core's
deferred BEGIN (``kit_psycopg.install_deferred_begin``), which sends a pending BEGIN with
the next statement whoever sends it (the engine, SQLAlchemy Core, an ORM session).
docs/backends/sqlalchemy.md, "Round trips".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import psycopg
import sqlalchemy as sa
from psycopg import pq
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection  # sync: from sqlalchemy import Connection

from structum_lab.plugins.database import kit_psycopg
from structum_lab.plugins.database.kit import AsyncCursorRows, AsyncRows, Bound
from structum_lab.plugins.database.kit_psycopg import AsyncPsycopgVerbs

from ._driver_async import AsyncSQLAlchemyDriver
from ._engine import EngineParts, sync_connection

__all__ = ["AsyncDeferredBeginDriver", "AsyncSQLAlchemyPsycopgDriver"]

_OWNED: Final = "structum_owned"  # connection info: lent by the engine, which writes its BEGINs
_IDLE: Final = pq.TransactionStatus.IDLE


def _driver(raw: AsyncConnection) -> Any:
    """The psycopg connection under SQLAlchemy's."""
    return sync_connection(raw).connection.driver_connection


class AsyncSQLAlchemyPsycopgDriver(AsyncPsycopgVerbs[AsyncConnection], AsyncSQLAlchemyDriver):
    """PostgreSQL through SQLAlchemy's psycopg driver: psycopg tells the transaction's state,
    and copies and listens."""

    #: COPY and LISTEN use the psycopg connection directly: its errors, too.
    errors = (*AsyncSQLAlchemyDriver.errors, psycopg.Error)

    def __init__(self, parts: EngineParts, **features: Any) -> None:
        super().__init__(parts, aborted_state=True, copy=True, listen_notify=True, **features)

    def _broken(self, raw: AsyncConnection) -> bool:
        """Also when it died under psycopg directly (COPY, a batch), which SQLAlchemy has not seen."""
        return raw.invalidated or bool(_driver(raw).broken)

    def _pg(self, raw: AsyncConnection) -> Any:
        # stream() gets psycopg's server-side cursor, not SQLAlchemy's stream_results (whose
        # Row objects would be built and then copied).
        return None if raw.invalidated else _driver(raw)

    async def notifier(self) -> kit_psycopg.AsyncPsycopgNotifier:
        engine = self.parts.sa_engine
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        params = {**cparams, **self.parts.connect_args, "autocommit": True}
        params.pop("async_creator_fn", None)
        return kit_psycopg.AsyncPsycopgNotifier(await psycopg.AsyncConnection.connect(*cargs, **params))

    def unwrap_error(self, exc: BaseException, raw: AsyncConnection | None) -> tuple[BaseException, bool]:
        if raw is not None and isinstance(exc, psycopg.Error):
            return exc, self._broken(raw)  # psycopg's own error (COPY, a batch)
        return super().unwrap_error(exc, raw)


class AsyncDeferredBeginDriver(AsyncSQLAlchemyPsycopgDriver):
    """postgresql+psycopg with BEGIN sent with each transaction's first statement (see above)."""

    def __init__(self, parts: EngineParts) -> None:
        super().__init__(parts, deferred_begin=True, pipelining=True)
        _install(parts.sa_engine, self.begin_sql(parts.isolation, False))

    async def acquire(self, *, ping: bool) -> AsyncConnection:
        raw = await super().acquire(ping=ping)
        # The engine's: SQLAlchemy's autobegin sets no BEGIN (the engine's rides with a statement).
        sync_connection(raw).info[_OWNED] = True
        return raw

    def disown(self, raw: AsyncConnection) -> None:
        """For SQLAlchemy to use on its own (an ORM session): its transactions set their BEGIN."""
        sync_connection(raw).info.pop(_OWNED, None)

    def hold_begin(self, raw: AsyncConnection, begin: str) -> None:
        """SQLAlchemy is handed the connection before the transaction's first statement: its own
        transaction begins now (bookkeeping only: sessions then join by a savepoint), and
        ``begin`` goes out with the next statement on the connection."""
        conn = sync_connection(raw)
        if not conn.in_transaction():
            conn.begin()  # no I/O: the dialect's do_begin is a no-op, and the begin event skips the engine's
        kit_psycopg.defer_begin_async(_driver(raw), begin)

    async def _pg_io(self, raw: AsyncConnection) -> Any:
        pg = await super()._pg_io(raw)
        await kit_psycopg.send_begin_async(pg)  # psycopg directly (COPY, a stream): a pending BEGIN goes first
        return pg

    async def execute_begun(self, raw: AsyncConnection, begin: str, sql: str, params: Bound) -> AsyncCursorRows:
        kit_psycopg.defer_begin_async(_driver(raw), begin)
        return await self.execute(raw, sql, params)

    async def execute_batch(
        self, raw: AsyncConnection, begin: str | None, statements: Sequence[tuple[str, Bound]], end: str | None
    ) -> Sequence[AsyncRows]:
        pending = kit_psycopg.take_begin_async(_driver(raw))  # set by hold_begin
        results = await super().execute_batch(raw, begin or pending, statements, end)
        if end == "COMMIT" and raw.in_transaction():
            await raw.commit()  # the server has committed: SQLAlchemy's transaction ends too, without a round trip
        return results

    async def commit(self, raw: AsyncConnection) -> None:
        if raw.in_transaction():
            await raw.commit()  # COMMIT when the server is in a transaction
        if not raw.invalidated:
            driver = _driver(raw)
            if driver.pgconn.transaction_status != _IDLE:  # begun by a batch, which SQLAlchemy did not see
                await driver.commit()

    async def autocommit(self, raw: AsyncConnection, enabled: bool) -> None:
        return None  # the connections are in autocommit mode already


def _install(engine: sa.Engine, default_begin: str) -> None:
    """Deferred BEGIN on every connection, and a BEGIN for SQLAlchemy's own transactions."""

    @event.listens_for(engine, "connect")
    def _deferring(_dbapi_connection: Any, record: Any) -> None:
        kit_psycopg.install_deferred_begin_async(record.driver_connection)

    @event.listens_for(engine, "begin")
    def _sqlalchemy_begins(conn: sa.Connection) -> None:
        if _OWNED in conn.info or conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            return  # the engine's own: its BEGIN goes with its first statement (or there is none)
        driver = conn.connection.driver_connection
        if driver is not None and driver.autocommit and driver.pgconn.transaction_status == _IDLE:
            kit_psycopg.defer_begin_async(driver, default_begin)

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _ended(conn: sa.Connection) -> None:
        driver = None if conn.invalidated else conn.connection.driver_connection
        if driver is not None:
            kit_psycopg.take_begin_async(driver)  # a transaction that ran nothing: its BEGIN never goes out

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info.pop(_OWNED, None)
            if record.driver_connection is not None:
                kit_psycopg.take_begin_async(record.driver_connection)
