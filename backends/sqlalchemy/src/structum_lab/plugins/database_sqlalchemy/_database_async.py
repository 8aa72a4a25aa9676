"""The SQLAlchemy backend's database and connection classes: core's engine on a SQLAlchemy
engine, with SQLAlchemy's escape hatches and ORM sessions."""

from __future__ import annotations

import importlib.util
from asyncio import shield
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Unpack, cast

from sqlalchemy.ext.asyncio import (  # sync: from sqlalchemy import Connection, Engine
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
)

# sync-only: from sqlalchemy.orm import Session
from structum_lab.plugins.database import ConfigurationError, DatabaseURL, ReplicaOptions
from structum_lab.plugins.database.kit import ASYNC, AsyncEngineConnection, AsyncEngineDatabase

from ._driver_async import AsyncSQLAlchemyDriver, driver_for
from ._engine import build_engine
from ._plugin import OPTIONS

if TYPE_CHECKING:
    from ._psycopg_async import AsyncDeferredBeginDriver

__all__ = ["AsyncSQLAlchemyConnection", "AsyncSQLAlchemyDatabase"]


class AsyncSQLAlchemyConnection(AsyncEngineConnection[AsyncConnection]):
    """A pooled SQLAlchemy connection inside a transaction."""

    __slots__ = ()

    @property
    def sqlalchemy_connection(self) -> AsyncConnection:
        """The underlying SQLAlchemy connection, inside the same transaction (for Core constructs)."""
        return self._lend()

    def session(self) -> AsyncSession:
        """An ORM session joined to this connection's transaction.

        ``session.commit()`` inside only releases a savepoint; the enclosing
        ``transaction()`` decides. Close it (``with conn.session() as s:``) when done.
        """
        return AsyncSession(bind=self._lend(), join_transaction_mode="create_savepoint")

    def _lend(self) -> AsyncConnection:
        """The connection, inside the transaction even if its BEGIN has not gone out yet
        (postgresql+psycopg sends it with the next statement, whoever sends it)."""
        raw = self._live()
        pending = self._pending
        if pending is not None:
            cast("AsyncDeferredBeginDriver", self._engine.driver).hold_begin(raw, pending)
            self._pending = None  # begun, as far as the engine is concerned: it commits at the end
        return raw


class AsyncSQLAlchemyDatabase(AsyncEngineDatabase[AsyncSQLAlchemyConnection]):
    """A database on a SQLAlchemy engine: SQLite, PostgreSQL, MySQL/MariaDB and more.

    ``url`` is any SQLAlchemy URL; a bare ``postgresql://`` uses psycopg 3 and a bare
    ``mysql://`` PyMySQL (the asyncio class: psycopg 3 in async mode, aiomysql, aiosqlite
    for ``sqlite://``). The pool options are SQLAlchemy's, with the same names.
    ``pgbouncer=True`` turns off what PgBouncer's transaction mode breaks; ``replicas=[...]``
    returns a database with replicas over this class (docs/scale-out.md).
    """

    backend_name = "sqlalchemy"
    backend_options = OPTIONS

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
        strict_params: bool = False,
        observers: Sequence[str] | None = None,
        observer_options: Mapping[str, Mapping[str, Any]] | None = None,
        engine_options: Mapping[str, Any] | None = None,
        prepare_threshold: int | str | None = 5,
        pgbouncer: bool = False,
        **replication: Unpack[ReplicaOptions],
    ) -> None:
        if ASYNC:  # ASYNC  # noqa: SIM102 - the test alone goes into the sync class
            if importlib.util.find_spec("greenlet") is None:
                raise ConfigurationError(
                    "AsyncSQLAlchemyDatabase needs greenlet, which SQLAlchemy 2.1 no longer installs: "
                    'pip install greenlet (or the asyncio extra: pip install "./core[asyncio]" ./backends/sqlalchemy)'
                )
        parsed, options = self._setup(url, locals())
        self._engine_parts = parts = build_engine(parsed, options, is_async=self.is_async)
        self._attach(driver_for(parts), AsyncSQLAlchemyConnection)

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy engine (for Alembic, ``MetaData.create_all`` and Core)."""
        return cast("AsyncEngine", self._engine_parts.engine)

    @asynccontextmanager
    async def get_session(self, **session_options: Any) -> AsyncIterator[AsyncSession]:
        """An ORM session, closed when the block ends and rolled back if it raises.

        Inside an open ``transaction()`` the session joins it (commits become savepoints).
        """
        engine = self._engine
        current = engine.scope.current()
        if current is not None:
            async with cast("AsyncSQLAlchemyConnection", current).session() as joined:
                yield joined
            return
        raw = await engine.checkout()
        try:
            cast("AsyncSQLAlchemyDriver", engine.driver).disown(raw)  # the session's transactions send BEGIN
            async with AsyncSession(bind=raw, **session_options) as session:
                try:
                    yield session
                except BaseException:
                    await session.rollback()
                    raise
        finally:
            await shield(engine.release(raw))
