"""The psycopg workloads: psycopg_pool against the psycopg backend."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

try:
    from structum_lab.plugins.database import AsyncPostgresDatabase, PostgresDatabase
except Exception:  # pragma: no cover - the psycopg backend is optional
    PostgresDatabase = AsyncPostgresDatabase = None  # type: ignore[assignment,misc]

from workloads import POOLED_TX_BY_HAND, Scale, Workload, _threads, _timed, _wait_note

# --- psycopg -------------------------------------------------------------------------------------


def psycopg_workloads(url: str, scale: Scale) -> list[Workload]:
    if PostgresDatabase is None:
        return []
    work: list[Workload] = []
    users = scale.rows

    @contextlib.contextmanager
    def pools(size: int = 4) -> Iterator[tuple[ConnectionPool, Any]]:
        raw = ConnectionPool(url, min_size=size, max_size=size, open=True, kwargs={"row_factory": dict_row})
        raw.wait()
        layer = PostgresDatabase(url, pool_size=size, max_overflow=0)
        try:
            yield raw, layer
        finally:
            raw.close()
            layer.shutdown()

    def raw_pooled_tx(raw_pool: ConnectionPool) -> Callable[[], float]:
        """``BEGIN; SELECT 1; COMMIT`` as psycopg_pool runs it: 3 round trips."""

        def raw() -> float:
            def go() -> None:
                for _ in range(scale.tx):
                    with raw_pool.connection() as conn:
                        conn.execute("SELECT 1").fetchone()

            return _timed(go)

        return raw

    @contextlib.contextmanager
    def pooled_tx() -> Iterator[tuple[Callable[[], float], Callable[[], float]]]:
        with pools() as (raw_pool, db):

            def layer() -> float:
                def go() -> None:
                    for _ in range(scale.tx):
                        with db.transaction() as conn:
                            conn.execute("SELECT 1").fetchone()

                return _timed(go)

            yield raw_pooled_tx(raw_pool), layer

    # BEGIN travels with the first statement: 2 round trips against raw's 3 (issue 13).
    work.append(
        Workload("pooled_tx", "psycopg", "psycopg_pool", "tx/s", scale.tx, pooled_tx, 1.25, throughput_target=True)
    )

    @contextlib.contextmanager
    def pooled_tx_by_hand() -> Iterator[tuple[Callable[[], float], Callable[[], float]]]:
        """pooled_tx's ceiling: its two round trips written by hand on psycopg, no layer."""
        with pools() as (raw_pool, _db):
            autocommit = ConnectionPool(url, min_size=4, max_size=4, open=True, kwargs={"autocommit": True})
            autocommit.wait()

            def by_hand() -> float:
                def go() -> None:
                    for _ in range(scale.tx):
                        with autocommit.connection() as conn:
                            cursor = conn.execute("BEGIN;\nSELECT 1", prepare=False)
                            cursor.nextset()  # past BEGIN's result
                            cursor.fetchone()
                            conn.execute("COMMIT")

                return _timed(go)

            try:
                yield raw_pooled_tx(raw_pool), by_hand
            finally:
                autocommit.close()

    work.append(Workload(POOLED_TX_BY_HAND, "psycopg, no layer", "psycopg_pool", "tx/s", scale.tx, pooled_tx_by_hand))

    @contextlib.contextmanager
    def point_read() -> Iterator[tuple[Callable[[], float], Callable[[], float]]]:
        with pools() as (raw_pool, db):

            def raw() -> float:
                def go() -> None:
                    for i in range(scale.tx):
                        with raw_pool.connection() as conn:
                            conn.execute("SELECT * FROM bench_users WHERE id = %s", (i % users + 1,)).fetchone()

                return _timed(go)

            def layer() -> float:
                def go() -> None:
                    for i in range(scale.tx):
                        with db.transaction() as conn:
                            conn.execute("SELECT * FROM bench_users WHERE id = :id", {"id": i % users + 1}).fetchone()

                return _timed(go)

            yield raw, layer

    work.append(Workload("point_read", "psycopg", "psycopg_pool + dict_row", "reads/s", scale.tx, point_read, 1.05))

    @contextlib.contextmanager
    def single_read() -> Iterator[tuple[Callable[[], float], Callable[[], float]]]:
        with pools() as (raw_pool, db):

            def raw() -> float:
                def go() -> None:
                    for i in range(scale.tx):
                        with raw_pool.connection() as conn:
                            conn.execute("SELECT * FROM bench_users WHERE id = %s", (i % users + 1,)).fetchone()

                return _timed(go)

            def layer() -> float:
                def go() -> None:
                    for i in range(scale.tx):
                        db.execute("SELECT * FROM bench_users WHERE id = :id", {"id": i % users + 1}).fetchone()

                return _timed(go)

            yield raw, layer

    work.append(
        Workload(
            "single_read (db.execute)",
            "psycopg",
            "naive pool.connection() read (3 round trips)",
            "reads/s",
            scale.tx,
            single_read,
        )
    )

    @contextlib.contextmanager
    def fetch_rows() -> Iterator[tuple[Callable[[], float], Callable[[], float]]]:
        with pools() as (raw_pool, db):

            def raw() -> float:
                with raw_pool.connection() as conn:
                    return _timed(lambda: conn.execute("SELECT * FROM bench_users").fetchall() and None)

            def layer() -> float:
                with db.transaction() as conn:
                    return _timed(lambda: conn.execute("SELECT * FROM bench_users").fetchall() and None)

            yield raw, layer

    work.append(Workload(f"fetch_{users // 1000}k", "psycopg", "dict_row", "rows/s", users, fetch_rows, 1.10))

    rows = [(i, f"user{i}", f"user{i}@example.com", i % 100) for i in range(scale.rows)]
    dict_rows = [{"id": r[0], "u": r[1], "e": r[2], "s": r[3]} for r in rows]

    def truncate() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("TRUNCATE bench_bulk")

    @contextlib.contextmanager
    def executemany() -> Iterator[tuple[Callable[[], float], Callable[[], float]]]:
        with pools() as (raw_pool, db):

            def raw() -> float:
                truncate()
                with raw_pool.connection() as conn, conn.cursor() as cur:
                    return _timed(lambda: cur.executemany("INSERT INTO bench_bulk VALUES (%s, %s, %s, %s)", rows))

            def layer() -> float:
                truncate()
                with db.transaction() as conn:
                    return _timed(
                        lambda: conn.executemany("INSERT INTO bench_bulk VALUES (:id, :u, :e, :s)", dict_rows) and None
                    )

            yield raw, layer

    work.append(
        Workload(
            f"executemany_{scale.rows // 1000}k",
            "psycopg",
            "cursor.executemany",
            "rows/s",
            scale.rows,
            executemany,
            1.05,
        )
    )

    @contextlib.contextmanager
    def copy() -> Iterator[tuple[Callable[[], float], Callable[[], float]]]:
        with pools() as (raw_pool, db):

            def raw() -> float:
                truncate()

                def go() -> None:
                    with (
                        raw_pool.connection() as conn,
                        conn.cursor() as cur,
                        cur.copy("COPY bench_bulk (id, username, email, score) FROM STDIN") as cp,
                    ):
                        for r in rows:
                            cp.write_row(r)

                return _timed(go)

            def layer() -> float:
                truncate()

                def go() -> None:
                    with db.transaction() as conn:
                        conn.copy_records("bench_bulk", ["id", "username", "email", "score"], rows)

                return _timed(go)

            yield raw, layer

    work.append(
        Workload(
            f"copy_{scale.rows // 1000}k",
            "psycopg",
            "cursor.copy + write_row",
            "rows/s",
            scale.rows,
            copy,
            0.9,
            throughput_target=True,
        )
    )

    threads_notes: dict[str, str] = {}

    @contextlib.contextmanager
    def threads() -> Iterator[tuple[Callable[[], float], Callable[[], float]]]:
        with pools() as (raw_pool, db):

            def raw() -> float:
                def one(waits: list[float]) -> None:
                    for i in range(scale.thread_tx):
                        started = time.perf_counter()
                        with raw_pool.connection() as conn:
                            waits.append(time.perf_counter() - started)
                            conn.execute("SELECT * FROM bench_users WHERE id = %s", (i + 1,)).fetchone()

                elapsed, waits = _threads(one, 8)
                threads_notes["raw wait"] = _wait_note(waits)
                return elapsed

            def layer() -> float:
                def one(waits: list[float]) -> None:
                    for i in range(scale.thread_tx):
                        started = time.perf_counter()
                        with db.transaction() as conn:
                            waits.append(time.perf_counter() - started)
                            conn.execute("SELECT * FROM bench_users WHERE id = :id", {"id": i + 1}).fetchone()

                elapsed, waits = _threads(one, 8)
                threads_notes["layer wait"] = _wait_note(waits)
                threads_notes["layer pool max_wait_ms"] = str(db.get_pool_info().get("max_wait_ms"))
                return elapsed

            yield raw, layer

    work.append(
        Workload(
            "threads_8_pool_4", "psycopg", "psycopg_pool", "tx/s", 8 * scale.thread_tx, threads, notes=threads_notes
        )
    )

    @contextlib.contextmanager
    def async_tasks() -> Iterator[tuple[Callable[[], float], Callable[[], float]]]:
        loop = asyncio.new_event_loop()

        async def setup() -> tuple[AsyncConnectionPool, Any]:
            raw_pool = AsyncConnectionPool(url, min_size=10, max_size=10, open=False, kwargs={"row_factory": dict_row})
            await raw_pool.open(wait=True)
            return raw_pool, AsyncPostgresDatabase(url, pool_size=10, max_overflow=0)

        raw_pool, db = loop.run_until_complete(setup())

        async def run_raw() -> None:
            async def task(n: int) -> None:
                for i in range(scale.async_reads):
                    async with raw_pool.connection() as conn:
                        cur = await conn.execute("SELECT * FROM bench_users WHERE id = %s", ((n * 97 + i) % users + 1,))
                        await cur.fetchone()

            await asyncio.gather(*(task(n) for n in range(50)))

        async def run_layer() -> None:
            async def task(n: int) -> None:
                for i in range(scale.async_reads):
                    async with db.transaction() as conn:
                        result = await conn.execute(
                            "SELECT * FROM bench_users WHERE id = :id", {"id": (n * 97 + i) % users + 1}
                        )
                        await result.fetchone()

            await asyncio.gather(*(task(n) for n in range(50)))

        try:
            yield (
                lambda: _timed(lambda: loop.run_until_complete(run_raw())),
                lambda: _timed(lambda: loop.run_until_complete(run_layer())),
            )
        finally:
            loop.run_until_complete(raw_pool.close())
            loop.run_until_complete(db.shutdown())
            loop.close()

    work.append(
        Workload(
            "async_50_tasks_pool_10",
            "psycopg async",
            "AsyncConnectionPool",
            "reads/s",
            50 * scale.async_reads,
            async_tasks,
            1.05,
        )
    )

    health_notes: dict[str, str] = {}

    @contextlib.contextmanager
    def health() -> Iterator[tuple[Callable[[], float], Callable[[], float]]]:
        with pools() as (raw_pool, db):
            n = max(50, scale.tx // 20)

            def raw() -> float:
                def go() -> None:
                    for _ in range(n):
                        with raw_pool.connection() as conn:
                            conn.execute("SELECT 1")

                return _timed(go)

            def layer() -> float:
                latencies: list[float] = []
                elapsed = _timed(lambda: latencies.extend(db.health_check().latency_ms for _ in range(n)))
                health_notes["median latency_ms reported"] = f"{statistics.median(latencies):.3f}"
                return elapsed

            yield raw, layer

    work.append(
        Workload(
            "health_check",
            "psycopg",
            "pooled SELECT 1",
            "checks/s",
            max(50, scale.tx // 20),
            health,
            notes=health_notes,
        )
    )
    return work
