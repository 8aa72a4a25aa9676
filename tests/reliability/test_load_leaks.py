"""Scenario 5, leaks: 10,000 mixed operations per backend - commits, exceptions and SQL errors
inside ``transaction()``, savepoints, ``get_connection()`` closed, rolled back or forgotten
(garbage-collected without ``close()``, also from inside a reference cycle), ``db.execute()``,
and on asyncio tasks cancelled at random points. Afterwards no connection is checked out,
every forgotten connection was rolled back, returned and reported, the rows are exactly
those of the transactions reported committed, and the server has exactly as many
connections for the pool's ``application_name`` as the pool says it holds."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from structum_lab.plugins.database import ProgrammingError, SQLAlchemyDatabase

from ._workload import ASYNC_KINDS, SYNC_KINDS, app_name, open_db, server_connections, wait_until

OPS = 10_000
SYNC_THREADS = 4
ASYNC_TASKS = 8
LEAK_TEXT = "garbage-collected without close()"
POOL = {"pool_size": 5, "max_overflow": 5, "pool_timeout": 10}


class Boom(Exception):
    """The application's own error, raised inside a transaction."""


@dataclass
class Tally:
    """What the workers did and what must therefore be in the table."""

    present: set[int] = field(default_factory=set)
    uncertain: set[int] = field(default_factory=set)  # cancelled while committing
    ops: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def did(self, op: str, key: int | None = None, *, uncertain: bool = False) -> None:
        with self.lock:
            self.ops[op] = self.ops.get(op, 0) + 1
            if key is not None:
                (self.uncertain if uncertain else self.present).add(key)


@pytest.fixture
def leak_table(pg_url: str, table: str) -> Iterator[str]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (k bigint NOT NULL, op text NOT NULL)")
    try:
        yield table
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


def _insert(table: str) -> str:
    return f"INSERT INTO {table} (k, op) VALUES (:k, :op)"


def _sync_worker(db: Any, table: str, seed: int, count: int, tally: Tally) -> None:
    rng = random.Random(seed)  # noqa: S311 - a reproducible mix, not cryptography
    insert = _insert(table)
    base = seed * 10_000_000
    for i in range(count):
        k = base + 2 * i
        op = rng.choices(
            ["commit", "raise", "sql_error", "savepoint", "with_conn", "rollback_close", "forget", "cycle", "execute"],
            weights=[30, 12, 8, 10, 10, 8, 10, 2, 10],
        )[0]
        if op == "commit":
            with db.transaction() as conn:
                conn.execute(insert, {"k": k, "op": op})
            tally.did(op, k)
        elif op == "raise":
            with pytest.raises(Boom), db.transaction() as conn:
                conn.execute(insert, {"k": k, "op": op})
                raise Boom
            tally.did(op)
        elif op == "sql_error":
            with pytest.raises(ProgrammingError), db.transaction() as conn:
                conn.execute(insert, {"k": k, "op": op})
                conn.execute("SELEC 1")
            tally.did(op)
        elif op == "savepoint":
            with db.transaction() as conn:
                conn.execute(insert, {"k": k, "op": op})
                with pytest.raises(Boom), conn.transaction():
                    conn.execute(insert, {"k": k + 1, "op": op})
                    raise Boom
            tally.did(op, k)
        elif op == "with_conn":
            with db.get_connection() as conn:
                conn.execute(insert, {"k": k, "op": op})
            tally.did(op, k)
        elif op == "rollback_close":
            conn = db.get_connection()
            conn.execute(insert, {"k": k, "op": op})
            conn.rollback()
            conn.close()
            tally.did(op)
        elif op == "forget":
            conn = db.get_connection()
            conn.execute(insert, {"k": k, "op": op})
            del conn  # never closed: the reaper must roll it back and return it
            tally.did(op)
        elif op == "cycle":
            holder: dict[str, Any] = {"conn": db.get_connection()}
            holder["self"] = holder  # only the cyclic collector frees it
            holder["conn"].execute(insert, {"k": k, "op": op})
            del holder
            gc.collect(1)  # what the collector does sooner or later; here at once, or the pool runs dry
            tally.did(op)
        else:
            assert db.execute(f"SELECT count(*) FROM {table} WHERE k = :k", {"k": k}).scalar() == 0
            tally.did(op)


