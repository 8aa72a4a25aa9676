"""The psycopg driver: psycopg 3 connections from a ``psycopg_pool`` pool, verb by verb.

Checkout liveness, in the spirit of HikariCP: a connection used within the last
``pre_ping_window`` seconds (0.5 s) is handed out after a zero-round-trip test (is its
socket readable?); an older one is pinged (one round trip). Outages (a dead connection, a
pool that cannot connect) are ``_recovery_async``'s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from time import monotonic
from typing import Any, Final, cast

import psycopg
from psycopg import AsyncConnection, AsyncCursor, pq
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from structum_lab.plugins.database import PoolInfo, Row, kit
from structum_lab.plugins.database.kit import (
    ASYNC,
    AsyncBackground,
    Bound,
    ConnectMonitor,
    PoolExhausted,
    Secrets,
    log,
    needs_ping,
    round_trip_cap,
)
from structum_lab.plugins.database.kit_psycopg import (
    AsyncPsycopgDeadline,
    AsyncPsycopgNotifier,
    AsyncPsycopgRows,
    AsyncPsycopgVerbs,
    begun_query_async,
)

from ._pool import CLOSE_WAIT, TRANSLATOR, first_line, quiet_pool_log, stamp
from ._recovery_async import AsyncPoolRecovery
from ._settings import PoolSettings

__all__ = ["AsyncPsycopgDriver", "AsyncPsycopgRows", "AsyncRaw"]

AsyncRaw = AsyncConnection[Row]

_INTRANS = pq.TransactionStatus.INTRANS
_INERROR = pq.TransactionStatus.INERROR
_check_connection = AsyncConnectionPool.check_connection

FEATURES: Final = kit.Features(
    returning=True,
    copy=True,
    server_side_cursors=True,
    pipelining=True,
    listen_notify=True,
    transactional_ddl=True,
    autocommit=True,
    deferred_begin=True,
    fair_checkout=True,  # psycopg_pool hands a returned connection to the longest waiter
    aborted_state=True,
    detached_results=True,
)


def connection_class(monitor: ConnectMonitor, deadline: float | None, name: str) -> type[AsyncRaw]:
    """A ``psycopg`` connection subclass whose ``connect`` reports to ``monitor`` and whose
    waits for the server give up after ``deadline`` seconds (core's ``kit_psycopg``). An
    outage is logged once, when it starts, and once when it ends (psycopg_pool's own
    warning for every attempt is left out: see ``quiet_pool_log``)."""

    class AsyncStructumConnection(AsyncPsycopgDeadline, AsyncConnection[Row]):
        _sdb_deadline = deadline
        _sdb_created: float
        _sdb_used: float
        _sdb_readable: Callable[[int], list[Any]]
        _sdb_pool: Any

        @classmethod
        async def connect(cls, conninfo: str = "", **kwargs: Any) -> AsyncStructumConnection:
            started = monotonic()
            try:
                conn = await super().connect(conninfo, **kwargs)
            except Exception as exc:
                if monitor.failed(exc):
                    log.warning("database %r: cannot connect (%s); retrying in the background", name, first_line(exc))
                raise
            stamp(conn)
            if monitor.succeeded():
                log.warning("database %r: connected again", name)
            monitor.report("created", monotonic() - started)
            return conn

        async def close(self) -> None:
            if not self.closed:
                monitor.report("closed")
            await super().close()

    return AsyncStructumConnection


class AsyncPsycopgDriver(AsyncPoolRecovery, AsyncPsycopgVerbs[AsyncRaw]):
    """PostgreSQL through psycopg 3 and psycopg_pool (the transaction's state, savepoint
    rollback, streams, COPY and batches: core's ``AsyncPsycopgVerbs``)."""

    features = FEATURES
    errors = (psycopg.Error,)
    translator = TRANSLATOR
    loggers = kit.DRIVER_LOGGERS["psycopg"]  # psycopg_pool logs connection errors as they are
    on_connection = kit.ListenerOf("_monitor")

    def __init__(self, settings: PoolSettings, *, name: str, secrets: Secrets) -> None:
        s = self.settings = settings
        self._name = name
        self._secrets = secrets
        hint = f". This pool is sized with min_size={s.min_size} and max_size={s.max_size}: raise max_size"
        self.limits = kit.PoolLimits(
            size=s.min_size,
            max_size=s.max_size,
            timeout=s.timeout,
            pool_size=s.min_size,
            max_overflow=s.max_size - s.min_size,
            hint=hint if s.explicit_sizes else "",
        )
        self._timeout, self._pre_ping, self._window = s.timeout, s.pre_ping, s.pre_ping_window
        self._monitor = ConnectMonitor()
        quiet_pool_log()
        self._conn_class = connection_class(self._monitor, s.statement_deadline, name)
        self._closed = False
        self._tries = AsyncBackground()  # connection attempts, cancelled at close
        self._chores = AsyncBackground()  # pools being closed, waited for at close
        self._recovery_reset()
        self._pool = self._new_pool()

    def _new_pool(self) -> AsyncConnectionPool[AsyncRaw]:
        s = self.settings
        return AsyncConnectionPool(
            s.conninfo,
            connection_class=self._conn_class,
            kwargs=s.kwargs,
            min_size=s.min_size,
            max_size=s.max_size,
            open=False,  # sync: open=True,
            name=f"structum-{self._name}",
            timeout=s.timeout,
            max_lifetime=s.max_lifetime,
            max_idle=s.max_idle,
            reconnect_timeout=s.reconnect_timeout,
        )

    @property
    def pool(self) -> AsyncConnectionPool[AsyncRaw]:
        return self._pool

    # -- the pool ----------------------------------------------------------------------

    async def open(self) -> None:
        await self._pool.open(wait=False)

    async def close(self) -> None:
        with self._renew_lock:
            self._closed = True
            pool = self._pool
        self._tries.cancel()  # may be waiting connect_timeout on a silent server
        await pool.close(timeout=CLOSE_WAIT)
        await self._chores.wait()

    def after_fork(self) -> object:
        """A pool of its own for a forked child; the inherited one is returned, never closed."""
        inherited = self._pool
        self._tries.forget()
        self._chores.forget()
        self._recovery_reset()
        if not self._closed:  # a pool closed before the fork stays closed
            self._pool = self._new_pool()
        return inherited

    def pool_figures(self, checked_out: int) -> PoolInfo:
        pool = self._pool
        available, lost = 0, self._dead_found
        if not pool.closed:
            stats = pool.get_stats()
            available = stats.get("pool_available", 0)
            lost += stats.get("connections_lost", 0)
        low = self.settings.min_size
        total = checked_out + available
        return kit.pool_figures(checked_out, total, low, self.settings.max_size, min_size=low, connections_lost=lost)

    @property
    def pool_ready(self) -> bool:
        return self._monitor.up

    # -- checkout ----------------------------------------------------------------------

    def _stale(self, raw: Any) -> bool:
        """Whether a connection needs a ping before it is handed out."""
        return self._pre_ping and needs_ping(raw._sdb_used, raw._sdb_readable, self._window)

    async def acquire(self, *, ping: bool) -> AsyncRaw:
        """The common case stays inline (one ``getconn``, the cheap liveness test); the rest
        - a connection to ping, an outage, a closed pool - goes to ``_acquire``."""
        timeout = self._timeout
        deadline = monotonic() + timeout
        try:
            pool = self._pool
            raw: Any = None
            if self._monitor.up:
                try:
                    raw = await pool.getconn(timeout)
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
            raise PoolExhausted from exc
        return raw  # type: ignore[no-any-return]

    async def _acquire(self, deadline: float, ping: bool, raw: Any = None, pool: Any = None) -> AsyncRaw:
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
            if ping or self._stale(raw):
                try:
                    with round_trip_cap(self.settings.ping_budget):  # no answer in time: a dead connection
                        await _check_connection(raw)
                except Exception:
                    await self._discard(raw, pool)
                    raw = None
                    continue
                except BaseException:
                    # Interrupted mid-ping: the connection's state is unknown; close it, return the slot.
                    raw.pgconn.finish()
                    if ASYNC:  # ASYNC
                        self._chores.spawn(pool.putconn, raw)
                    else:
                        pool.putconn(raw)
                    raise
            raw._sdb_pool = pool
            return raw  # type: ignore[no-any-return]

    async def release(self, raw: AsyncRaw) -> None:
        if raw.pgconn.transaction_status in (_INTRANS, _INERROR):
            try:
                await raw.rollback()
            except psycopg.Error:
                log.debug("rollback on release failed", exc_info=True)
        conn: Any = raw
        conn._sdb_used = monotonic()
        broken = raw.broken
        pool = conn._sdb_pool
        try:
            await pool.putconn(raw)
        except Exception:
            log.debug("error while returning a connection to the pool", exc_info=True)
        if broken:
            await self._clear_stale(pool, raw)

    def describe(self, raw: AsyncRaw) -> str:
        return "closed" if raw.closed else f"server pid {raw.info.backend_pid}"

    def abandon(self, raw: AsyncRaw) -> None:
        raw.pgconn.finish()

    # -- transactions and statements ---------------------------------------------------

    async def execute_begun(self, raw: AsyncRaw, begin: str, sql: str, params: Bound) -> AsyncPsycopgRows:
        """BEGIN and the first statement as one simple-protocol message, the values bound
        by psycopg on the client (core's ``begun_query``). Later statements bind on the
        server. docs/transactions.md says what a program can tell apart."""
        cursor: AsyncCursor[Row] = raw.cursor()
        await cursor.execute(begun_query_async(raw, begin, sql, params))
        cursor.nextset()  # past BEGIN's result, to the statement's
        return AsyncPsycopgRows(cursor)

    def _pg(self, raw: AsyncRaw) -> AsyncRaw:
        return raw

    async def commit(self, raw: AsyncRaw) -> None:
        await raw.commit()

    async def rollback(self, raw: AsyncRaw) -> None:
        await raw.rollback()

    async def autocommit(self, raw: AsyncRaw, enabled: bool) -> None:
        return None  # the connections are in autocommit mode: the engine writes BEGIN itself

    async def command(self, raw: AsyncRaw, sql: str) -> None:
        await raw.execute(sql, prepare=False)

    async def execute(self, raw: AsyncRaw, sql: str, params: Bound) -> AsyncPsycopgRows:
        cursor = raw.cursor()
        await cursor.execute(sql, params)  # None: no parameters (a '%' is not parsed)
        return AsyncPsycopgRows(cursor)

    async def notifier(self) -> AsyncPsycopgNotifier:
        s = self.settings
        return AsyncPsycopgNotifier(await self._conn_class.connect(s.conninfo, **{**s.kwargs, "autocommit": True}))

    async def executemany(self, raw: AsyncRaw, sql: str, param_sets: Sequence[Bound]) -> int:
        cursor = raw.cursor()
        await cursor.executemany(sql, cast("Any", param_sets))
        return cursor.rowcount

    def unwrap_error(self, exc: BaseException, raw: AsyncRaw | None) -> tuple[BaseException, bool]:
        return exc, raw is not None and raw.broken

    def connection_lost(self) -> None:
        self._monitor.suspect()  # the server may be restarting: checkouts wait for a fresh outcome
