"""AsyncPostgresDatabase: the async API, concurrency without leaks, and cancellation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from fake_servers import Proxy, closed_port

from structum_lab.plugins.database import (
    AsyncPostgresDatabase,
    ConnectionFailedError,
    HealthStatus,
    IntegrityError,
    PoolTimeoutError,
    ProgrammingError,
    SupportsAsyncCopy,
    TransactionError,
    connect_async,
)


@pytest.fixture
def unopened(pg_schema_url: str) -> AsyncPostgresDatabase:
    """Built outside any event loop, as ``from_config()`` at import time would."""
    return AsyncPostgresDatabase(pg_schema_url, pool_size=5, max_overflow=0, pool_timeout=5)


@pytest.fixture
async def db(unopened: AsyncPostgresDatabase) -> AsyncIterator[AsyncPostgresDatabase]:
    async with unopened.transaction() as conn:
        await conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(50) NOT NULL UNIQUE)")
    yield unopened
    await unopened.shutdown()


def names(observer: Any) -> list[str]:
    return [r[0] for r in observer.execute("SELECT name FROM items ORDER BY id").fetchall()]


async def test_connect_async_gives_the_async_class(pg_url: str) -> None:
    db = connect_async(pg_url, pool_size=1)
    try:
        assert isinstance(db, AsyncPostgresDatabase)
        async with db.transaction() as conn:
            assert await (await conn.execute("SELECT 1 AS one")).scalar() == 1
    finally:
        await db.shutdown()


async def test_commit_rollback_and_savepoints(db: AsyncPostgresDatabase, observer: Any) -> None:
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO items (id, name) VALUES (:id, :name)", {"id": 1, "name": "a"})
        assert names(observer) == []
        with pytest.raises(IntegrityError):
            async with conn.transaction():
                await conn.execute("INSERT INTO items (id, name) VALUES ($1, $2)", [2, "a"])
        with pytest.raises(RuntimeError):
            async with db.transaction() as inner:  # nested: a savepoint of the same connection
                assert inner is conn and db.in_transaction()
                await inner.execute("INSERT INTO items (id, name) VALUES (%s, %s)", (3, "c"))
                raise RuntimeError
        await conn.execute("SAVEPOINT sp1")
        try:
            await conn.execute("INSERT INTO items (id, name) VALUES (4, 'a')")
        except IntegrityError:
            await conn.execute("ROLLBACK TO SAVEPOINT sp1")
        await conn.execute("INSERT INTO items (id, name) VALUES (5, 'e')")
    assert names(observer) == ["a", "e"]
    with pytest.raises(KeyError):
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO items (id, name) VALUES (6, 'f')")
            raise KeyError
    assert names(observer) == ["a", "e"]
    assert db.get_pool_info()["checked_out"] == 0


async def test_aborted_transaction_is_not_reported_as_committed(db: AsyncPostgresDatabase, observer: Any) -> None:
    with pytest.raises(TransactionError, match="rolled back, not committed"):
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO items (id, name) VALUES (1, 'a')")
            with pytest.raises(IntegrityError):
                await conn.execute("INSERT INTO items (id, name) VALUES (2, 'a')")
    assert names(observer) == []


async def test_results(db: AsyncPostgresDatabase) -> None:
    async with db.transaction() as conn:
        assert isinstance(conn, SupportsAsyncCopy)
        assert await conn.executemany("INSERT INTO items (id, name) VALUES (:id, :n)", [{"id": 1, "n": "a"}]) == 1

        async def rows() -> AsyncIterator[tuple[int, str]]:
            for i in range(2, 8):
                yield i, f"n{i}"

        assert await conn.copy_records("items", ["id", "name"], rows()) == 6
        result = await conn.execute("SELECT id, name FROM items ORDER BY id")
        assert result.rowcount == 7 and result.keys() == ["id", "name"]
        first = await result.fetchone()
        assert first == {"id": 1, "name": "a"} and first[0] == 1
        assert [r["id"] for r in await result.fetchmany(size=2)] == [2, 3]
        assert [r["id"] async for r in result] == [4, 5, 6, 7]
        assert await result.fetchone() is None and await result.fetchall() == []
        await conn.execute("SELECT name FROM items WHERE id = :id", {"id": 3})
        assert await conn.fetchone() == {"name": "n3"}
        assert await (await conn.execute("SELECT 1 AS a, 2 AS a")).scalar() == 1
        updated = await conn.execute("UPDATE items SET name = name || '!' WHERE id > 5")
        assert updated.rowcount == 2
        with pytest.raises(ProgrammingError, match="rowcount"):
            await updated.fetchall()


async def test_get_connection(db: AsyncPostgresDatabase, observer: Any) -> None:
    conn = await db.get_connection()
    try:
        await conn.execute("INSERT INTO items (id, name) VALUES (1, 'committed')")
        await conn.commit()
        await conn.execute("INSERT INTO items (id, name) VALUES (2, 'rolled back')")
        await conn.rollback()
        assert db.get_pool_info()["checked_out"] == 1
    finally:
        await conn.close()
    await conn.close()
    async with await db.get_connection() as conn2:
        await conn2.execute("INSERT INTO items (id, name) VALUES (3, 'ctx')")
    assert names(observer) == ["committed", "ctx"]
    assert db.get_pool_info()["checked_out"] == 0
    with pytest.raises(TransactionError, match="transaction has ended"):
        await conn.execute("SELECT 1")


async def test_isolation_and_readonly(db: AsyncPostgresDatabase) -> None:
    async with db.transaction(isolation="serializable", readonly=True) as conn:
        assert await (await conn.execute("SHOW transaction_isolation")).scalar() == "serializable"
        assert await (await conn.execute("SHOW transaction_read_only")).scalar() == "on"
    with pytest.raises(ProgrammingError, match="read-only"):
        async with db.transaction(readonly=True) as conn:
            await conn.execute("INSERT INTO items (id, name) VALUES (1, 'x')")
    for _ in range(6):
        async with db.transaction() as conn:
            assert await (await conn.execute("SHOW transaction_read_only")).scalar() == "off"


async def test_fifty_concurrent_tasks_on_a_pool_of_five_leak_nothing(db: AsyncPostgresDatabase, observer: Any) -> None:
    peak = 0

    async def task(n: int) -> None:
        nonlocal peak
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO items (id, name) VALUES (:id, :name)", {"id": n, "name": f"t{n}"})
            peak = max(peak, db.get_pool_info()["checked_out"])
            await conn.execute("SELECT pg_sleep(0.01)")

    await asyncio.gather(*(task(n) for n in range(50)))
    info = db.get_pool_info()
    assert info["checked_out"] == 0 and info["total"] <= 5 and peak == 5
    assert info["timeouts"] == 0 and info["checkouts"] >= 51
    assert observer.execute("SELECT COUNT(*) FROM items").fetchone() == (50,)


async def test_cancelled_task_rolls_back_and_leaves_the_pool_healthy(
    db: AsyncPostgresDatabase, observer: Any, pg_url: str
) -> None:
    started = asyncio.Event()

    async def in_query() -> None:
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO items (id, name) VALUES (1, 'never')")
            started.set()
            await conn.execute("SELECT pg_sleep(30)")  # cancelled while the server runs this

    async def in_python() -> None:
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO items (id, name) VALUES (2, 'never either')")
            await asyncio.sleep(30)

    for body in (in_query, in_python):
        started.clear()
        task = asyncio.create_task(body())
        if body is in_query:
            await asyncio.wait_for(started.wait(), 5)
            await asyncio.sleep(0.1)
        else:
            await asyncio.sleep(0.2)
        begun = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - begun < 5
        assert names(observer) == []
        assert db.get_pool_info()["checked_out"] == 0
    assert (await db.health_check()).status is HealthStatus.HEALTHY

    async def uses_a_connection() -> int:
        async with db.transaction() as conn:
            await conn.execute("SELECT pg_sleep(0.05)")
            return 1

    # Five at once: every pooled connection is usable.
    assert sum(await asyncio.gather(*(uses_a_connection() for _ in range(5)))) == 5
    with psycopg.connect(pg_url, autocommit=True) as admin:
        active = admin.execute(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%' AND state = 'active'"
        ).fetchone()
    assert active == (0,)  # the server-side query was cancelled too


async def test_cancellation_while_waiting_for_a_connection(db: AsyncPostgresDatabase) -> None:
    holders = [await db.get_connection() for _ in range(5)]
    waiter = asyncio.create_task(db.get_connection())
    await asyncio.sleep(0.1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    for conn in holders:
        await conn.close()
    info = db.get_pool_info()
    assert info["checked_out"] == 0 and info["requests_waiting"] == 0
    async with db.transaction() as conn:
        assert await (await conn.execute("SELECT 1 AS one")).scalar() == 1


async def test_exhaustion_and_degraded_health(pg_url: str) -> None:
    db = AsyncPostgresDatabase(pg_url, pool_size=1, max_overflow=0, pool_timeout=1.5)
    try:
        holder = await db.get_connection()
        started = time.monotonic()
        health = await db.health_check()
        assert time.monotonic() - started < 0.5 and health.status is HealthStatus.DEGRADED  # no pool wait
        with pytest.raises(PoolTimeoutError, match="Increase pool_size"):
            async with db.transaction():
                pass
        await holder.close()
        assert (await db.health_check()).status is HealthStatus.HEALTHY
        assert db.get_pool_info()["timeouts"] == 1
    finally:
        await db.shutdown()


async def test_unreachable_server() -> None:
    db = AsyncPostgresDatabase(f"postgresql://u:pw-async-7@127.0.0.1:{closed_port()}/x", health_check_timeout=2)
    try:
        started = time.monotonic()
        result = await db.health_check()
        assert result.status is HealthStatus.UNHEALTHY and "pw-async-7" not in result.message
        with pytest.raises(ConnectionFailedError, match="could not connect"):
            async with db.transaction():
                pass
        assert time.monotonic() - started < 2
    finally:
        await db.shutdown()


async def test_killed_connections_are_replaced(pg_url: str) -> None:
    db = AsyncPostgresDatabase(pg_url, pool_size=3, max_overflow=0, application_name="structum-async-kill")
    try:
        await db.open()
        await db.pool.wait(5)
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                "WHERE application_name = 'structum-async-kill'"
            )
        async with db.transaction() as conn:
            assert await (await conn.execute("SELECT 5 AS n")).scalar() == 5
        assert db.get_pool_info()["connections_lost"] >= 1
    finally:
        await db.shutdown()


async def test_server_outage_fails_fast_and_recovers_at_once(proxy: Proxy) -> None:
    db = AsyncPostgresDatabase(proxy.url(), pool_size=2, max_overflow=0, pool_timeout=10)
    try:
        await db.open()
        await db.pool.wait(5)
        proxy.down()
        started = time.monotonic()
        with pytest.raises(ConnectionFailedError, match="Connection refused"):
            async with db.transaction() as conn:
                await conn.execute("SELECT 1")
        assert time.monotonic() - started < 2
        assert (await db.health_check()).status is HealthStatus.UNHEALTHY
        await asyncio.sleep(1.5)  # the pool is backing off between reconnection attempts
        proxy.up()
        started = time.monotonic()
        async with db.transaction() as conn:
            assert await (await conn.execute("SELECT 7 AS n")).scalar() == 7
        assert time.monotonic() - started < 1
        assert (await db.health_check()).status is HealthStatus.HEALTHY
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        await db.shutdown()


async def test_shutdown_is_final_and_idempotent(unopened: AsyncPostgresDatabase) -> None:
    await unopened.shutdown()  # never opened
    await unopened.shutdown()
    with pytest.raises(TransactionError, match="shut down"):
        async with unopened.transaction():
            pass
    with pytest.raises(TransactionError, match="shut down"):
        await unopened.get_connection()


async def test_async_context_manager_opens_and_closes(pg_url: str) -> None:
    async with AsyncPostgresDatabase(pg_url, pool_size=1) as db:
        assert not db.pool.closed
        async with db.transaction() as conn:
            await conn.execute("SELECT 1")
    assert db.pool.closed