async def _async_worker(db: Any, table: str, seed: int, count: int, tally: Tally) -> None:
    rng = random.Random(seed)  # noqa: S311 - a reproducible mix, not cryptography
    insert = _insert(table)
    base = seed * 10_000_000
    for i in range(count):
        k = base + 2 * i
        op = rng.choices(
            ["commit", "raise", "sql_error", "with_conn", "forget", "execute", "cancel_tx", "cancel_conn"],
            weights=[30, 12, 8, 10, 10, 10, 12, 8],
        )[0]
        if op == "commit":
            async with db.transaction() as conn:
                await conn.execute(insert, {"k": k, "op": op})
            tally.did(op, k)
        elif op == "raise":
            with pytest.raises(Boom):
                async with db.transaction() as conn:
                    await conn.execute(insert, {"k": k, "op": op})
                    raise Boom
            tally.did(op)
        elif op == "sql_error":
            with pytest.raises(ProgrammingError):
                async with db.transaction() as conn:
                    await conn.execute(insert, {"k": k, "op": op})
                    await conn.execute("SELEC 1")
            tally.did(op)
        elif op == "with_conn":
            async with await db.get_connection() as conn:
                await conn.execute(insert, {"k": k, "op": op})
            tally.did(op, k)
        elif op == "forget":
            conn = await db.get_connection()
            await conn.execute(insert, {"k": k, "op": op})
            del conn
            tally.did(op)
        elif op == "execute":
            result = await db.execute(f"SELECT count(*) FROM {table} WHERE k = :k", {"k": k})
            assert await result.scalar() == 0
            tally.did(op)
        else:
            task = asyncio.ensure_future(_cancellable(db, insert, k, op))
            await asyncio.sleep(rng.random() * 0.004)
            task.cancel()
            if rng.random() < 0.25:  # cancelled again while it cleans up (asyncio.timeout, TaskGroup)
                await asyncio.sleep(0)
                task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                tally.did(op + "_cancelled", k, uncertain=True)  # COMMIT may have been on its way
            else:
                tally.did(op + "_finished", k)


async def _cancellable(db: Any, insert: str, k: int, op: str) -> None:
    if op == "cancel_tx":
        async with db.transaction() as conn:
            await conn.execute(insert, {"k": k, "op": op})
            await conn.execute("SELECT pg_sleep(0.001)")
        return
    conn = await db.get_connection()
    try:
        await conn.execute(insert, {"k": k, "op": op})
        await conn.execute("SELECT pg_sleep(0.001)")
        await conn.commit()
    finally:
        await conn.close()


def _run_threads(count: int, work: Callable[[int], None]) -> None:
    """``work(seed)`` on ``count`` threads (seeds 1..count); a failure in any is raised here."""
    with ThreadPoolExecutor(count) as pool:
        for future in [pool.submit(work, seed) for seed in range(1, count + 1)]:
            future.result()


def _check(db: Any, *, url: str, table: str, app: str, tally: Tally, records: list[logging.LogRecord]) -> None:
    gc.collect()
    wait_until(lambda: db.get_pool_info()["checked_out"] == 0, what="every connection back in the pool")
    leaks = sum(tally.ops.get(op, 0) for op in ("forget", "cycle"))
    wait_until(lambda: sum(LEAK_TEXT in r.getMessage() for r in records) >= leaks, what="a warning per leak")
    assert sum(LEAK_TEXT in r.getMessage() for r in records) == leaks
    assert not [r for r in records if "non-checked-in connection" in r.getMessage()]  # SQLAlchemy's own rescue
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(f"SELECT k, count(*) FROM {table} GROUP BY k").fetchall()
    counts = {int(k): int(n) for k, n in rows}
    assert all(n == 1 for n in counts.values()), "a transaction's effect is present more than once"
    found = set(counts)
    assert tally.present <= found, f"{len(tally.present - found)} committed rows missing"
    unexpected = found - tally.present - tally.uncertain
    assert not unexpected, f"{len(unexpected)} rows of transactions not reported committed"
    info = db.get_pool_info()
    assert info["checked_out"] == 0
    assert info["timeouts"] == 0
    assert info["requests_waiting"] == 0  # cancelled waiters are not counted as still waiting
    wait_until(
        lambda: len(server_connections(app, url)) == db.get_pool_info()["total"],
        what="server connections == pool total",
    )


