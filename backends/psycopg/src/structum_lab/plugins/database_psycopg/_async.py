"""``AsyncPostgresDatabase``: the asyncio twin of ``PostgresDatabase`` on ``AsyncConnectionPool``.

The constructor runs without an event loop (``AsyncPostgresDatabase.from_config()``
may be called anywhere), so the pool opens on first use, or explicitly with
``await db.open()`` / ``async with db:``. From then on the database belongs to that
event loop. Checkout, liveness checks and recovery follow the sync class.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from time import monotonic
from typing import Any

import psycopg
from psycopg import pq
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from structum_lab.plugins.database import DatabaseURL, HealthCheckResult, IsolationLevel, Params
from structum_lab.plugins.database.kit import (
    FORK,
    TransactionScope,
    adopt,
    leaks,
    normalize_isolation,
    round_trip_cap,
    run_health_check_async,
)

from ._async_connection import AsyncPostgresConnection, AsyncPostgresResult, _AsyncTransaction
from ._common import CLOSE_WAIT, COLD_SLICE, COLD_VERIFY, PostgresBase
from ._pool import async_connection_class

__all__ = ["AsyncPostgresConnection", "AsyncPostgresDatabase", "AsyncPostgresResult"]

log = logging.getLogger("structum_lab.plugins.database")

_IDLE = pq.TransactionStatus.IDLE
_INTRANS = pq.TransactionStatus.INTRANS
_INERROR = pq.TransactionStatus.INERROR
_check_connection = AsyncConnectionPool.check_connection


class AsyncPostgresDatabase(PostgresBase):
    """PostgreSQL through psycopg 3's asyncio API and ``AsyncConnectionPool`` (spec section 5.3).

    Same options and semantics as :class:`PostgresDatabase`; every call that talks to
    the server is awaited. The pool opens on first use (or ``await db.open()``).
    """

    is_async = True

    _pool: AsyncConnectionPool[Any]
    _scope: TransactionScope[AsyncPostgresConnection]

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
            is_async=True,
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
        self._conn_class = async_connection_class(self._monitor, settings.isolation, settings.statement_deadline)
        self._pool = self._new_pool()
        self._opened = False
        self._server_tries: set[asyncio.Future[None]] = set()  # cancelled by shutdown(), not awaited
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Task[Any]] = set()

    def _new_pool(self) -> AsyncConnectionPool[Any]:
        s = self._settings
        return AsyncConnectionPool(
            s.conninfo,
            connection_class=self._conn_class,
            kwargs=s.kwargs,
            min_size=s.min_size,
            max_size=s.max_size,
            open=False,
            name=self._pool_name,
            timeout=s.timeout,
            max_lifetime=s.max_lifetime,
            max_idle=s.max_idle,
            reconnect_timeout=s.reconnect_timeout,
        )

    # -- public API --------------------------------------------------------------------

    @property
    def pool(self) -> AsyncConnectionPool[Any]:
        """The ``psycopg_pool.AsyncConnectionPool`` (escape hatch; it may be replaced after an outage)."""
        return self._pool

    async def open(self) -> None:
        """Open the pool in the running event loop (done on first use otherwise). Does not wait."""
        self._check_open()
        if not self._opened:
            await self._pool.open(wait=False)
            self._loop = asyncio.get_running_loop()  # where a leaked connection is returned
            self._opened = True

    def transaction(self, *, isolation: IsolationLevel | None = None, readonly: bool = False) -> _AsyncTransaction:
        """``async with db.transaction() as conn:`` - commit on success, rollback on exception.

        Nested in an open transaction of the same task, it becomes a savepoint.
        """
        return _AsyncTransaction(self, normalize_isolation(isolation) if isolation else None, readonly)

    async def get_connection(self) -> AsyncPostgresConnection:
        """A connection you end yourself: ``await conn.commit()``, then ``await conn.close()``.

        Also an async context manager (commits on success, rolls back on error, closes).
        """
        leaks.ensure_reaper()  # returns the connection if it is garbage-collected open
        return AsyncPostgresConnection(self, await self._checkout())

    async def execute(self, sql: str, params: Params = None) -> AsyncPostgresResult:
        """Run one statement on its own, in autocommit: one round trip instead of three.
        The rows come with the result. Inside an open ``transaction()`` of the calling
        task it runs in that transaction.
        """
        current = self._scope.current()
        if current is not None:
            return await current.execute(sql, params)
        raw = await self._checkout()
        conn = AsyncPostgresConnection(self, raw)
        try:
            await raw.set_autocommit(True)
            return await conn.execute(sql, params)
        finally:
            conn._raw = None
            try:
                if not raw.closed:
                    await raw.set_autocommit(False)
            finally:
                await self._release(raw)

    async def health_check(self) -> HealthCheckResult:
        """One round trip with a hard deadline; never raises. DEGRADED when the pool is exhausted."""
        result = await run_health_check_async(
            self._probe,
            timeout_s=self.health_check_timeout,
            degraded_ms=self.health_degraded_ms,
            secrets=self._secrets,
            details=self._health_details,
        )
        self._plugins.health_checked(self, result)
        return result

    async def shutdown(self) -> None:
        """Close the pool and its connections. Idempotent; the database is unusable afterwards."""
        if self._fork_epoch != FORK.epoch:
            adopt(self, self._after_fork)  # a forked child closes its own pool, never the parent's
        with self._renew_lock:
            self._closed = True
            pool = self._pool
        for attempt in list(self._server_tries):
            attempt.cancel()  # may be waiting connect_timeout on a silent server
        if self._opened:
            await pool.close(timeout=CLOSE_WAIT)
        for task in list(self._background):
            await task

    async def __aenter__(self) -> AsyncPostgresDatabase:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    # -- checkout ----------------------------------------------------------------------

    async def _checkout(self, *, ping: bool = False) -> Any:
        """A live connection from the pool, counted in the statistics.

        The common case stays inline (one ``getconn``, the cheap liveness test); the
        rest - a connection to ping, an outage, a closed pool - goes to ``_acquire``.
        """
        if self._closed:
            self._check_open()
        if self._fork_epoch != FORK.epoch:
            adopt(self, self._after_fork)
        if not self._opened:
            await self.open()
        stats = self._stats
        started = stats.checkout_started()
        deadline = monotonic() + self._timeout
        try:
            pool = self._pool
            raw = None
            if self._monitor.up:
                try:
                    raw = await pool.getconn(self._timeout)
                except PoolTimeout:
                    if self._monitor.still_up():
                        raise
                except PoolClosed:
                    self._check_open()
            if raw is None:
                raw = await self._acquire(deadline, ping)
            elif ping or (self._pre_ping and (monotonic() - raw._sdb_used > self._window or raw._sdb_readable(0))):
                raw = await self._acquire(deadline, ping, raw, pool)
            else:
                raw._sdb_pool = pool
        except PoolTimeout as exc:
            raise self._exhausted(started) from exc
        except BaseException:
            stats.checkout_failed(started, timed_out=False)
            raise
        stats.checkout_done(started)
        return raw

    async def _acquire(self, deadline: float, ping: bool, raw: Any = None, pool: Any = None) -> Any:
        """Get a connection (unless given one) and check it; retry past dead ones until ``deadline``."""
        while True:
            if raw is None:
                if self._monitor.up:
                    pool = self._pool
                    try:
                        raw = await pool.getconn(max(deadline - monotonic(), 0.001))
                    except PoolTimeout:
                        if self._monitor.still_up():
                            raise
                        continue  # the server went away while we waited: report that, not exhaustion
                    except PoolClosed:
                        self._check_open()
                        continue
                else:
                    pool, raw = await self._acquire_cold(deadline)
            if ping or (self._pre_ping and (monotonic() - raw._sdb_used > self._window or raw._sdb_readable(0))):
                try:
                    with round_trip_cap(self._ping_budget):  # no answer in time: a dead connection
                        await _check_connection(raw)
                except Exception:
                    await self._discard(raw, pool)
                    raw = None
                    continue
                except BaseException:
                    # Cancelled mid-ping: the connection's state is unknown; close it, return the slot.
                    raw.pgconn.finish()
                    self._spawn(pool.putconn(raw))
                    raise
            raw._sdb_pool = pool
            return raw

    async def _acquire_cold(self, deadline: float) -> tuple[AsyncConnectionPool[Any], Any]:
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
                return pool, await pool.getconn(max(wait, 0.001))
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
            await self._verify(deadline, pool)
            verified = True

    async def _verify(self, deadline: float, pool: AsyncConnectionPool[Any]) -> None:
        kwargs = self._direct_kwargs(deadline - monotonic())
        try:
            conn = await self._conn_class.connect(self._settings.conninfo, **kwargs)
        except psycopg.Error as exc:
            raise self._error(exc, connecting=True) from exc
        await conn.close()
        await self._renew(pool)

    def _after_fork(self) -> Any:
        """In a forked child: a pool of its own, opened in the child's event loop on first use.
        The inherited one (bound to the parent's loop) goes back to core, never closed."""
        inherited = self._reset_after_fork()
        self._background = set()
        self._server_tries = set()
        self._loop = None
        self._opened = False
        self._pool = self._new_pool()
        return inherited

    def _try_server_in_background(self, pool: AsyncConnectionPool[Any]) -> None:
        """The async twin of the sync class's: a task tries the server and renews the pool."""
        if not self._claim_server_try():
            return

        async def attempt() -> None:
            try:
                budget = self._settings.connect_timeout or 10
                conn = await psycopg.AsyncConnection.connect(self._settings.conninfo, **self._direct_kwargs(budget))
            except psycopg.Error:
                log.debug("database %r: the server does not answer yet", self._name, exc_info=True)
                return
            await conn.close()
            await self._renew(pool)

        task = asyncio.ensure_future(attempt())
        self._server_tries.add(task)
        task.add_done_callback(self._server_tries.discard)

    async def _renew(self, old: AsyncConnectionPool[Any]) -> None:
        with self._renew_lock:
            if self._pool is not old or self._closed:
                return
            self._pool = new = self._new_pool()
        await new.open(wait=False)
        log.info("database %r: the server answers again; reopened the connection pool", self._name)
        self._spawn(old.close(timeout=1.0))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _discard(self, raw: Any, pool: AsyncConnectionPool[Any]) -> None:
        self._stats.lost()
        self._monitor.suspect()
        try:
            await raw.close()
            await pool.putconn(raw)
        except Exception:
            log.debug("error while discarding a dead connection", exc_info=True)
        await self._clear_stale(pool, raw)

    async def _clear_stale(self, pool: AsyncConnectionPool[Any], raw: Any) -> None:
        if raw._sdb_created <= self._cleared_at:
            return
        self._cleared_at = monotonic()
        log.info("database %r: a pooled connection was dead; replacing the idle ones at once", self._name)
        clear: Any = getattr(pool, "drain", None) or pool.check  # drain(): psycopg_pool >= 3.3
        try:
            await clear()
        except Exception:
            log.debug("error while clearing the pool", exc_info=True)

    # -- release and transaction helpers ----------------------------------------------

    async def _release(self, raw: Any) -> None:
        self._stats.released()
        status = raw.pgconn.transaction_status
        if status in (_INTRANS, _INERROR):
            try:
                await raw.rollback()
            except psycopg.Error:
                log.debug("rollback on release failed", exc_info=True)
        raw._sdb_used = monotonic()
        broken = raw.broken
        pool = raw._sdb_pool
        try:
            await pool.putconn(raw)
        except Exception:
            log.debug("error while returning a connection to the pool", exc_info=True)
        if broken:
            await self._clear_stale(pool, raw)

    def _reclaim(self, raw: Any) -> None:
        """Return a connection whose wrapper was garbage-collected open (on the reaper thread)."""
        detail = "closed" if raw.closed else f"server pid {raw.info.backend_pid}"
        if not leaks.run_on_loop(self._loop, self._release(raw)):
            # Its event loop is gone, and with it the pool: close the socket, count it returned.
            self._stats.released()
            raw.pgconn.finish()
        leaks.warn_leak(self._name, detail)

    async def _rollback_and_release(self, raw: Any, reset: bool) -> None:
        try:
            if not raw.closed and raw.pgconn.transaction_status != _IDLE:
                await raw.rollback()
        except psycopg.Error:
            log.debug("rollback failed", exc_info=True)
        if reset:
            await self._reset_options(raw)
        await self._release(raw)

    async def _reset_options(self, raw: Any) -> None:
        if raw.closed or raw.pgconn.transaction_status != _IDLE:
            return
        try:
            await raw.set_isolation_level(self._default_isolation)
            await raw.set_read_only(None)
        except psycopg.Error:
            log.debug("could not reset the transaction options", exc_info=True)

    async def _probe(self, timeout_s: float) -> None:
        self._check_open()
        if not self._opened:
            await self.open()
        self._refuse_if_exhausted()
        if not self._monitor.up:
            try:
                conn = await self._conn_class.connect(self._settings.conninfo, **self._direct_kwargs(timeout_s))
            except psycopg.Error as exc:
                raise self._error(exc, connecting=True) from exc
            await conn.close()
            return
        with round_trip_cap(timeout_s):  # the probe's round trips end with the health deadline
            raw = await self._checkout(ping=True)
        await asyncio.shield(self._release(raw))
