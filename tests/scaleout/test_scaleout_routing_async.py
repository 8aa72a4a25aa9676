"""Reads on replicas, writes on the primary, on real servers: a throwaway primary and its
streaming replica (conftest.py). Each readonly transaction reports where it ran with
``pg_is_in_recovery()``: true on a hot standby, false on the primary."""

# sync-renames: connect_async=connect

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import psycopg
import pytest
from _servers import Pair, SlowProxy
from fake_servers import closed_port

from structum_lab.plugins.database import (
    AsyncConnection,
    AsyncReplicatedDatabase,
    ConnectionFailedError,
    HealthStatus,
    ProgrammingError,
    connect_async,
)


@pytest.fixture
async def opened() -> AsyncIterator[list[AsyncReplicatedDatabase]]:
    databases: list[AsyncReplicatedDatabase] = []
    yield databases
    for db in databases:
        await db.shutdown()


def open_router(
    opened: list[AsyncReplicatedDatabase], url: str, replicas: list[str], backend: str = "psycopg", **options: object
) -> AsyncReplicatedDatabase:
    options.setdefault("replica_check_interval", 0.1)
    db = connect_async(url, backend=backend, replicas=replicas, pool_size=2, **options)
    assert isinstance(db, AsyncReplicatedDatabase)
    opened.append(db)
    return db


async def served_by(conn: AsyncConnection) -> str:
    standby = await (await conn.execute("SELECT pg_is_in_recovery()")).scalar()
    return "replica" if standby else "primary"


async def read_where(db: AsyncReplicatedDatabase) -> str:
    async with db.transaction(readonly=True) as conn:
        return await served_by(conn)


async def test_reads_go_to_the_replica_and_writes_to_the_primary(
    pair: Pair, items: str, backend: str, opened: list[AsyncReplicatedDatabase]
) -> None:
    db = open_router(opened, pair.primary.url, [pair.replica.url], backend, read_your_writes="off")
    assert db.backend == backend and db.replicas[0].backend == backend  # the replica follows the primary's backend
    async with db.transaction(readonly=True) as conn:
        assert await served_by(conn) == "replica"
        assert db.in_transaction()
        async with db.transaction():  # nested: a savepoint of the replica's transaction
            assert await served_by(conn) == "replica"
        assert await (await db.execute("SELECT pg_is_in_recovery()")).scalar() is True  # joins it
    async with db.transaction() as conn:
        assert await served_by(conn) == "primary"
        await conn.execute(f"INSERT INTO {items} (n) VALUES (1)")
    assert not db.in_transaction()
    async with await db.get_connection(readonly=True) as conn:
        assert await served_by(conn) == "replica"
    async with await db.get_connection() as conn:
        assert await served_by(conn) == "primary"
        await conn.execute(f"INSERT INTO {items} (n) VALUES (2)")
    assert await (await db.execute("SELECT pg_is_in_recovery()")).scalar() is False  # db.execute: the primary
    async with db.transaction(readonly=True, isolation="serializable") as conn:
        assert await served_by(conn) == "primary"  # a hot standby refuses SERIALIZABLE
    async with db.transaction(isolation="repeatable_read", readonly=True) as conn:
        assert await served_by(conn) == "replica"

    # A write inside a readonly transaction fails on the replica, and is no failover.
    with pytest.raises(ProgrammingError) as failed:
        async with db.transaction(readonly=True) as conn:
            await conn.execute(f"INSERT INTO {items} (n) VALUES (3)")
    assert failed.value.sqlstate == "25006"
    assert db.get_pool_info()["failovers"] == 0


