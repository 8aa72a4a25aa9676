"""Pool figures, exhaustion, health checks, unreachable servers and shutdown: the same on
every backend, sync and asyncio. (psycopg's pool recovery details: tests/psycopg.)"""

# sync-renames: test_tasks_get_their_own_transactions=test_threads_get_their_own_transactions

from __future__ import annotations

import asyncio
import gc
import threading
import time

import pytest
from _flavours import Opener, raises
from fake_servers import SilentServer, closed_port

from structum_lab.plugins.database import ConnectionFailedError, HealthStatus, PoolTimeoutError, TransactionError
from structum_lab.plugins.database.kit import ASYNC


async def test_pool_info_before_during_after(open_db_async: Opener) -> None:
    db = open_db_async(pool_size=2, max_overflow=1, pool_timeout=2)
    info = db.get_pool_info()
    assert info["checked_out"] == 0 and info["size"] == 2 and info["max_size"] == 3
    if open_db_async.backend == "psycopg":
        # psycopg_pool opens min_size connections with the database, in the background ...
        assert info["min_size"] == 2
        await db.open()
        await db.pool.wait(5)
        idle = 2
    else:
        idle = 0  # ... SQLAlchemy's pool when they are first asked for
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
    # psycopg_pool keeps the overflow connection (until max_idle); SQLAlchemy closes it at once.
    assert info["available"] == info["total"] == (3 if open_db_async.backend == "psycopg" else 2)
    assert info["checkouts"] == 3 and info["timeouts"] == 0 and info["requests_waiting"] == 0
    assert set(info) >= {"connections_lost", "max_wait_ms"}


async def test_pool_exhaustion_raises_pool_timeout_with_advice(open_db_async: Opener) -> None:
    db = open_db_async(pool_size=1, max_overflow=0, pool_timeout=0.5)
    holder = await db.get_connection()
    started = time.monotonic()
    async with raises(PoolTimeoutError) as info, db.transaction():
        pass
    elapsed = time.monotonic() - started
    assert 0.4 < elapsed < 3
    assert isinstance(info.value, TimeoutError) and info.value.backend == open_db_async.backend
    if open_db_async.backend == "sqlalchemy":
        import sqlalchemy.exc

        assert isinstance(info.value, sqlalchemy.exc.TimeoutError)  # spec section 6.3
    message = str(info.value)
    assert "pool_size=1" in message and "max_overflow=0" in message and "Increase pool_size" in message
    assert "all 1 connections of database" in message
    await holder.close()
    async with db.transaction() as conn:  # fully usable again
        assert await (await conn.execute("SELECT 1 AS one")).scalar() == 1
    after = db.get_pool_info()
    assert after["checked_out"] == 0 and after["timeouts"] == 1 and after["max_wait_ms"] >= 400


async def test_health_check_healthy_with_latency(open_db_async: Opener) -> None:
    db = open_db_async()
    result = await db.health_check()
    assert result.status is HealthStatus.HEALTHY and result.message == "Database connection OK"
    assert 0 < result.latency_ms < 1000
    assert result.details["pool"]["checked_out"] == 0 and result.details["backend"] == open_db_async.backend
    if open_db_async.backend == "psycopg":
        await db.pool.wait(5)
    result = await db.health_check()  # now on a pooled connection
    assert result.status is HealthStatus.HEALTHY
    assert result.details["pool"]["checked_out"] == 0 and result.details["backend"] == open_db_async.backend


@pytest.mark.dialects("postgresql")
async def test_health_check_against_a_closed_port_is_unhealthy_and_quick(open_url_async: Opener) -> None:
    url = open_url_async.url_at(closed_port(), password="s3cr3t-pw")
    started = time.monotonic()
    async with open_url_async(url, health_check_timeout=3) as db:
        assert time.monotonic() - started < 1  # construction never waits for the server
        result = await db.health_check()
        assert "s3cr3t-pw" not in repr(db) and "s3cr3t-pw" not in db.url
    assert time.monotonic() - started < 3
    assert result.status is HealthStatus.UNHEALTHY
    assert result.message.startswith("Database unreachable: could not connect")
    assert "s3cr3t-pw" not in result.message and "s3cr3t-pw" not in repr(result)


