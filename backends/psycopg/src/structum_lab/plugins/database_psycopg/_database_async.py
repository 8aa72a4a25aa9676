"""The psycopg backend's database, connection and result classes: core's engine on psycopg.

The constructor turns the options into pool settings and a driver; everything else is
core's engine. The connection and result classes add psycopg's escape hatches and COPY.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Unpack

from psycopg import AsyncCursor
from psycopg_pool import AsyncConnectionPool

from structum_lab.plugins.database import DatabaseURL, ReplicaOptions
from structum_lab.plugins.database.kit import AsyncEngineConnection, AsyncEngineDatabase, AsyncEngineResult, log
from structum_lab.plugins.database.kit_psycopg import row_factory

from ._driver_async import AsyncPsycopgDriver, AsyncPsycopgRows, AsyncRaw
from ._plugin import OPTIONS
from ._settings import PoolSettings, resolve_settings

__all__ = ["AsyncPostgresConnection", "AsyncPostgresDatabase", "AsyncPostgresResult"]


class AsyncPostgresResult(AsyncEngineResult):
    """Rows of one statement; they arrived whole with it and stay readable after the transaction."""

    __slots__ = ()
    _rows: AsyncPsycopgRows

    @property
    def cursor(self) -> AsyncCursor[Any]:
        """The psycopg cursor that holds the rows (escape hatch)."""
        return self._rows.cursor


class AsyncPostgresConnection(AsyncEngineConnection[AsyncRaw]):
    """A pooled psycopg connection inside a transaction."""

    __slots__ = ()
    result_class = AsyncPostgresResult

    @property
    def psycopg_connection(self) -> AsyncRaw:
        """The underlying psycopg connection, inside the same transaction (escape hatch).

        BEGIN goes with a transaction's first statement: the sync class sends it here if no
        statement has run yet; on asyncio, run one or ``await conn.start()`` first."""
        raw = self._live()
        self._sync_started()
        return raw


class AsyncPostgresDatabase(AsyncEngineDatabase[AsyncPostgresConnection]):
    """PostgreSQL through psycopg 3 and ``psycopg_pool`` (spec section 5).

    ``url`` is a ``postgresql://`` / ``postgres://`` URL or a libpq ``key=value`` string.
    The common options keep their meaning (``pool_size``, ``max_overflow``,
    ``pool_timeout``, ``pool_recycle``, ``pool_pre_ping`` ...); psycopg_pool's own
    ``min_size``, ``max_size``, ``timeout`` and ``max_lifetime`` win when given.
    ``prepare_threshold=None`` disables prepared statements; ``pgbouncer=True`` does that and
    refuses session state (PgBouncer transaction mode). ``replicas=[...]`` returns a database
    with replicas over this class (docs/scale-out.md).
    The pool starts on first use (``await db.open()`` or ``async with db:`` to start it
    earlier) and belongs to that event loop.
    """

    backend_name = "psycopg"
    backend_options = OPTIONS

    def __init__(
        self,
        url: str | DatabaseURL,
        *,
        pool_size: int = 5,
        min_size: int | None = None,
        max_size: int | None = None,
        timeout: float | None = None,
        max_overflow: int = 10,
        pool_timeout: float = 30.0,
        pool_recycle: float | None = None,
        max_lifetime: float | None = None,
        max_idle: float = 600.0,
        reconnect_timeout: float = 300.0,
        pool_pre_ping: bool = True,
        pre_ping_window: float = 0.5,
        prepare_threshold: int | str | None = 5,
        connect_args: Mapping[str, Any] | None = None,
        connect_timeout: float | None = 10.0,
        statement_timeout: float | None = None,
        statement_deadline: float | None = None,
        application_name: str | None = None,
        isolation_level: str | None = None,
        health_check_timeout: float = 5.0,
        health_degraded_ms: float = 1000.0,
        name: str | None = None,
        strict_params: bool = False,
        echo: bool = False,
        observers: Sequence[str] | None = None,
        observer_options: Mapping[str, Mapping[str, Any]] | None = None,
        pool_use_lifo: bool = False,
        pgbouncer: bool = False,
        **replication: Unpack[ReplicaOptions],
    ) -> None:
        parsed, options = self._setup(url, locals())
        if options.pop("pool_use_lifo"):
            log.info(
                "database %r: pool_use_lifo is a SQLAlchemy pool option; psycopg_pool reuses connections in "
                "FIFO order and ignores it",
                self._name,
            )
        settings = resolve_settings(parsed, options, row_factory=row_factory)
        self._driver = AsyncPsycopgDriver(settings, name=self._name, secrets=self._secrets)
        self._attach(self._driver, AsyncPostgresConnection)

    @property
    def settings(self) -> PoolSettings:
        """The resolved pool settings (sizes, timeouts, psycopg connect arguments without the URL)."""
        return self._driver.settings

    @property
    def pool(self) -> AsyncConnectionPool[AsyncRaw]:
        """The ``psycopg_pool`` pool (escape hatch; it may be replaced after an outage)."""
        return self._driver.pool
