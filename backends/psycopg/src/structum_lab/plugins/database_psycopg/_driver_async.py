"""The psycopg driver: psycopg 3 connections from a ``psycopg_pool`` pool, verb by verb.

Checkout liveness, in the spirit of HikariCP: a connection used within the last
``pre_ping_window`` seconds (0.5 s) is handed out after a zero-round-trip test (is its
socket readable?); an older one is pinged (one round trip). A connection found dead
clears the whole pool at once (``drain()``), so a server restart costs one failed ping,
not one per stale connection with psycopg_pool's 1 s, 2 s, 4 s back-off between them.
While the pool cannot connect, a checkout waits in short slices and reports the real
connection error; a pool stuck in its reconnection back-off is replaced as soon as the
server answers a connection of our own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from time import monotonic
from typing import Any, Final, cast

import psycopg
from psycopg import AsyncConnection, AsyncCursor, pq
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from structum_lab.plugins.database import PoolInfo, Row, TransactionError
from structum_lab.plugins.database.kit import (
    ASYNC,
    DRIVER_LOGGERS,
    AsyncBackground,
    Bound,
    ConnectMonitor,
    Features,
    ListenerOf,
    PoolExhausted,
    PoolLimits,
    Secrets,
    log,
    needs_ping,
    pool_figures,
    round_trip_cap,
    translate_error,
)
from structum_lab.plugins.database.kit_psycopg import (
    AsyncPsycopgDeadline,
    AsyncPsycopgNotifier,
    AsyncPsycopgRows,
    AsyncPsycopgVerbs,
    begun_query_async,
)

from ._pool import (
    CLOSE_WAIT,
    COLD_RETRY,
    COLD_SLICE,
    COLD_VERIFY,
    TRANSLATOR,
    quiet_pool_log,
    stamp,
)
from ._pool import (
    first_line as _first_line,
)
from ._settings import PoolSettings

__all__ = ["AsyncPsycopgDriver", "AsyncPsycopgRows", "AsyncRaw"]

AsyncRaw = AsyncConnection[Row]

_INTRANS = pq.TransactionStatus.INTRANS
_INERROR = pq.TransactionStatus.INERROR
_check_connection = AsyncConnectionPool.check_connection

FEATURES: Final = Features(
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
                    log.warning("database %r: cannot connect (%s); retrying in the background", name, _first_line(exc))
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


class AsyncPsycopgDriver(AsyncPsycopgVerbs[AsyncRaw]):
    """PostgreSQL through psycopg 3 and psycopg_pool (the transaction's state, savepoint
    rollback, streams, COPY and batches: core's ``AsyncPsycopgVerbs``)."""

    features = FEATURES
    errors = (psycopg.Error,)
    translator = TRANSLATOR
    loggers = DRIVER_LOGGERS["psycopg"]  # psycopg_pool logs connection errors as they are
    on_connection = ListenerOf("_monitor")

    def __init__(self, settings: PoolSettings, *, name: str, secrets: Secrets) -> None:
        s = self.settings = settings
        self._name = name
        self._secrets = secrets
        hint = f". This pool is sized with min_size={s.min_size} and max_size={s.max_size}: raise max_size"
        self.limits = PoolLimits(
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
        self._renew_lock = threading.Lock()
        self._cleared_at = 0.0
        self._server_tried = 0.0  # when the last background connection attempt of our own started
        self._dead_found = 0  # connections that failed the checkout ping
        self._tries = AsyncBackground()  # connection attempts, cancelled at close
        self._chores = AsyncBackground()  # pools being closed, waited for at close
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
        self._renew_lock = threading.Lock()  # may have been held by another thread at fork time
        self._cleared_at = self._server_tried = 0.0
        self._dead_found = 0
        self._tries.forget()
        self._chores.forget()
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
        return pool_figures(checked_out, total, low, self.settings.max_size, min_size=low, connections_lost=lost)

    @property
    def pool_ready(self) -> bool:
        return self._monitor.up

    async def verify_server(self, budget: float) -> None:
        conn = await self._conn_class.connect(self.settings.conninfo, **self._direct_kwargs(budget))
        await conn.close()

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

    async def _acquire_cold(self, deadline: float) -> tuple[AsyncConnectionPool[AsyncRaw], AsyncRaw]:
        """Checkout while the pool has not (re)connected: short waits, real errors, no back-off."""
        verified = False
        started = monotonic()
        patience = min(COLD_VERIFY, (deadline - started) / 2)
        while True:
            pool = self._pool
            monitor = self._monitor
            now = monotonic()
            if now >= deadline:
                raise self._connect_error() from monitor.error
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
                raise self._connect_error() from monitor.error
            # The pool's last attempt failed: ask the server directly, and restart a pool stuck
            # in back-off.
            await self.verify_server(deadline - monotonic())
            await self._renew(pool)
            verified = True

    def _check_open(self) -> None:
        if self._closed:
            raise TransactionError(f"database {self._name!r} has been shut down; create a new one", backend="psycopg")

    def _connect_error(self) -> Exception:
        """Why no connection could be had: the last connection error, or the deadline."""
        error = self._monitor.error
        if error is not None:
            return translate_error(error, backend="psycopg", secrets=self._secrets, connecting=True)
        s = self.settings
        detail = f", connect_timeout={s.connect_timeout}" if s.connect_timeout else ""
        return psycopg.OperationalError(f"no connection could be opened within {s.timeout:g} s (pool_timeout{detail})")

    def _direct_kwargs(self, remaining: float) -> dict[str, Any]:
        """Connect arguments for a one-off connection that must answer within ``remaining`` s."""
        kwargs = dict(self.settings.kwargs)
        limit = self.settings.connect_timeout
        budget = max(2, int(remaining + 0.999))
        kwargs["connect_timeout"] = min(limit, budget) if limit else budget
        return kwargs

    def _try_server_in_background(self, pool: AsyncConnectionPool[AsyncRaw]) -> None:
        """The pool's attempts go unanswered (they may have started while the network was
        down): try the server in the background, and renew the pool if it answers. The caller
        keeps waiting on the pool, so a silent server still costs it only pool_timeout. At most
        one attempt per COLD_RETRY seconds."""
        with self._renew_lock:
            now = monotonic()
            if self._closed or now - self._server_tried < COLD_RETRY:
                return
            self._server_tried = now
        self._tries.spawn(self._try_server, pool, name="structum-db-try-server")

    async def _try_server(self, pool: AsyncConnectionPool[AsyncRaw]) -> None:
        try:
            # The plain class: its outcome must not reach the monitor before the pool is renewed.
            budget = self.settings.connect_timeout or 10
            conn = await AsyncConnection.connect(self.settings.conninfo, **self._direct_kwargs(budget))
        except psycopg.Error:
            log.debug("database %r: the server does not answer yet", self._name, exc_info=True)
            return
        await conn.close()
        await self._renew(pool)

    async def _renew(self, old: AsyncConnectionPool[AsyncRaw]) -> None:
        """Replace a pool that is waiting out its reconnection back-off now that the server answers."""
        with self._renew_lock:
            if self._pool is not old or self._closed:
                return
            self._pool = new = self._new_pool()
        await new.open(wait=False)
        log.info("database %r: the server answers again; reopened the connection pool", self._name)
        self._chores.spawn(old.close, 1.0, name="structum-pool-close")

    async def _discard(self, raw: Any, pool: AsyncConnectionPool[AsyncRaw]) -> None:
        """A connection failed its check: drop it, and every idle connection as old as it."""
        self._dead_found += 1
        self._monitor.suspect()
        try:
            await raw.close()
            await pool.putconn(raw)
        except Exception:
            log.debug("error while discarding a dead connection", exc_info=True)
        await self._clear_stale(pool, raw)

    async def _clear_stale(self, pool: AsyncConnectionPool[AsyncRaw], raw: Any) -> None:
        if raw._sdb_created <= self._cleared_at:
            return  # the pool was already cleared after this connection was made
        self._cleared_at = monotonic()
        log.info("database %r: a pooled connection was dead; replacing the idle ones at once", self._name)
        # psycopg_pool >= 3.3: drain() closes the idle connections and opens new ones;
        # before that, check() tests the idle ones and replaces the dead.
        clear: Any = getattr(pool, "drain", None) or pool.check
        try:
            await clear()
        except Exception:
            log.debug("error while clearing the pool", exc_info=True)

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