@pytest.mark.dialects("postgresql")
async def test_health_check_deadline_holds_against_a_silent_server(
    open_url_async: Opener, silent_server: SilentServer
) -> None:
    url = open_url_async.url_at(silent_server.port, user="u", password="pw-silent-1", database="db")
    db = open_url_async(url, health_check_timeout=1)
    started = time.monotonic()
    result = await db.health_check()
    assert time.monotonic() - started < 1.8
    assert result.status is HealthStatus.UNHEALTHY
    assert "within 1 s" in result.message
    assert "pw-silent-1" not in result.message


async def test_health_check_reports_degraded_when_pool_is_exhausted(open_db_async: Opener) -> None:
    db = open_db_async(pool_size=1, max_overflow=0, pool_timeout=10)
    holder = await db.get_connection()
    started = time.monotonic()
    result = await db.health_check()
    assert time.monotonic() - started < 1  # does not wait behind the pool
    await holder.close()
    assert result.status is HealthStatus.DEGRADED
    assert "exhausted" in result.message
    assert (await db.health_check()).status is HealthStatus.HEALTHY


@pytest.mark.dialects("postgresql")
async def test_unreachable_server_gives_connection_failed_error_quickly(open_url_async: Opener) -> None:
    url = open_url_async.url_at(closed_port(), password="pw-123456", database="x")
    async with open_url_async(url, pool_timeout=20) as db:
        started = time.monotonic()
        async with raises(ConnectionFailedError) as info, db.transaction():
            pass
        assert time.monotonic() - started < 2  # the real error, not a pool_timeout wait
        assert db.get_pool_info()["checked_out"] == 0
    assert "could not connect" in str(info.value) and "pw-123456" not in str(info.value)
    if open_url_async.scheme.endswith("+asyncpg"):
        # asyncpg raises the OSError of connect(), which SQLAlchemy does not wrap.
        assert "Connect call failed" in str(info.value)
        assert isinstance(info.value.__cause__, ConnectionRefusedError)
        return
    assert "Connection refused" in str(info.value)  # libpq's words
    if open_url_async.backend == "psycopg":
        import psycopg

        assert isinstance(info.value.__cause__, psycopg.OperationalError)
    else:
        import sqlalchemy.exc

        assert isinstance(info.value.__cause__, sqlalchemy.exc.OperationalError)


async def test_shutdown_is_final_and_idempotent(open_db_async: Opener) -> None:
    db = open_db_async(pool_size=1)
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


SESSION_ID = {"postgresql": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}
SESSION_ALIVE = {
    "postgresql": "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = :id",
    "mysql": "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = :id",
}


@pytest.mark.dialects("postgresql", "mysql")
async def test_a_connection_lent_before_shutdown_is_closed_when_returned(open_db_async: Opener) -> None:
    """shutdown(): "Connections still lent out are closed when they are returned" (the server
    session ends)."""
    observer = open_db_async(pool_size=1)
    db = open_db_async(pool_size=1)
    lent = await db.get_connection()
    session = await (await lent.execute(SESSION_ID[open_db_async.dialect])).scalar()
    await db.shutdown()
    gc.disable()  # only the product may close it: not the collector, behind the test's back
    try:
        await lent.close()  # a connection lent before shutdown can still be returned
        deadline = time.monotonic() + 2
        while alive := await (await observer.execute(SESSION_ALIVE[open_db_async.dialect], {"id": session})).scalar():
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)  # sync: time.sleep(0.05)
        assert alive == 0, f"server session {session} is still open"
    finally:
        gc.enable()
        # A driver connection left open is collected here, while its event loop still runs.
        open_db_async.opened.remove(db)
        del db, lent
        gc.collect()


async def test_tasks_get_their_own_transactions(open_db_async: Opener, table: str) -> None:
    """Eight workers (asyncio tasks, or threads) at once on a pool of four."""
    db = open_db_async(pool_size=4, max_overflow=0)
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
