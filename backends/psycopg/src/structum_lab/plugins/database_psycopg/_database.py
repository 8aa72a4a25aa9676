"""``PostgresDatabase``: psycopg 3 on a ``psycopg_pool.ConnectionPool`` behind the core API.

Checkout liveness, in the spirit of HikariCP: a connection used within the last
``pre_ping_window`` seconds (0.5 s) is handed out after a zero-round-trip test (is its
socket readable? an idle connection's is not, unless the server closed it); an older
one is pinged (one round trip, measured ~0.1 ms on loopback against ~0.3 ms for a
whole pooled transaction). A connection found dead clears the whole pool at once
(``ConnectionPool.drain()``), so a server restart costs one failed ping, not one per
stale connection with psycopg_pool's 1 s, 2 s, 4 s back-off between them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from time import monotonic
from typing import Any

import psycopg
from psycopg import pq
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from structum_lab.plugins.database import DatabaseURL, HealthCheckResult, IsolationLevel, Params
from structum_lab.plugins.database.kit import (
    FORK,
    TransactionScope,
    adopt,
    leaks,
    normalize_isolation,
    round_trip_cap,
    run_health_check,
)

from ._common import CLOSE_WAIT, COLD_SLICE, COLD_VERIFY, PostgresBase
from ._connection import PostgresConnection, PostgresResult, _Transaction, commit
from ._pool import sync_connection_class

__all__ = ["PostgresDatabase"]

log = logging.getLogger("structum_lab.plugins.database")

_IDLE = pq.TransactionStatus.IDLE
_INTRANS = pq.TransactionStatus.INTRANS
_INERROR = pq.TransactionStatus.INERROR
_check_connection = ConnectionPool.check_connection


class PostgresDatabase(PostgresBase):
    """PostgreSQL through psycopg 3 and ``psycopg_pool`` (spec section 5).

    ``url`` is a ``postgresql://`` / ``postgres://`` URL or a libpq ``key=value`` string.
    The common options keep their meaning (``pool_size``, ``max_overflow``,
    ``pool_timeout``, ``pool_recycle``, ``pool_pre_ping`` ...); psycopg_pool's own
    ``min_size``, ``max_size``, ``timeout`` and ``max_lifetime`` win when given.
    ``prepare_threshold=None`` disables prepared statements (PgBouncer transaction mode).

    The pool opens in the constructor without waiting: connections are made in the
    background, so an unreachable server delays nothing until the first checkout.
    """

    _pool: ConnectionPool[Any]
    _scope: TransactionScope[PostgresConnection]

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
        echo: bool = False,
        pool_use_lifo: bool = False,
    ) -> None:
        self._pool = None  # type: ignore[assignment]
        settings = self._init_common(
            url,
            is_async=False,
            name=name,
            connect_args=connect_args,
            health_check_timeout=health_check_timeout,
            health_degraded_ms=health_degraded_ms,
            echo=echo,
            pool_use_lifo=pool_use_lifo,
            pool_size=pool_size,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            pool_recycle=pool_recycle,
            max_lifetime=max_lifetime,
            max_idle=max_idle,
            reconnect_timeout=reconnect_timeout,
            pool_pre_ping=pool_pre_ping,
            pre_ping_window=pre_ping_window,
            prepare_threshold=prepare_threshold,
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
            statement_deadline=statement_deadline,
            application_name=application_name,
            isolation_level=isolation_level,
        )
        self._conn_class = sync_connection_class(self._monitor, settings.isolation, settings.statement_deadline)
        self._pool = self._new_pool()

    def _new_pool(self) -> ConnectionPool[Any]:
        s = self._settings
        return ConnectionPool(
            s.conninfo,
            connection_class=self._conn_class,
            kwargs=s.kwargs,
            min_size=s.min_size,
            max_size=s.max_size,
            open=True,
            name=self._pool_name,
            timeout=s.timeout,
            max_lifetime=s.max_lifetime,
            max_idle=s.max_idle,
            reconnect_timeout=s.reconnect_timeout,
        )

    # -- public API --------------------------------------------------------------------

    @property
    def pool(self) -> ConnectionPool[Any]:
        """The ``psycopg_pool.ConnectionPool`` (escape hatch; it may be replaced after an outage)."""
        return self._pool

    def transaction(self, *, isolation: IsolationLevel | None = None, readonly: bool = False) -> _Transaction:
        """A transaction: commit on success, rollback on any exception (re-raised).

        Called while a transaction is open in the same thread, it becomes a savepoint
        of that one. ``isolation`` (``"serializable"``, ...) and ``readonly`` apply to
        this transaction only.
        """
        return _Transaction(self, normalize_isolation(isolation) if isolation else None, readonly)

    def get_connection(self) -> PostgresConnection:
        """A connection in a transaction you end yourself: ``commit()``/``rollback()``, then ``close()``.

        Also a context manager (commits on success, rolls back on error, closes).
        """
        leaks.ensure_reaper()  # returns the connection if it is garbage-collected open
        return PostgresConnection(self, self._checkout())

    def execute(self, sql: str, params: Params = None) -> PostgresResult:
        """Run one statement on its own, in autocommit: one round trip instead of three
        (BEGIN, the statement, COMMIT). The rows come with the result.

        Called inside an open ``transaction()`` it runs in that transaction.
        """
        current = self._scope.current()
        if current is not None:
            return current.execute(sql, params)
        raw = self._checkout()
        conn = PostgresConnection(self, raw)
        try:
            raw.autocommit = True
            return conn.execute(sql, params)
        finally:
            conn._raw = None
            if not raw.closed:
                raw.autocommit = False
            self._release(raw)

    def health_check(self) -> HealthCheckResult:
        """One round trip with a hard deadline; never raises. DEGRADED when the pool is exhausted."""
        result = run_health_check(
            self._probe,
            timeout_s=self.health_check_timeout,
            degraded_ms=self.health_degraded_ms,
            secrets=self._secrets,
            details=self._health_details,
        )
        self._plugins.health_checked(self, result)
        return result

    def shutdown(self) -> None:
        """Close the pool and its connections. Idempotent; the database is unusable afterwards.

        Connections still lent out are closed when they are returned.
        """
        if self._fork_epoch != FORK.epoch:
            adopt(self, self._after_fork)  # a forked child closes its own pool, never the parent's
        with self._renew_lock:
            self._closed = True
            pool = self._pool
        pool.close(timeout=CLOSE_WAIT)

    def __enter__(self) -> PostgresDatabase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    # -- checkout ----------------------------------------------------------------------

    def _checkout(self, *, ping: bool = False) -> Any:
        """A live connection from the pool, counted in the statistics.

        The common case stays inline (one ``getconn``, the cheap liveness test); the
        rest - a connection to ping, an outage, a closed pool - goes to ``_acquire``.
        """
        if self._closed:
            self._check_open()
        if self._fork_epoch != FORK.epoch:
            adopt(self, self._after_fork)
        stats = self._stats
        started = stats.checkout_started()
        deadline = monotonic() + self._timeout
        try:
            pool = self._pool
            raw = None
            if self._monitor.up:
                try:
                    raw = pool.getconn(self._timeout)
                except PoolTimeout:
                    if self._monitor.still_up():
                        raise
                except PoolClosed:
                    self._check_open()
            if raw is None:
                raw = self._acquire(deadline, ping)
            elif ping or (self._pre_ping and (monotonic() - raw._sdb_used > self._window or raw._sdb_readable(0))):
                raw = self._acquire(deadline, ping, raw, pool)
            else:
                raw._sdb_pool = pool
        except PoolTimeout as exc:
            raise self._exhausted(started) from exc
        except BaseException:
            stats.checkout_failed(started, timed_out=False)
            raise
        stats.checkout_done(started)
        return raw

    def _acquire(self, deadline: float, ping: bool, raw: Any = None, pool: Any = None) -> Any:
        """Get a connection (unless given one) and check it; retry past dead ones until ``deadline``."""
        while True:
            if raw is None:
                if self._monitor.up:
                    pool = self._pool
                    try:
                        raw = pool.getconn(max(deadline - monotonic(), 0.001))
                    except PoolTimeout:
                        if self._monitor.still_up():
                            raise
                        continue  # the server went away while we waited: report that, not exhaustion
                    except PoolClosed:
                        self._check_open()
                        continue
                else:
                    pool, raw = self._acquire_cold(deadline)
            if ping or (self._pre_ping and (monotonic() - raw._sdb_used > self._window or raw._sdb_readable(0))):
                try:
                    with round_trip_cap(self._ping_budget):  # no answer in time: a dead connection
                        _check_connection(raw)
                except Exception:
                    self._discard(raw, pool)
                    raw = None
                    continue
                except BaseException:
                    # Interrupted mid-ping: the connection's state is unknown; close it, return the slot.
                    raw.pgconn.finish()
                    pool.putconn(raw)
                    raise
            raw._sdb_pool = pool
            return raw

    def _acquire_cold(self, deadline: float) -> tuple[ConnectionPool[Any], Any]:
        """Checkout while the pool has not (re)connected: short waits, real errors, no back-off."""
        verified = False
        started = monotonic()
        patience = min(COLD_VERIFY, (deadline - started) / 2)
        while True:
            pool = self._pool
            now = monotonic()
            if now >= deadline:
                error = self._connect_error()
                raise error from self._monitor.error
            monitor = self._monitor
            try:
                wait = deadline - now if monitor.up else min(deadline - now, COLD_SLICE)
                return pool, pool.getconn(max(wait, 0.001))
            except PoolTimeout:
                if monitor.up and monotonic() >= deadline:
                    raise
            except PoolClosed:
                self._check_open()
                continue
            if monitor.error is None:
                if monotonic() - started >= patience:
                    self._try_server_in_background(pool)
                continue  # no outcome yet (first connection, or after a dead one): keep waiting
            if verified:
                error = self._connect_error()
                raise error from monitor.error
            self._verify(deadline, pool)
            verified = True

    def _verify(self, deadline: float, pool: ConnectionPool[Any]) -> None:
        """The pool's last attempt failed: ask the server directly, and restart a pool stuck in back-off."""
        try:
            conn = self._conn_class.connect(self._settings.conninfo, **self._direct_kwargs(deadline - monotonic()))
        except psycopg.Error as exc:
            raise self._error(exc, connecting=True) from exc
        conn.close()
        self._renew(pool)

    def _after_fork(self) -> Any:
        """In a forked child: a pool of its own. The inherited one is returned to core, which
        keeps it unused and never closes it (closing would end the parent's server sessions)."""
        inherited = self._reset_after_fork()
        if not self._closed:  # a pool closed before the fork stays closed (closing it again is a no-op)
            self._pool = self._new_pool()
        return inherited

    def _try_server_in_background(self, pool: ConnectionPool[Any]) -> None:
        """The pool's attempts go unanswered (they may have started while the network was
        down): try the server from a thread, and renew the pool if it answers. The caller
        keeps waiting on the pool, so a silent server still costs it only pool_timeout."""
        if not self._claim_server_try():
            return

        def attempt() -> None:
            try:
                # The plain class: its outcome must not reach the monitor before the pool is renewed.
                budget = self._settings.connect_timeout or 10
                conn = psycopg.Connection.connect(self._settings.conninfo, **self._direct_kwargs(budget))
            except psycopg.Error:
                log.debug("database %r: the server does not answer yet", self._name, exc_info=True)
                return
            conn.close()
            self._renew(pool)

        threading.Thread(target=attempt, name="structum-db-try-server", daemon=True).start()

    def _renew(self, old: ConnectionPool[Any]) -> None:
        """Replace a pool that is waiting out its reconnection back-off now that the server answers."""
        with self._renew_lock:
            if self._pool is not old or self._closed:
                return
            self._pool = self._new_pool()
        log.info("database %r: the server answers again; reopened the connection pool", self._name)
        threading.Thread(target=old.close, kwargs={"timeout": 1.0}, name="structum-pool-close", daemon=True).start()

    def _discard(self, raw: Any, pool: ConnectionPool[Any]) -> None:
        """A connection failed its check: drop it, and every idle connection as old as it."""
        self._stats.lost()
        self._monitor.suspect()
        try:
            raw.close()
            pool.putconn(raw)
        except Exception:
            log.debug("error while discarding a dead connection", exc_info=True)
        self._clear_stale(pool, raw)

    def _clear_stale(self, pool: ConnectionPool[Any], raw: Any) -> None:
        if raw._sdb_created <= self._cleared_at:
            return  # the pool was already cleared after this connection was made
        self._cleared_at = monotonic()
        log.info("database %r: a pooled connection was dead; replacing the idle ones at once", self._name)
        # psycopg_pool >= 3.3: drain() closes the idle connections and opens new ones;
        # before that, check() tests the idle ones and replaces the dead.
        clear: Any = getattr(pool, "drain", None) or pool.check
        try:
            clear()
        except Exception:
            log.debug("error while clearing the pool", exc_info=True)

    # -- release and transaction helpers ----------------------------------------------

    def _release(self, raw: Any) -> None:
        self._stats.released()
        status = raw.pgconn.transaction_status
        if status in (_INTRANS, _INERROR):
            try:
                raw.rollback()
            except psycopg.Error:
                log.debug("rollback on release failed", exc_info=True)
        raw._sdb_used = monotonic()
        broken = raw.broken
        pool = raw._sdb_pool
        try:
            pool.putconn(raw)
        except Exception:
            log.debug("error while returning a connection to the pool", exc_info=True)
        if broken:
            self._clear_stale(pool, raw)

    def _reclaim(self, raw: Any) -> None:
        """Return a connection whose wrapper was garbage-collected open (on the reaper thread)."""
        detail = "closed" if raw.closed else f"server pid {raw.info.backend_pid}"
        self._release(raw)
        leaks.warn_leak(self._name, detail)

    def _commit(self, raw: Any) -> None:
        commit(self, raw)

    def _reset_options(self, raw: Any) -> None:
        if raw.closed or raw.pgconn.transaction_status != _IDLE:
            return
        try:
            raw.isolation_level = self._default_isolation
            raw.read_only = None
        except psycopg.Error:
            log.debug("could not reset the transaction options", exc_info=True)

    def _probe(self, timeout_s: float) -> None:
        """One round trip: on a pooled connection when the pool is connected, else a direct one."""
        self._check_open()
        self._refuse_if_exhausted()
        if not self._monitor.up:
            try:
                conn = self._conn_class.connect(self._settings.conninfo, **self._direct_kwargs(timeout_s))
            except psycopg.Error as exc:
                raise self._error(exc, connecting=True) from exc
            conn.close()
            return
        with round_trip_cap(timeout_s):  # the probe's round trips end with the health deadline
            raw = self._checkout(ping=True)
        self._release(raw)
