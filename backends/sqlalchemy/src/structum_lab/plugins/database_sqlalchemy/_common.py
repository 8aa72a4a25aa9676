"""What ``SQLAlchemyDatabase`` and ``AsyncSQLAlchemyDatabase`` share: engine set-up,
error translation, pool figures and the pool-exhausted error. Only the parts that
``await`` differ between the two classes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, cast

from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import Pool, QueuePool

from structum_lab.plugins.database import (
    ConnectionLostError,
    DatabaseError,
    DatabaseURL,
    IsolationLevel,
    PoolInfo,
    PoolTimeoutError,
    TransactionError,
)
from structum_lab.plugins.database.kit import (
    DatabaseBase,
    PoolStats,
    TransactionScope,
    Translator,
    normalize_isolation,
    pool_exhausted_message,
)

from ._dialects import lexer_for, target_for
from ._engine import (
    create_engine_checked,
    engine_arguments,
    install_listeners,
    split_libpq_options,
    sqlalchemy_url,
)

__all__ = ["EngineDatabase", "SQLAlchemyPoolTimeoutError"]

_SA_ISOLATION: Final[dict[IsolationLevel, str]] = {
    "read_uncommitted": "READ UNCOMMITTED",
    "read_committed": "READ COMMITTED",
    "repeatable_read": "REPEATABLE READ",
    "serializable": "SERIALIZABLE",
}


class SQLAlchemyPoolTimeoutError(PoolTimeoutError, sa_exc.TimeoutError):
    """Pool exhausted: catchable as core ``PoolTimeoutError`` and as ``sqlalchemy.exc.TimeoutError``."""


class EngineDatabase(DatabaseBase):
    """Base of the two SQLAlchemy database classes."""

    backend_name = "sqlalchemy"

    _engine: Any
    _scope: TransactionScope[Any]

    def _init_engine(
        self,
        url: str | DatabaseURL,
        *,
        is_async: bool,
        pool_size: int,
        max_overflow: int,
        pool_timeout: float,
        pool_recycle: float | None,
        pool_pre_ping: bool,
        pool_use_lifo: bool,
        echo: bool,
        connect_args: Mapping[str, Any] | None,
        connect_timeout: float | None,
        statement_timeout: float | None,
        isolation_level: str | None,
        health_check_timeout: float,
        health_degraded_ms: float,
        name: str | None,
        engine_options: Mapping[str, Any] | None,
    ) -> None:
        parsed = self._setup_base(
            url,
            name=name,
            connect_args=connect_args,
            health_check_timeout=health_check_timeout,
            health_degraded_ms=health_degraded_ms,
        )
        sa_url, server_settings = split_libpq_options(sqlalchemy_url(parsed, is_async=is_async))
        if server_settings:
            connect_args = {
                **(connect_args or {}),
                "server_settings": {**server_settings, **(connect_args or {}).get("server_settings", {})},
            }
        self._dialect = sa_url.get_backend_name()
        default_isolation = normalize_isolation(isolation_level)
        args = engine_arguments(
            parsed,
            sa_url,
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
            isolation_level=self._isolation_option(default_isolation) if default_isolation else None,
            engine_options=engine_options,
        )
        self._engine = create_engine_checked(sa_url, args, is_async=is_async)
        sync_engine = self._engine.sync_engine if is_async else self._engine
        install_listeners(sync_engine, statement_timeout=statement_timeout)
        dialect = sync_engine.dialect
        self._translator = Translator(lexer_for(dialect.name), target_for(dialect.driver, dialect.paramstyle))
        self._scope = TransactionScope(f"structum_sqlalchemy_{id(self)}", is_async=is_async)
        self._pool_size = pool_size
        self._max_overflow = max_overflow
        self._pool_timeout = pool_timeout
        self._pre_ping = pool_pre_ping
        self._closed = False
        self._stats = PoolStats()

    # -- shared behaviour --------------------------------------------------------------

    def get_pool_info(self) -> PoolInfo:
        """Pool figures (``checked_out``, ``available``, ``total``, ``overflow``, ...) and counters."""
        pool: Pool = self._engine.pool
        counters: dict[str, Any] = self._stats.counters()
        if isinstance(pool, QueuePool):
            size = pool.size()
            checked_in = pool.checkedin()
            checked_out = pool.checkedout()
            figures = {
                "checked_out": checked_out,
                "available": checked_in,
                "total": checked_in + checked_out,
                # QueuePool counts overflow from -size; only connections above size are overflow.
                "overflow": max(0, pool.overflow()),
                "size": size,
                "max_size": size + self._max_overflow,
            }
        else:  # StaticPool (in-memory SQLite): one shared connection
            out = self._stats.checked_out
            figures = {"checked_out": out, "available": int(not out), "total": 1, "overflow": 0, "size": 1}
            figures["max_size"] = 1
        return cast("PoolInfo", {**figures, **counters})

    def in_transaction(self) -> bool:
        """Whether the calling thread (or task) has a transaction open on this database."""
        return self._scope.current() is not None

    def _check_open(self) -> None:
        if self._closed:
            raise TransactionError(f"database {self._name!r} has been shut down; create a new one")

    def _refuse_if_exhausted(self) -> None:
        """The health check reports a full pool instead of queueing behind it."""
        pool = self._engine.pool
        if isinstance(pool, QueuePool) and pool.checkedout() >= pool.size() + self._max_overflow:
            raise PoolTimeoutError(
                f"all {pool.size() + self._max_overflow} connections are in use; the health check does not wait"
            )

    def _exhausted(self, started: float) -> SQLAlchemyPoolTimeoutError:
        waited = self._stats.checkout_failed(started, timed_out=True)
        info = self.get_pool_info()
        self._plugins.pool_exhausted(self, info, waited)  # type: ignore[arg-type]
        return SQLAlchemyPoolTimeoutError(
            pool_exhausted_message(
                name=self._name,
                waited=waited,
                pool_timeout=self._pool_timeout,
                pool_size=self._pool_size,
                max_overflow=self._max_overflow,
                info=info,
            )
        )

    def _connect_failed(self, started: float, exc: sa_exc.DBAPIError) -> DatabaseError:
        self._stats.checkout_failed(started, timed_out=False)
        return self._error(exc.orig if exc.orig is not None else exc, connecting=True)

    def _translate(self, exc: BaseException) -> DatabaseError:
        if isinstance(exc, sa_exc.DBAPIError):
            error = self._error(exc.orig if exc.orig is not None else exc, lost=bool(exc.connection_invalidated))
        else:
            error = self._error(exc)
        if isinstance(error, ConnectionLostError):
            self._stats.lost()
        return error

    def _isolation_option(self, level: IsolationLevel) -> str:
        if self._dialect == "sqlite":
            # SQLite is always serializable; a stronger level than asked for is allowed by the standard.
            return "READ UNCOMMITTED" if level == "read_uncommitted" else "SERIALIZABLE"
        return _SA_ISOLATION[level]

    def _readonly_sql(self, enable: bool) -> str | None:
        """SQL that makes the transaction just begun read-only (None: done at checkout)."""
        if self._dialect == "postgresql":
            return None  # the driver's read_only flag, set through execution_options
        if self._dialect == "sqlite":
            return f"PRAGMA query_only = {int(enable)}"
        return "SET TRANSACTION READ ONLY" if enable else None
