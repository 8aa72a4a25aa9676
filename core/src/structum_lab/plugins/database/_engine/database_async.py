"""The database class every backend's public class is built on.

``AsyncPostgresDatabase``, ``AsyncSQLAlchemyDatabase`` (and, generated, their sync
twins) subclass :class:`AsyncEngineDatabase`: their constructor turns the options into
a driver and calls :meth:`~AsyncEngineDatabase._setup` and
:meth:`~AsyncEngineDatabase._attach`; everything users call is here, once.
"""

from __future__ import annotations

import time
from asyncio import shield
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, Self, cast

from structum_lab.config import ConfigProvider

from .._config.connect import class_options
from .._config.manager import get_plugin_manager
from .._contract.driver_async import AsyncDriver, RawT
from .._contract.errors import NotSupportedError
from .._contract.features import Features
from .._contract.health import HealthCheckResult
from .._contract.options import COMMON_OPTIONS, REPLICA_OPTIONS, Option, validate_options
from .._contract.protocols import AsyncResult, IsolationLevel, Params, PoolInfo
from .._contract.url import DatabaseURL
from .block_async import AsyncTransactionBlock
from .connection_async import ConnT
from .core_async import AsyncEngine
from .isolation import normalize_isolation
from .leaks import ensure_reaper
from .listener_async import AsyncListener
from .observe import resolve_observers
from .pgbouncer import SessionStateGuard, check_pgbouncer_options
from .replicas_async import AsyncReplicatedDatabase
from .secrets import CORE_LOGGERS, Secrets, collect_secrets, protect_logs

__all__ = ["AsyncEngineDatabase"]

#: What ``locals()`` of a constructor holds besides its options.
_NOT_OPTIONS = frozenset({"self", "url", "__class__", "replication"})