@pytest.mark.parametrize("kind", SYNC_KINDS)
def test_sync_leaks(kind: str, pg_url: str, leak_table: str, caplog: pytest.LogCaptureFixture) -> None:
    app = app_name("leak")
    caplog.set_level(logging.WARNING)
    db = open_db(kind, pg_url, app, **POOL)
    tally = Tally()
    started = time.perf_counter()
    try:
        _run_threads(SYNC_THREADS, lambda seed: _sync_worker(db, leak_table, seed, OPS // SYNC_THREADS, tally))
        elapsed = time.perf_counter() - started
        assert sum(tally.ops.values()) == OPS
        _check(db, url=pg_url, table=leak_table, app=app, tally=tally, records=caplog.records)
        info = db.get_pool_info()
        print(f"\n{kind}: {OPS} ops in {elapsed:.2f} s, {tally.ops}, pool {info}")
    finally:
        db.shutdown()


@pytest.mark.parametrize("kind", ASYNC_KINDS)
async def test_async_leaks(kind: str, pg_url: str, leak_table: str, caplog: pytest.LogCaptureFixture) -> None:
    app = app_name("leak")
    caplog.set_level(logging.WARNING)
    db = open_db(kind, pg_url, app, **POOL)
    tally = Tally()
    started = time.perf_counter()
    try:
        await asyncio.gather(
            *(_async_worker(db, leak_table, seed, OPS // ASYNC_TASKS, tally) for seed in range(1, ASYNC_TASKS + 1))
        )
        elapsed = time.perf_counter() - started
        assert sum(tally.ops.values()) == OPS
        # The reaper hands leaked connections back through this loop: keep it running while checking.
        await asyncio.to_thread(_check, db, url=pg_url, table=leak_table, app=app, tally=tally, records=caplog.records)
        info = db.get_pool_info()
        print(f"\n{kind}: {OPS} ops in {elapsed:.2f} s, {tally.ops}, pool {info}")
    finally:
        await db.shutdown()


@pytest.mark.parametrize("backend", ["sqlite", "mariadb"])
def test_sync_leaks_other_databases(
    backend: str, request: pytest.FixtureRequest, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The same mix, shorter, on SQLite (a file) and MariaDB through SQLAlchemy."""
    caplog.set_level(logging.WARNING)
    url = f"sqlite:///{tmp_path}/leaks.db" if backend == "sqlite" else str(request.getfixturevalue("mysql_db_url"))
    db = SQLAlchemyDatabase(url, **POOL)
    try:
        with db.transaction() as conn:
            conn.execute("CREATE TABLE leaks (k bigint NOT NULL, op varchar(20) NOT NULL)")
        tally = Tally()
        # SQLite allows one writer at a time: one thread there.
        threads = 1 if backend == "sqlite" else SYNC_THREADS
        _run_threads(threads, lambda seed: _sync_worker(db, "leaks", seed, 2_000 // threads, tally))
        gc.collect()
        wait_until(lambda: db.get_pool_info()["checked_out"] == 0, what="every connection back in the pool")
        leaks = tally.ops.get("forget", 0) + tally.ops.get("cycle", 0)
        wait_until(lambda: sum(LEAK_TEXT in r.getMessage() for r in caplog.records) >= leaks, what="warnings")
        with db.transaction() as conn:
            rows = conn.execute("SELECT k, count(*) AS n FROM leaks GROUP BY k").fetchall()
        counts = {int(r["k"]): int(r["n"]) for r in rows}
        assert set(counts) == tally.present
        assert set(counts.values()) <= {1}
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        db.shutdown()


@pytest.mark.parametrize("kind", SYNC_KINDS)
def test_forked_child_never_reclaims_the_parents_connection(kind: str, pg_url: str) -> None:
    """A child that drops a wrapper it inherited must not roll back or return the parent's
    connection (it shares the parent's socket); the parent goes on using it."""
    from structum_lab.plugins.database._engine import leaks as _leaks

    db = open_db(kind, pg_url, app_name("leak"), pool_size=1, max_overflow=0)
    try:
        conn = db.get_connection()
        conn.execute("SELECT 1")
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit status
            del conn
            gc.collect()
            os._exit(0 if _leaks._reaper.queue.empty() else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the child queued the parent's connection"
        assert conn.execute("SELECT 2 AS two").scalar() == 2  # the parent's session is intact
        conn.close()
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        db.shutdown()
