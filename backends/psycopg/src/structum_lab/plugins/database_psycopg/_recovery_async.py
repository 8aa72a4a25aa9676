"""Outages of the psycopg backend's pool: checkouts while the pool cannot connect, and dead
connections found at checkout.

A connection found dead clears the whole pool at once (``drain()``), so a server restart costs
one failed ping, not one per stale connection with psycopg_pool's 1 s, 2 s, 4 s back-off
between them. While the pool cannot connect, a checkout waits in short slices and reports
the real connection error; a pool stuck in its reconnection back-off is replaced as soon as
the server answers a connection of our own.
"""

from __future__ import annotations

import threading
from time import monotonic
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from structum_lab.plugins.database import Row, TransactionError
from structum_lab.plugins.database.kit import AsyncBackground, ConnectMonitor, Secrets, log, translate_error

from ._pool import COLD_RETRY, COLD_SLICE, COLD_VERIFY
from ._settings import PoolSettings

__all__ = ["AsyncPoolRecovery"]

AsyncRaw = AsyncConnection[Row]


class AsyncPoolRecovery:
    """The driver's outage handling; the driver sets these attributes and makes the pools."""

    settings: PoolSettings
    _name: str
    _secrets: Secrets
    _pool: AsyncConnectionPool[AsyncRaw]
    _monitor: ConnectMonitor
    _conn_class: type[AsyncRaw]
    _closed: bool
    _tries: AsyncBackground
    _chores: AsyncBackground

    def _new_pool(self) -> AsyncConnectionPool[AsyncRaw]:
        raise NotImplementedError

    def _recovery_reset(self) -> None:
        """A fresh state (at creation, and in a forked child: the lock may have been held by
        another thread at fork time)."""
        self._renew_lock = threading.Lock()
        self._cleared_at = 0.0
        self._server_tried = 0.0  # when the last background connection attempt of our own started
        self._dead_found = 0  # connections that failed the checkout ping

    async def verify_server(self, budget: float) -> None:
        conn = await self._conn_class.connect(self.settings.conninfo, **self._direct_kwargs(budget))
        await conn.close()

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
