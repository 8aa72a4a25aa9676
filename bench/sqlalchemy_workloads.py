"""The SQLAlchemy workloads: SQLAlchemy itself against the SQLAlchemy backend."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator

import psycopg
import sqlalchemy as sa

from structum_lab.plugins.database import AsyncSQLAlchemyDatabase, SQLAlchemyDatabase

try:
    from structum_lab.plugins.database import AsyncPostgresDatabase, PostgresDatabase
except Exception:  # pragma: no cover - the psycopg backend is optional
    PostgresDatabase = AsyncPostgresDatabase = None  # type: ignore[assignment,misc]

from workloads import Scale, Workload, _threads, _timed, _wait_note

# --- SQLAlchemy ---------------------------------------------------------------------------------


def sqlalchemy_workloads(url: str, scale: Scale) -> list[Workload]:
    sa_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    users = scale.rows
    work: list[Workload] = []

    @contextlib.contextmanager
    def engines(size: int = 4) -> Iterator[tuple[sa.Engine, SQLAlchemyDatabase]]:
        raw = sa.create_engine(sa_url, pool_size=size, max_overflow=0, pool_pre_ping=True)
        layer = SQLAlchemyDatabase(sa_url, pool_size=size, max_overflow=0, pool_pre_ping=True)
        try:
            yield raw, layer
        finally:
            raw.dispose()
            layer.shutdown()

    select_one = sa.text("SELECT 1")
    by_id = sa.text("SELECT * FROM bench_users WHERE id = :id")

    @contextlib.contextmanager
    def pooled_tx() -> Iterator[tuple[Callable[[], float], Callable[[], float]]]:
        with engines() as (engine, db):

            def raw() -> float:
                def go() -> None:
                    for _ in range(scale.tx):
                        with engine.begin() as conn:
                            conn.execute(select_one).fetchone()

                return _timed(go)

            def layer() -> float:
                def go() -> None:
                    for _ in range(scale.tx):
                        with db.transaction() as conn:
                            conn.execute("SELECT 1").fetchone()

                return _timed(go)

            yield raw, layer

    work.append(Workload("pooled_tx", "sqlalchemy", "engine.begin() + text()", "tx/s", scale.tx, pooled_tx, 1.05))

    @contextlib.contextmanager
    def point_read() -> Iterator[tuple[Callable[[], float], Callable[[], float]]]:
        with engines() as (engine, db):

            def raw() -> float:
                def go() -> None:
                    for i in range(scale.tx):
                        with engine.begin() as conn:
                            conn.execute(by_id, {"id": i % users + 1}).mappings().fetchone()

                return _timed(go)

            def layer() -> float:
                def go() -> None:
                    for i in range(scale.tx):
                        with db.transaction() as conn:
                            conn.execute("SELECT * FROM bench_users WHERE id = :id", {"id": i % users + 1}).fetchone()

                return _timed(go)

            yield raw, layer

    work.append(Workload("point_read", "sqlalchemy", "text() + .mappings()", "reads/s", scale.tx, point_read, 1.05))

    @contextlib.contextmanager
    def single_read() -> Iterator[tuple[Callable[[], float], Callable[[], float]]]:
        with engines() as (engine, db):

            def raw() -> float:
                def go() -> None:
                    for i in range(scale.tx):
                        with engine.begin() as conn:
                            conn.execute(by_id, {"id": i % users + 1}).mappings().fetchone()

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
            "sqlalchemy",
            "naive engine.begin() read (3 round trips)",
            "reads/s",
            scale.tx,
            single_read,
        )
    )

    @contextlib.contextmanager
    def fetch_rows() -> Iterator[tuple[Callable[[], float], Callable[[], float]]]:
        with engines() as (engine, db):
            everything = sa.text("SELECT * FROM bench_users")

            def raw() -> float:
                with engine.begin() as conn:
                    return _timed(lambda: conn.execute(everything).all() and None)

            def layer() -> float:
                with db.transaction() as conn:
                    return _timed(lambda: conn.execute("SELECT * FROM bench_users").fetchall() and None)

            yield raw, layer

    work.append(Workload(f"fetch_{users // 1000}k", "sqlalchemy", ".all()", "rows/s", users, fetch_rows, 1.15))

    dict_rows = [{"id": i, "u": f"user{i}", "e": f"user{i}@example.com", "s": i % 100} for i in range(scale.rows)]
    insert = sa.text("INSERT INTO bench_bulk VALUES (:id, :u, :e, :s)")

    def truncate() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("TRUNCATE bench_bulk")

    @contextlib.contextmanager
    def executemany() -> Iterator[tuple[Callable[[], float], Callable[[], float]]]:
        with engines() as (engine, db):

            def raw() -> float:
                truncate()
                with engine.begin() as conn:
                    return _timed(lambda: conn.execute(insert, dict_rows) and None)

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
            "sqlalchemy",
            "execute(text(), list)",
            "rows/s",
            scale.rows,
            executemany,
            1.05,
        )
    )

    threads_notes: dict[str, str] = {}

    @contextlib.contextmanager
    def threads() -> Iterator[tuple[Callable[[], float], Callable[[], float]]]:
        with engines() as (engine, db):

            def raw() -> float:
                def one(waits: list[float]) -> None:
                    for i in range(scale.thread_tx):
                        started = time.perf_counter()
                        with engine.begin() as conn:
                            waits.append(time.perf_counter() - started)
                            conn.execute(by_id, {"id": i + 1}).mappings().fetchone()

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
            "threads_8_pool_4", "sqlalchemy", "QueuePool", "tx/s", 8 * scale.thread_tx, threads, notes=threads_notes
        )
    )

    @contextlib.contextmanager
    def async_tasks() -> Iterator[tuple[Callable[[], float], Callable[[], float]]]:
        from sqlalchemy.ext.asyncio import create_async_engine

        loop = asyncio.new_event_loop()
        engine = create_async_engine(sa_url, pool_size=10, max_overflow=0, pool_pre_ping=True)
        db = AsyncSQLAlchemyDatabase(sa_url, pool_size=10, max_overflow=0, pool_pre_ping=True)

        async def run_raw() -> None:
            async def task(n: int) -> None:
                for i in range(scale.async_reads):
                    async with engine.begin() as conn:
                        (await conn.execute(by_id, {"id": (n * 97 + i) % users + 1})).mappings().fetchone()

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
            loop.run_until_complete(engine.dispose())
            loop.run_until_complete(db.shutdown())
            loop.close()

    work.append(
        Workload(
            "async_50_tasks_pool_10",
            "sqlalchemy async",
            "AsyncEngine + text()",
            "reads/s",
            50 * scale.async_reads,
            async_tasks,
            1.05,
        )
    )

    health_notes: dict[str, str] = {}

    @contextlib.contextmanager
    def health() -> Iterator[tuple[Callable[[], float], Callable[[], float]]]:
        with engines() as (engine, db):
            n = max(50, scale.tx // 20)

            def raw() -> float:
                def go() -> None:
                    for _ in range(n):
                        with engine.connect() as conn:
                            conn.execute(select_one)

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
            "sqlalchemy",
            "pooled SELECT 1",
            "checks/s",
            max(50, scale.tx // 20),
            health,
            notes=health_notes,
        )
    )
    return work