async def test_round_robin_and_lowest_latency(pair: Pair, opened: list[AsyncReplicatedDatabase]) -> None:
    far = SlowProxy(pair.replica.port, 0.02)
    try:
        # The far one first: a choice blind to latency would take it.
        replicas = [
            f"postgresql://postgres@127.0.0.1:{far.port}/postgres?application_name=far",
            f"{pair.replica.url}?application_name=near",
        ]

        async def served(db: AsyncReplicatedDatabase, reads: int) -> list[str]:
            names = []
            for _ in range(reads):
                async with db.transaction(readonly=True) as conn:
                    names.append(await (await conn.execute("SELECT current_setting('application_name')")).scalar())
            return names

        rotating = open_router(opened, pair.primary.url, replicas)
        assert await served(rotating, 6) in (["far", "near"] * 3, ["near", "far"] * 3)

        fastest = open_router(opened, pair.primary.url, replicas, replica_strategy="latency")
        await fastest.open()
        deadline = time.monotonic() + 10
        while not all(m["latency_ms"] is not None for m in fastest.get_pool_info()["members"]):
            assert time.monotonic() < deadline, "no latency measured"
            await read_where(fastest)
        assert set(await served(fastest, 10)) == {"near"}
        near, slow = fastest.get_pool_info()["members"][2], fastest.get_pool_info()["members"][1]
        assert near["latency_ms"] is not None and slow["latency_ms"] is not None
        assert near["latency_ms"] < slow["latency_ms"]
        for db in opened:
            await db.shutdown()  # before the proxy goes: its connections close cleanly
    finally:
        far.close()


async def test_a_stopped_replica_sends_reads_to_the_primary_until_it_is_back(
    pair: Pair, items: str, backend: str, opened: list[AsyncReplicatedDatabase]
) -> None:
    db = open_router(opened, pair.primary.url, [pair.replica.url], backend)
    assert await read_where(db) == "replica"
    pair.replica.stop()
    # No user call fails: the first read finds the replica gone before running anything, and
    # goes to the primary; later ones do not try it.
    assert [await read_where(db) for _ in range(20)] == ["primary"] * 20
    member = db.get_pool_info()["members"][1]
    assert member["state"] == "down" and not member["in_rotation"] and member["error"]
    health = await db.health_check()
    assert health.status is HealthStatus.DEGRADED and "1 of 1 replicas out of rotation" in health.message
    pair.replica.start()
    deadline = time.monotonic() + 15
    while await read_where(db) != "replica":
        assert time.monotonic() < deadline, "the replica did not come back into rotation"
    assert db.get_pool_info()["members"][1]["state"] == "up"
    assert (await db.health_check()).status is HealthStatus.HEALTHY


async def test_lag_is_reported_and_a_lagging_replica_leaves_the_rotation(
    pair: Pair, items: str, opened: list[AsyncReplicatedDatabase]
) -> None:
    db = open_router(opened, pair.primary.url, [pair.replica.url], replica_max_lag=0.5)
    assert await read_where(db) == "replica"
    pair.replica.set_delay("1500ms")
    with psycopg.connect(pair.primary.url, autocommit=True) as writer:  # another client keeps writing
        deadline = time.monotonic() + 10
        lag = 0.0
        n = 0
        while lag <= 0.5:
            assert time.monotonic() < deadline, "no lag reported"
            n += 1
            writer.execute(f"INSERT INTO {items} (n) VALUES ({n})")
            await asyncio.sleep(0.05)  # sync: time.sleep(0.05)
            lag = db.get_pool_info()["members"][1]["lag_s"] or 0.0
        member = db.get_pool_info()["members"][1]
        assert member["state"] == "lagging" and not member["in_rotation"]
        assert await read_where(db) == "primary"
        health = await db.health_check()
        assert health.status is HealthStatus.DEGRADED and "lagging" in health.message
        assert health.details["members"][1]["lag_s"] > 0.5
    pair.replica.set_delay("0")
    deadline = time.monotonic() + 15
    while await read_where(db) != "replica":
        assert time.monotonic() < deadline, "the replica did not catch up"
    assert db.get_pool_info()["members"][1]["lag_s"] == 0.0


async def test_no_replica_reachable_fallback_primary_or_error(
    pair: Pair, opened: list[AsyncReplicatedDatabase]
) -> None:
    gone = f"postgresql://postgres@127.0.0.1:{closed_port()}/postgres"
    lenient = open_router(opened, pair.primary.url, [gone], connect_timeout=2)
    assert await read_where(lenient) == "primary"
    assert lenient.get_pool_info()["members"][1]["state"] == "down"
    strict = open_router(opened, pair.primary.url, [gone], replica_fallback="error", connect_timeout=2)
    with pytest.raises(ConnectionFailedError, match="no replica can serve reads"):
        await read_where(strict)
    with pytest.raises(ConnectionFailedError, match="no replica can serve reads"):
        await read_where(strict)  # it stays out of rotation: refused at once
    async with strict.transaction() as conn:  # writes are not affected
        assert await served_by(conn) == "primary"
