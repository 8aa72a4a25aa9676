"""What ``PostgresDatabase`` and ``AsyncPostgresDatabase`` share: option handling,
pool figures, error translation and the messages. Only the parts that ``await``
differ between the two classes."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Mapping
from time import monotonic
from typing import Any, Final, cast

from structum_lab.plugins.database import (
    ConnectionFailedError,
    ConnectionLostError,
    DatabaseError,
    DatabaseURL,
    PoolInfo,
    PoolTimeoutError,
    TransactionError,
)
from structum_lab.plugins.database.kit import (
    DRIVER_LOGGERS,
    POSTGRESQL,
    PSYCOPG_POSITIONAL,
    DatabaseBase,
    PoolStats,
    TransactionScope,
    Translator,
    pool_exhausted_message,
    protect_logs,
)

from ._pool import ConnectMonitor, psycopg_isolation, row_factory
from ._settings import PoolSettings, resolve_settings

__all__ = [
    "CLOSE_WAIT",
    "COLD_SLICE",
    "COLD_VERIFY",
    "TRANSLATOR",
    "PostgresBase",
    "sql_log",
]

log = logging.getLogger("structum_lab.plugins.database")
sql_log = logging.getLogger("structum_lab.plugins.database.sql")

#: One translator for every psycopg database: the cache is per SQL string, not per pool.
TRANSLATOR: Final = Translator(POSTGRESQL, PSYCOPG_POSITIONAL)

#: How long a checkout waits on the pool at a time while the pool cannot connect, so
#: that a connection error reaches the caller instead of a full pool_timeout wait.
COLD_SLICE: Final = 0.05

#: How long a checkout waits for the outcome of the pool's own connection attempts before
#: trying one itself (at most half of its pool_timeout): attempts the pool started while the
#: server was unreachable (a stalled network) take connect_timeout to fail, then back off.
COLD_VERIFY: Final = 1.0

#: At most one such attempt per database in this many seconds, so waiting callers never
#: flood a server that is down (an attempt into a silent network lives connect_timeout).
COLD_RETRY: Final = 0.5

#: How long shutdown() waits for each pool worker to stop. Workers stop at once unless one is
#: stuck connecting to a silent server; psycopg_pool joins them one by one.
CLOSE_WAIT: Final = 0.25


class PostgresBase(DatabaseBase):
    """Base of the two psycopg database classes."""

    backend_name = "psycopg"

    _pool: Any
    _scope: TransactionScope[Any]

    def _init_common(
        self,
        url: str | DatabaseURL,
        *,
        is_async: bool,
        name: str | None,
        connect_args: Mapping[str, Any] | None,
        health_check_timeout: float,
        health_degraded_ms: float,
        echo: bool,
        pool_use_lifo: bool,
        **options: Any,
    ) -> PoolSettings:
        parsed = self._setup_base(
            url,
            name=name,
            connect_args=connect_args,
            health_check_timeout=health_check_timeout,
            health_degraded_ms=health_degraded_ms,
        )
        settings = resolve_settings(parsed, connect_args=connect_args, row_factory=row_factory, **options)
        protect_logs(self._secrets, DRIVER_LOGGERS["psycopg"])  # psycopg_pool logs connection errors as is
        if pool_use_lifo:
            log.info(
                "database %r: pool_use_lifo is a SQLAlchemy pool option; psycopg_pool reuses connections in "
                "FIFO order and ignores it",
                self._name,
            )
        self._settings = settings
        self._timeout = settings.timeout
        self._pre_ping = settings.pre_ping
        self._window = settings.pre_ping_window
        self._ping_budget = settings.ping_budget
        self._default_isolation = psycopg_isolation(settings.isolation)
        self._monitor = ConnectMonitor()
        self._stats = PoolStats()
        self._closed = False
        self._echo = bool(echo)
        self._cleared_at = 0.0
        self._renew_lock = threading.Lock()
        self._server_tried = 0.0  # when the last background connection attempt of our own started
        self._pool_name = f"structum-{self._name}"
        self._scope = TransactionScope(f"structum_psycopg_{'async_' if is_async else ''}{id(self)}", is_async=is_async)
        if echo:
            _enable_echo()
        return settings

    # -- shared behaviour --------------------------------------------------------------

    def in_transaction(self) -> bool:
        """Whether the calling thread (or task) has a transaction open on this database."""
        return self._scope.current() is not None

    @property
    def settings(self) -> PoolSettings:
        """The resolved pool settings (sizes, timeouts, psycopg connect arguments without the URL)."""
        return self._settings

    def get_pool_info(self) -> PoolInfo:
        """Pool figures (``checked_out``, ``available``, ``total``, ``overflow``, ...) and counters.

        ``size`` is the steady size (``min_size``), ``max_size`` the hard cap; ``overflow``
        counts open connections above ``min_size``.
        """
        counters: dict[str, Any] = self._stats.counters()
        pool = self._pool
        available = lost = 0
        if pool is not None and not pool.closed:
            stats = pool.get_stats()
            available = stats.get("pool_available", 0)
            lost = stats.get("connections_lost", 0)
        out = self._stats.checked_out
        total = out + available
        low, high = self._settings.min_size, self._settings.max_size
        counters["connections_lost"] += lost
        figures = {
            "checked_out": out,
            "available": available,
            "total": total,
            "overflow": max(0, total - low),
            "size": low,
            "max_size": high,
            "min_size": low,
        }
        return cast("PoolInfo", {**figures, **counters})

    def _reset_after_fork(self) -> Any:
        """What a forked child must not share with its parent; returns the inherited pool."""
        inherited = self._pool
        self._stats = PoolStats()  # the parent's checked-out connections are not the child's
        self._renew_lock = threading.Lock()  # may have been held by another thread at fork time
        self._cleared_at = 0.0
        self._server_tried = 0.0
        return inherited

    def _check_open(self) -> None:
        if self._closed:
            raise TransactionError(f"database {self._name!r} has been shut down; create a new one")

    def _refuse_if_exhausted(self) -> None:
        """The health check reports a full pool instead of queueing behind it."""
        high = self._settings.max_size
        if self._stats.checked_out >= high:
            raise PoolTimeoutError(f"all {high} connections are in use; the health check does not wait")

    def _exhausted(self, started: float) -> PoolTimeoutError:
        waited = self._stats.checkout_failed(started, timed_out=True)
        info = self.get_pool_info()
        self._plugins.pool_exhausted(self, info, waited)  # type: ignore[arg-type]
        s = self._settings
        message = pool_exhausted_message(
            name=self._name,
            waited=waited,
            pool_timeout=s.timeout,
            pool_size=s.min_size,
            max_overflow=s.max_size - s.min_size,
            info=info,
        )
        if s.explicit_sizes:
            message += f". This pool is sized with min_size={s.min_size} and max_size={s.max_size}: raise max_size"
        return PoolTimeoutError(message, backend=self.backend_name)

    def _translate(self, exc: BaseException, raw: Any = None) -> DatabaseError:
        """The core error for a psycopg exception; a connection seen broken means it was lost."""
        lost = raw is not None and raw.broken
        error = self._error(exc, lost=lost)
        if isinstance(error, ConnectionLostError):
            self._stats.lost()
            # The server may be restarting: checkouts wait for a fresh connection's outcome.
            self._monitor.suspect()
        return error

    def _connect_error(self) -> DatabaseError:
        """Why no connection could be had: the last connection error, or the deadline."""
        error = self._monitor.error
        if error is not None:
            return self._error(error, connecting=True)
        s = self._settings
        detail = f", connect_timeout={s.connect_timeout}" if s.connect_timeout else ""
        return ConnectionFailedError(
            f"could not connect to the database: no connection could be opened within "
            f"{s.timeout:g} s (pool_timeout{detail})",
            backend=self.backend_name,
        )

    def _claim_server_try(self) -> bool:
        """Whether to start a background connection attempt now: at most one per COLD_RETRY
        seconds. (One started while the network was still silent may hang for
        connect_timeout; it does not block the next.)"""
        with self._renew_lock:
            now = monotonic()
            if self._closed or now - self._server_tried < COLD_RETRY:
                return False
            self._server_tried = now
            return True

    def _direct_kwargs(self, remaining: float) -> dict[str, Any]:
        """Connect arguments for a one-off connection that must answer within ``remaining`` s."""
        kwargs = dict(self._settings.kwargs)
        limit = self._settings.connect_timeout
        budget = max(2, int(remaining + 0.999))
        kwargs["connect_timeout"] = min(limit, budget) if limit else budget
        return kwargs


def _enable_echo() -> None:
    """``echo=True`` logs every statement to stdout, as SQLAlchemy's ``echo`` does."""
    if sql_log.level == logging.NOTSET or sql_log.level > logging.INFO:
        sql_log.setLevel(logging.INFO)
    if not sql_log.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        sql_log.addHandler(handler)
