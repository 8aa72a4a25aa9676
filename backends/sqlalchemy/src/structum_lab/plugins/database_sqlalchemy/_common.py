"""What ``SQLAlchemyDatabase`` and ``AsyncSQLAlchemyDatabase`` share: engine set-up,
error translation, pool figures and the pool-exhausted error. Only the parts that
``await`` differ between the two classes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, Final, cast

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import Pool, QueuePool

from structum_lab.plugins.database import (
    ConfigurationError,
    ConnectionLostError,
    DatabaseError,
    DatabaseURL,
    IsolationLevel,
    PoolInfo,
    PoolTimeoutError,
    TransactionError,
)
from structum_lab.plugins.database.kit import (
    DRIVER_LOGGERS,
    FORK,
    PSYCOPG_PREPARE_THRESHOLD,
    DatabaseBase,
    PoolStats,
    TransactionScope,
    Translator,
    adopt,
    normalize_isolation,
    ping_budget,
    pool_exhausted_message,
    protect_logs,
    resolve_statement_deadline,
)

from ._deadlines import deadline_connect_args, install_deadline
from ._dialects import lexer_for, target_for
from ._engine import (
    apply_prepare_threshold,
    create_engine_checked,
    engine_arguments,
    install_listeners,
    split_libpq_options,
    sqlalchemy_url,
)

__all__ = ["EngineDatabase", "OpenConnections", "SQLAlchemyPoolTimeoutError", "describe_connection"]

_SA_ISOLATION: Final[dict[IsolationLevel, str]] = {
    "read_uncommitted": "READ UNCOMMITTED",
    "read_committed": "READ COMMITTED",
    "repeatable_read": "REPEATABLE READ",
    "serializable": "SERIALIZABLE",
}


class SQLAlchemyPoolTimeoutError(PoolTimeoutError, sa_exc.TimeoutError):
    """Pool exhausted: catchable as core ``PoolTimeoutError`` and as ``sqlalchemy.exc.TimeoutError``."""


class OpenConnections:
    """How many connections the engine's pool holds open, from its connect/close events."""

    __slots__ = ("_lock", "count")

    def __init__(self, engine: Any) -> None:
        self.count = 0
        self._lock = threading.Lock()
        event.listen(engine, "connect", self._opened)
        event.listen(engine, "close", self._gone)
        event.listen(engine, "detach", self._gone)  # still open, but no longer the pool's

    def _opened(self, *_: Any) -> None:
        with self._lock:
            self.count += 1

    def _gone(self, *_: Any) -> None:
        with self._lock:
            self.count -= 1


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
        statement_deadline: float | None,
        isolation_level: str | None,
        health_check_timeout: float,
        health_degraded_ms: float,
        name: str | None,
        engine_options: Mapping[str, Any] | None,
        prepare_threshold: object = PSYCOPG_PREPARE_THRESHOLD,
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
        apply_prepare_threshold(args, sa_url.get_driver_name(), prepare_threshold)
        deadline = resolve_statement_deadline(statement_timeout, statement_deadline)
        bounded = deadline_connect_args(sa_url.get_driver_name(), deadline, is_async=is_async)
        if bounded:  # the user's connect_args win
            args["connect_args"] = {**bounded, **args.get("connect_args", {})}
        self._ping_budget = ping_budget(pool_timeout, connect_timeout, deadline)
        self._connect_timeout = connect_timeout or 0.0
        self._engine = create_engine_checked(sa_url, args, is_async=is_async)
        sync_engine = self._engine.sync_engine if is_async else self._engine
        install_listeners(sync_engine, statement_timeout=statement_timeout)
        if "creator" not in (engine_options or {}):  # the user's own creator opens connections as it likes
            install_deadline(sync_engine, deadline)
        self._open = OpenConnections(sync_engine)
        protect_logs(self._secrets, engine_loggers(sync_engine))
        dialect = sync_engine.dialect
        self._translator = Translator(lexer_for(dialect.name), target_for(dialect.driver, dialect.paramstyle))
        self._scope = TransactionScope(f"structum_sqlalchemy_{id(self)}", is_async=is_async)
        self._pool_size = pool_size
        self._max_overflow = max_overflow
        self._pool_timeout = pool_timeout
        self._pre_ping = pool_pre_ping
        self._closed = False
        self._stats = PoolStats()
        # Every connection lent out, until it is returned. A Connection sits in a reference
        # cycle (with its transaction), so a forgotten one is freed by the cyclic collector,
        # which runs SQLAlchemy's weakref rescue *before* our wrapper's __del__: the
        # connection would be returned twice (the second time under another user). Held
        # here, it stays reachable, and only the wrapper's __del__ returns it.
        self._lent: set[Any] = set()

    # -- shared behaviour --------------------------------------------------------------

    def get_pool_info(self) -> PoolInfo:
        """Pool figures (``checked_out``, ``available``, ``total``, ``overflow``, ...) and counters."""
        pool: Pool = self._engine.pool
        counters: dict[str, Any] = self._stats.counters()
        if isinstance(pool, QueuePool):
            size = pool.size()
            checked_out = pool.checkedout()
            # Not checkedin(): it also counts slots whose connection was closed (invalidated
            # after an error or a cancellation) and is only reopened at its next checkout.
            total = max(self._open.count, checked_out)
            figures = {
                "checked_out": checked_out,
                "available": total - checked_out,
                "total": total,
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
        if self._fork_epoch != FORK.epoch:
            adopt(self, self._after_fork)

    def _after_fork(self) -> Any:
        """In a forked child: a pool of its own, by SQLAlchemy's documented recipe
        (``dispose(close=False)``), which leaves the parent's connections open and unused.
        The inherited pool goes back to core, which keeps it from being finalized."""
        engine = getattr(self._engine, "sync_engine", self._engine)
        inherited = engine.pool
        engine.dispose(close=False)
        self._stats = PoolStats()  # the parent's checked-out connections are not the child's
        return inherited

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

    def _connect_failed(self, started: float, exc: sa_exc.DBAPIError | OSError) -> DatabaseError:
        self._stats.checkout_failed(started, timed_out=False)
        orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
        if isinstance(orig, TimeoutError) and not str(orig):  # asyncpg's says nothing
            orig = TimeoutError(f"no answer within connect_timeout={self._connect_timeout:g} s")
        return self._error(orig, connecting=True)

    def _driver_refused(self, started: float, exc: Exception) -> ConfigurationError:
        """The driver's ``connect()`` refused an argument (from the URL query or ``connect_args``):
        a configuration mistake, not a connection failure."""
        self._stats.checkout_failed(started, timed_out=False)
        message = (
            f"the {self._dialect} driver refused the connection arguments (URL query parameters or "
            f"connect_args): {type(exc).__name__}: {exc}"
        )
        return ConfigurationError(self._secrets.scrub(message), backend=self.backend_name)

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


def describe_connection(sa_conn: Any) -> str:
    """How a leak warning names a connection: its server pid when the driver tells (psycopg)."""
    if sa_conn is None or sa_conn.closed or sa_conn.invalidated:
        return "closed"
    try:
        driver = sa_conn.connection.driver_connection
    except sa_exc.SQLAlchemyError:
        return "closed"
    pid = getattr(getattr(driver, "info", None), "backend_pid", None)
    return f"server pid {pid}" if pid else type(driver).__name__


def engine_loggers(engine: Any) -> list[logging.Logger | str]:
    """The loggers an engine's records go to (its own, its pool's, its driver's), to scrub."""
    found: list[logging.Logger | str] = []
    for holder in (engine, engine.pool):
        logger = getattr(holder, "logger", None)
        logger = getattr(logger, "logger", logger)  # echo/logging_name wrap it in an InstanceLogger
        if isinstance(logger, logging.Logger):
            found.append(logger)
    found += DRIVER_LOGGERS.get(engine.dialect.driver, ())
    return found
