"""Scenario 6, load: 16 threads (or 200 asyncio tasks) share a pool of 5 connections for a
fixed number of transactions. Each transaction inserts one unique key; afterwards every key
is in the table exactly once. Throughput, the client-side checkout wait (time from entering
``transaction()`` to the block running: p50, p99, max) and the pool's own ``max_wait_ms``
are reported; only generous sanity bounds are asserted (this is not a benchmark)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from structum_lab.plugins.database import SQLAlchemyDatabase

from ._workload import ASYNC_KINDS, SYNC_KINDS, app_name, open_db, percentile

THREADS = 16
TASKS = 200
TRANSACTIONS = 4_000
POOL = {"pool_size": 5, "max_overflow": 0, "pool_timeout": 30}


@pytest.fixture
def load_table(pg_url: str, table: str) -> Iterator[str]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        # No unique constraint: a transaction applied twice must show up as a duplicate.
        conn.execute(f"CREATE TABLE {table} (k integer NOT NULL, worker integer NOT NULL)")
    try:
        yield table
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


def _report(kind: str, elapsed: float, waits: list[float], info: Any) -> dict[str, float]:
    figures = {
        "tx_per_s": TRANSACTIONS / elapsed,
        "p50_ms": percentile(waits, 0.50) * 1000,
        "p99_ms": percentile(waits, 0.99) * 1000,
        "max_ms": max(waits) * 1000,
        "pool_max_wait_ms": float(info["max_wait_ms"]),
    }
    print(
        f"\n{kind}: {TRANSACTIONS} tx in {elapsed:.2f} s = {figures['tx_per_s']:.0f} tx/s; checkout wait "
        f"p50 {figures['p50_ms']:.2f} ms, p99 {figures['p99_ms']:.2f} ms, max {figures['max_ms']:.1f} ms "
        f"(pool max_wait_ms {figures['pool_max_wait_ms']:.1f})"
    )
    return figures


def _check_rows(count_by_key: list[tuple[int, int]]) -> None:
    keys = {k for k, _ in count_by_key}
    assert keys == set(range(TRANSACTIONS)), f"{TRANSACTIONS - len(keys)} transactions missing"
    assert all(n == 1 for _, n in count_by_key), "a transaction's effect is present more than once"


def _sync_load(db: Any, table: str) -> tuple[float, list[float]]:
    insert = f"INSERT INTO {table} (k, worker) VALUES (:k, :w)"
    per_worker = TRANSACTIONS // THREADS

    def worker(w: int) -> list[float]:
        waits = []
        for i in range(per_worker):
            asked = time.perf_counter()
            with db.transaction() as conn:
                waits.append(time.perf_counter() - asked)
                conn.execute(insert, {"k": w * per_worker + i, "w": w})
        return waits

    started = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        results = [f.result() for f in [pool.submit(worker, w) for w in range(THREADS)]]
    return time.perf_counter() - started, [wait for waits in results for wait in waits]


@pytest.mark.parametrize("kind", SYNC_KINDS)
def test_threads_on_a_small_pool(kind: str, pg_url: str, load_table: str) -> None:
    db = open_db(kind, pg_url, app_name("load"), **POOL)
    try:
        with db.transaction() as conn:  # connect before the clock starts
            conn.execute("SELECT 1")
        elapsed, waits = _sync_load(db, load_table)
        info = db.get_pool_info()
        figures = _report(kind, elapsed, waits, info)
        assert len(waits) == TRANSACTIONS
        assert info["checked_out"] == 0
        assert info["timeouts"] == 0
        assert info["total"] <= 5
        assert figures["max_ms"] < 30_000  # below pool_timeout: nobody starved into an error
    finally:
        db.shutdown()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        _check_rows(conn.execute(f"SELECT k, count(*) FROM {load_table} GROUP BY k").fetchall())


def test_threads_on_a_small_pool_mariadb(mysql_db_url: str) -> None:
    db = SQLAlchemyDatabase(mysql_db_url, **POOL)
    try:
        with db.transaction() as conn:
            conn.execute("CREATE TABLE load_rows (k integer NOT NULL, worker integer NOT NULL)")
        elapsed, waits = _sync_load(db, "load_rows")
        info = db.get_pool_info()
        _report("sqlalchemy-mariadb", elapsed, waits, info)
        assert info["checked_out"] == 0
        assert info["timeouts"] == 0
        with db.transaction() as conn:
            rows = conn.execute("SELECT k, count(*) AS n FROM load_rows GROUP BY k").fetchall()
        _check_rows([(int(r["k"]), int(r["n"])) for r in rows])
    finally:
        db.shutdown()


@pytest.mark.parametrize("kind", ASYNC_KINDS)
async def test_tasks_on_a_small_pool(kind: str, pg_url: str, load_table: str) -> None:
    db = open_db(kind, pg_url, app_name("load"), **POOL)
    insert = f"INSERT INTO {load_table} (k, worker) VALUES (:k, :w)"
    per_task = TRANSACTIONS // TASKS
    waits: list[float] = []

    async def task(w: int) -> None:
        for i in range(per_task):
            asked = time.perf_counter()
            async with db.transaction() as conn:
                waits.append(time.perf_counter() - asked)
                await conn.execute(insert, {"k": w * per_task + i, "w": w})

    try:
        async with db.transaction() as conn:
            await conn.execute("SELECT 1")
        started = time.perf_counter()
        await asyncio.gather(*(task(w) for w in range(TASKS)))
        elapsed = time.perf_counter() - started
        info = db.get_pool_info()
        figures = _report(kind, elapsed, waits, info)
        assert len(waits) == TRANSACTIONS
        assert info["checked_out"] == 0
        assert info["timeouts"] == 0
        assert info["total"] <= 5
        assert figures["max_ms"] < 30_000
    finally:
        await db.shutdown()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        _check_rows(conn.execute(f"SELECT k, count(*) FROM {load_table} GROUP BY k").fetchall())