class AsyncEngineDatabase(Generic[ConnT]):
    """A pooled database: transactions, one-shot statements, health, pool figures, shutdown."""

    #: Registry name of the backend that owns the subclass.
    backend_name: ClassVar[str] = ""
    #: True for the asyncio classes.
    is_async: ClassVar[bool] = True  # sync: is_async: ClassVar[bool] = False

    #: The options the class accepts beyond ``COMMON_OPTIONS`` (its backend plugin's table).
    backend_options: ClassVar[Mapping[str, Option]] = {}

    _engine: AsyncEngine[Any]
    _factory: type[ConnT]
    _url: DatabaseURL
    _name: str
    _secrets: Secrets
    _echo: bool
    _strict_params: bool
    _isolation: IsolationLevel | None
    _observers: list[object]
    _pgbouncer: bool = False
    health_check_timeout: float
    health_degraded_ms: float

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        if kwargs.get("replicas"):
            # Reads on replicas, writes here: a router over databases of this class (docs/scale-out.md).
            return cast("Self", AsyncReplicatedDatabase.of_class(cls, args, kwargs))
        return super().__new__(cls)

    def _setup(self, url: str | DatabaseURL, given: Mapping[str, object]) -> tuple[DatabaseURL, dict[str, Any]]:
        """Check the constructor's arguments (``locals()``) as ``connect()`` and ``from_config()``
        check theirs, with the same messages; set up the identity and the secrets. Returns the
        URL and the checked options the backend builds its driver from."""
        values = {key: value for key, value in given.items() if key not in _NOT_OPTIONS}
        values.update(cast("Mapping[str, object]", given.get("replication") or {}))  # **replication: ReplicaOptions
        accepted = {**COMMON_OPTIONS, **self.backend_options}
        options = validate_options(values, accepted, where=f"{type(self).__name__}()")
        parsed = DatabaseURL.parse(url)
        self._url = parsed
        self._name = options.pop("name", None) or parsed.database or parsed.dialect
        self._secrets = Secrets([*parsed.secrets(), *collect_secrets(options.get("connect_args"))])
        protect_logs(self._secrets, CORE_LOGGERS)  # the driver adds its own loggers
        self.health_check_timeout = options.pop("health_check_timeout", 5.0)
        self.health_degraded_ms = options.pop("health_degraded_ms", 1000.0)
        self._echo = bool(options.get("echo"))
        self._strict_params = bool(options.pop("strict_params", False))
        self._isolation = normalize_isolation(options.get("isolation_level"))
        self._observers = resolve_observers(
            get_plugin_manager(), options.pop("observers", None), options.pop("observer_options", None)
        )
        for key in REPLICA_OPTIONS:  # without replicas (or else __new__ returned a router) they mean nothing
            options.pop(key, None)
        self._pgbouncer = bool(options.get("pgbouncer"))
        if self._pgbouncer:
            check_pgbouncer_options(options)
        ensure_reaper()  # returns connections that are garbage-collected without close()
        return parsed, options

    def _attach(self, driver: AsyncDriver[RawT], factory: type[ConnT]) -> None:
        """Put the engine on ``driver``; ``factory`` is the backend's connection class."""
        self._factory = factory
        self._engine = AsyncEngine(
            self,
            driver,
            name=self._name,
            backend=self.backend_name,
            secrets=self._secrets,
            echo=self._echo,
            strict_params=self._strict_params,
            isolation=self._isolation,
            health_check_timeout=self.health_check_timeout,
            health_degraded_ms=self.health_degraded_ms,
            observers=self._observers,
        )
        if self._pgbouncer:  # session state is refused when a SQL string is first translated
            self._engine.translator = SessionStateGuard.around(self._engine.translator)

    # -- identity ------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether ``shutdown()`` was called (the database is then unusable)."""
        return self._engine.closed

    @property
    def name(self) -> str:
        """The name used in logs, health output and ``get_database(name)``."""
        return self._name

    @property
    def backend(self) -> str:
        return self.backend_name

    @property
    def url(self) -> str:
        """The URL with every secret masked."""
        return self._url.render()

    @property
    def features(self) -> Features:
        """What this backend can do on this database (COPY, streaming, savepoints, ...)."""
        return self._engine.features

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self._name!r} url={self._url.render()!r}>"

    @classmethod
    def from_config(
        cls, namespace: str = "database", *, provider: ConfigProvider | None = None, **overrides: Any
    ) -> Self:
        """Build from the config namespace (``config/app/<namespace>.toml``, secrets, env).

        ``overrides`` win over the configuration.
        """
        options = class_options(
            cls.backend_name, cls.__name__, namespace, overrides, is_async=cls.is_async, provider=provider
        )
        return cls(**options)

    # -- transactions ------------------------------------------------------------------

    def transaction(
        self, *, isolation: IsolationLevel | None = None, readonly: bool = False, pipeline: bool = False
    ) -> AsyncTransactionBlock[ConnT]:
        """``async with db.transaction() as conn:`` - commit on success, rollback on any exception.

        Inside an open transaction of the same thread or task it becomes a savepoint of that
        one. ``isolation`` (``"serializable"``, ...) and ``readonly`` apply to this
        transaction only. ``pipeline=True`` queues the statements and sends them together
        when a result is read or the block ends (docs/transactions.md: errors come at the
        latest then); a nested block follows its outer transaction, and a backend without
        ``features.pipelining`` runs the block statement by statement.
        """
        return AsyncTransactionBlock(
            self._engine, self._factory, normalize_isolation(isolation) if isolation else None, readonly, pipeline
        )

    def in_transaction(self) -> bool:
        """Whether the calling thread (or task) has a transaction open on this database."""
        return self._engine.scope.current() is not None

    async def get_connection(self, *, readonly: bool = False) -> ConnT:
        """A connection in a transaction you end yourself: ``commit()``/``rollback()``, then ``close()``.

        Also a context manager (commits on success, rolls back on error, closes). ``readonly``
        makes its first transaction read-only (as ``transaction(readonly=True)``).
        """
        ensure_reaper()  # returns the connection if it is garbage-collected open
        engine = self._engine
        raw = await engine.checkout()
        if engine.features.deferred_begin:
            return self._factory(engine, raw, engine.driver.begin_sql(engine.isolation, readonly))
        await engine.begin(raw, None, readonly)
        return self._factory(engine, raw)

    async def execute(self, sql: str, params: Params = None) -> AsyncResult:
        """Run one statement on its own; the rows come with the result.

        Where the driver has autocommit (PostgreSQL) it runs outside a transaction: one round
        trip instead of three (BEGIN, the statement, COMMIT). Elsewhere it is a transaction of
        its own. Inside an open ``transaction()`` of the caller it runs in that transaction.
        """
        engine = self._engine
        current = engine.scope.current()
        if current is not None:
            joined = await current.execute(sql, params)
            return joined if engine.features.detached_results else await joined.buffered()
        driver = engine.driver
        query, bound = engine.translator(sql, params)
        raw = await engine.checkout()
        timed = engine.observers.statement
        started = time.perf_counter() if timed else 0.0
        try:
            try:
                if engine.features.autocommit:
                    await driver.autocommit(raw, True)
                    try:
                        rows = await driver.execute(raw, query, bound)
                    finally:
                        await driver.autocommit(raw, False)
                else:
                    await driver.begin(raw, None, False)
                    rows = await driver.execute(raw, query, bound)
            except engine.errors as exc:
                error = engine.translate(exc, raw, sql=sql, params=params)
                if timed:
                    engine.observers.emit_statement(
                        sql, time.perf_counter() - started, error=error, params=params, in_transaction=False
                    )
                raise error from exc
            if timed:
                engine.observers.emit_statement(
                    sql, time.perf_counter() - started, rowcount=rows.rowcount, params=params, in_transaction=False
                )
            result: AsyncResult = self._factory.result_class(rows, engine)
            if not engine.features.detached_results:
                result = await self._factory.result_class(rows, engine).buffered()
            if not engine.features.autocommit:
                await engine.commit(raw)
            return result
        finally:
            await shield(engine.release(raw))

    def listen(self, *channels: str, timeout: float | None = None) -> AsyncListener:
        """Receive ``NOTIFY`` messages on ``channels``, on a connection of its own:
        ``async with db.listen("jobs") as notes: async for note in notes: ...``.

        ``timeout``: iteration ends after that many seconds without a notification. A lost
        connection is reopened (notifications sent meanwhile are lost). PostgreSQL only
        (``db.features.listen_notify``); elsewhere ``NotSupportedError``.
        """
        if self._pgbouncer:
            raise NotSupportedError(
                f"database {self._name!r} goes through PgBouncer (pgbouncer = true), whose transaction mode hands "
                "the LISTEN session to other clients; listen on a database at the server's own address"
            )
        return AsyncListener(self._engine, channels, timeout)

    # -- health, pool, lifetime --------------------------------------------------------

    async def health_check(self) -> HealthCheckResult:
        """One round trip with a hard deadline; never raises. DEGRADED when the pool is exhausted."""
        return await self._engine.health_check()

    def get_pool_info(self) -> PoolInfo:
        """Pool figures (``checked_out``, ``available``, ``total``, ``overflow``, ...) and counters."""
        return self._engine.pool_info()

    async def open(self) -> None:
        """Start the pool (done on first use otherwise). Does not wait for the server."""
        await self._engine.open()

    async def shutdown(self) -> None:
        """Close the pool and its connections. Idempotent; the database is unusable afterwards.

        Connections still lent out are closed when they are returned.
        """
        await self._engine.shutdown()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()
