"""Pool figures and what they mean, exhaustion, health checks (an unreachable and a silent
server too, bounded in time), secret masking, shutdown, and concurrent callers."""

# sync-renames: test_tasks_get_their_own_transactions=test_threads_get_their_own_transactions

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time

import pytest

from ..._contract.errors import ConnectionFailedError, PoolTimeoutError, TransactionError
from ..._contract.health import HealthStatus
from ..._engine.flavour import ASYNC
from .base_async import AsyncKitBase
from .protocols_async import AsyncKitDatabase
from .support import SECRET, Opener, raises, silent_server, url_at

__all__ = ["AsyncPoolHealthTests"]


class AsyncPoolHealthTests(AsyncKitBase):
    """``get_pool_info()``, ``PoolTimeoutError``, ``health_check()``, ``shutdown()``."""

    async def test_pool_info_before_during_after(self, open_database: Opener[AsyncKitDatabase]) -> None:
        db = open_database(pool_size=2, max_overflow=1, pool_timeout=2)
        info = db.get_pool_info()
        assert info["checked_out"] == 0 and info["size"] == 2 and info["max_size"] == 3
        await self.settle_pool(db)
        idle = 2 if self.pool_prefills else 0  # pool_size opened at start, or on demand
        info = db.get_pool_info()
        assert (info["checked_out"], info["available"], info["total"], info["overflow"]) == (0, idle, idle, 0)
        async with db.transaction(), await db.get_connection() as second:
            await second.execute("SELECT 1")
            info = db.get_pool_info()
            assert info["checked_out"] == 2 and info["available"] == 0 and info["total"] == 2 and info["overflow"] == 0
            third = await db.get_connection()
            info = db.get_pool_info()
            assert info["checked_out"] == 3 and info["total"] == 3 and info["overflow"] == 1
            await third.close()
        info = db.get_pool_info()
        assert info["checked_out"] == 0
        assert info["available"] == info["total"] == (3 if self.pool_keeps_overflow else 2)
        assert info["checkouts"] == 3 and info["timeouts"] == 0 and info["requests_waiting"] == 0
        assert set(info) >= {"connections_lost", "max_wait_ms"}

    async def test_pool_exhaustion_raises_pool_timeout_with_advice(
        self, open_database: Opener[AsyncKitDatabase]
    ) -> None:
        db = open_database(pool_size=1, max_overflow=0, pool_timeout=0.5)
        holder = await db.get_connection()
        started = time.monotonic()
        async with raises(PoolTimeoutError) as info, db.transaction():
            pass
        elapsed = time.monotonic() - started
        assert 0.4 < elapsed < 3
        assert isinstance(info.value, TimeoutError) and info.value.backend == self.backend
        self.check_error("pool_timeout", info.value)
        message = str(info.value)
        assert "pool_size=1" in message and "max_overflow=0" in message and "Increase pool_size" in message
        assert "all 1 connections of database" in message
        await holder.close()
        async with db.transaction() as conn:  # fully usable again
            assert await (await conn.execute("SELECT 1 AS one")).scalar() == 1
        after = db.get_pool_info()
        assert after["checked_out"] == 0 and after["timeouts"] == 1 and after["max_wait_ms"] >= 400

    async def test_a_caller_that_stops_waiting_is_no_longer_counted_as_waiting(
        self, open_database: Opener[AsyncKitDatabase]
    ) -> None:
        """A checkout given up while it waits for a connection (a cancelled task; a thread
        that reached ``pool_timeout``) leaves ``requests_waiting`` as it found it."""
        db = open_database(pool_size=1, max_overflow=0, pool_timeout=1)
        holder = await db.get_connection()
        try:
            if ASYNC:  # ASYNC
                for _ in range(3):
                    waiter = asyncio.ensure_future(db.get_connection())
                    deadline = time.monotonic() + 5
                    while db.get_pool_info()["requests_waiting"] != 1:
                        assert time.monotonic() < deadline, "the checkout did not wait"
                        await asyncio.sleep(0.005)
                    waiter.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await waiter
            else:
                for _ in range(2):
                    with pytest.raises(PoolTimeoutError):
                        db.get_connection()  # type: ignore[unused-coroutine]
            assert db.get_pool_info()["requests_waiting"] == 0
        finally:
            await holder.close()
        async with db.transaction() as conn:  # the pool is whole: the holder's connection is lent again
            assert await (await conn.execute("SELECT 1 AS one")).scalar() == 1
        info = db.get_pool_info()
        assert info["requests_waiting"] == 0 and info["checked_out"] == 0

    async def test_health_check_healthy_with_latency(self, open_database: Opener[AsyncKitDatabase]) -> None:
        db = open_database()
        result = await db.health_check()
        assert result.status is HealthStatus.HEALTHY and result.message == "Database connection OK"
        assert 0 < result.latency_ms < 1000
        assert result.details["pool"]["checked_out"] == 0 and result.details["backend"] == self.backend
        await self.settle_pool(db)
        result = await db.health_check()  # now on a pooled connection
        assert result.status is HealthStatus.HEALTHY
        assert result.details["pool"]["checked_out"] == 0 and result.details["backend"] == self.backend

    async def test_health_check_against_a_closed_port_is_unhealthy_and_quick(
        self, open_database: Opener[AsyncKitDatabase], unreachable_url: str
    ) -> None:
        started = time.monotonic()
        async with open_database(unreachable_url, health_check_timeout=3) as db:
            assert time.monotonic() - started < 1  # construction never waits for the server
            result = await db.health_check()
            assert SECRET not in repr(db) and SECRET not in db.url
        assert time.monotonic() - started < 3
        assert result.status is HealthStatus.UNHEALTHY
        assert result.message.startswith("Database unreachable: could not connect")
        assert SECRET not in result.message and SECRET not in repr(result)

    async def test_health_check_deadline_holds_against_a_silent_server(
        self, open_database: Opener[AsyncKitDatabase], database_url: str
    ) -> None:
        with silent_server() as port:
            url = url_at(database_url, port, user="u", password="pw-silent-1", database="db")
            db = open_database(url, health_check_timeout=1)
            started = time.monotonic()
            result = await db.health_check()
            assert time.monotonic() - started < 1.8
        assert result.status is HealthStatus.UNHEALTHY
        assert "within 1 s" in result.message
        assert "pw-silent-1" not in result.message

    async def test_health_check_reports_degraded_when_pool_is_exhausted(
        self, open_database: Opener[AsyncKitDatabase]
    ) -> None:
        db = open_database(pool_size=1, max_overflow=0, pool_timeout=10)
        holder = await db.get_connection()
        started = time.monotonic()
        result = await db.health_check()
        assert time.monotonic() - started < 1  # does not wait behind the pool
        await holder.close()
        assert result.status is HealthStatus.DEGRADED
        assert "exhausted" in result.message
        assert (await db.health_check()).status is HealthStatus.HEALTHY

    async def test_unreachable_server_gives_connection_failed_error_quickly(
        self, open_database: Opener[AsyncKitDatabase], unreachable_url: str
    ) -> None:
        async with open_database(unreachable_url, pool_timeout=20) as db:
            started = time.monotonic()
            async with raises(ConnectionFailedError) as info, db.transaction():
                pass
            assert time.monotonic() - started < 2  # the real error, not a pool_timeout wait
            assert db.get_pool_info()["checked_out"] == 0
        assert "could not connect" in str(info.value) and SECRET not in str(info.value)
        assert info.value.backend == self.backend and info.value.__cause__ is not None
        self.check_error("unreachable", info.value)

    async def test_secrets_never_reach_messages_or_logs(
        self, open_database: Opener[AsyncKitDatabase], unreachable_url: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        db = open_database(unreachable_url, pool_timeout=5, health_check_timeout=3)
        async with raises(ConnectionFailedError) as info, db.transaction():
            pass
        result = await db.health_check()
        shown = {
            "repr(db)": repr(db),
            "db.url": db.url,
            "error": f"{info.value} {info.value!r}",
            "health": f"{result.message} {result!r}",
            "logs": caplog.text,
        }
        assert [where for where, text in shown.items() if SECRET in text] == []

    async def test_shutdown_is_final_and_idempotent(self, open_database: Opener[AsyncKitDatabase]) -> None:
        db = open_database(pool_size=1)
        async with db.transaction() as conn:
            await conn.execute("SELECT 1")
        await db.shutdown()
        await db.shutdown()
        async with raises(TransactionError, match="shut down"), db.transaction():
            pass
        with pytest.raises(TransactionError, match="shut down"):
            await db.get_connection()
        result = await db.health_check()
        assert result.status is HealthStatus.UNHEALTHY and "shut down" in result.message

    async def test_a_connection_lent_before_shutdown_is_closed_when_returned(
        self, open_database: Opener[AsyncKitDatabase]
    ) -> None:
        """shutdown(): "Connections still lent out are closed when they are returned" (the server
        session ends)."""
        if self.session_id_sql is None or self.session_alive_sql is None:
            pytest.skip("session_id_sql/session_alive_sql are not declared: the database has no server sessions")
        observer = open_database(pool_size=1)
        db = open_database(pool_size=1)
        lent = await db.get_connection()
        session = await (await lent.execute(self.session_id_sql)).scalar()
        await db.shutdown()
        gc.disable()  # only the product may close it: not the collector, behind the test's back
        try:
            await lent.close()  # a connection lent before shutdown can still be returned
            deadline = time.monotonic() + 2
            while alive := await (await observer.execute(self.session_alive_sql, {"id": session})).scalar():
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)  # sync: time.sleep(0.05)
            assert alive == 0, f"server session {session} is still open"
        finally:
            gc.enable()
            # A driver connection left open is collected here, while its event loop still runs.
            open_database.opened.remove(db)
            del db, lent
            gc.collect()

    async def test_tasks_get_their_own_transactions(self, open_database: Opener[AsyncKitDatabase], table: str) -> None:
        """Eight workers (asyncio tasks, or threads) at once on a pool of four."""
        db = open_database(pool_size=4, max_overflow=0)
        async with db.transaction() as conn:
            await conn.execute(f"CREATE TABLE {table} (n INT)")
        errors: list[BaseException] = []

        async def work(n: int) -> None:
            try:
                for i in range(25):
                    async with db.transaction() as c:
                        await c.execute(f"INSERT INTO {table} (n) VALUES (:n)", {"n": n * 100 + i})
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        if ASYNC:  # ASYNC
            await asyncio.gather(*(work(n) for n in range(8)))
        else:
            threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert errors == []
        async with db.transaction() as conn:
            assert await (await conn.execute(f"SELECT COUNT(DISTINCT n) FROM {table}")).scalar() == 200
        info = db.get_pool_info()
        assert info["checked_out"] == 0 and info["checkouts"] == 202 and info["total"] <= 4
