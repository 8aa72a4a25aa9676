"""The benchmark workloads, each as a pair of functions: raw driver and layer.

Each function performs a fixed amount of work and returns the seconds it took.
Both sides get the same pool size and settings, so only the layer differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from structum_lab.plugins.database import AsyncSQLAlchemyDatabase, SQLAlchemyDatabase

try:
    from structum_lab.plugins.database import AsyncPostgresDatabase, PostgresDatabase
except Exception:  # pragma: no cover - the psycopg backend is optional
    PostgresDatabase = AsyncPostgresDatabase = None  # type: ignore[assignment,misc]

NOTES = """\
Notes:
- `pooled_tx`: `BEGIN; SELECT 1; COMMIT` on a pooled connection (3 round trips both sides).
- `point_read`: one row by primary key as a dict, in a transaction; the layer takes `:id`
  with a dict, the raw driver its native style (`%s` for psycopg, `text()` for SQLAlchemy).
- `fetch_50k`: 50,000 rows as dict-like rows (psycopg `dict_row`; SQLAlchemy `.all()` rows).
- `executemany_50k` / `copy_50k`: 50,000 inserted rows (the pipelined `executemany`; COPY).
- `threads_8_pool_4`: 8 threads on a pool of 4, each running short transactions; the notes
  give the max and p99 wait for a connection on each side (starvation shows in the max).
- `async_50_tasks_pool_10`: 50 asyncio tasks on a pool of 10 doing point reads.
- `health_check`: the layer's `health_check()` vs one raw `SELECT 1` on a pooled connection.
- `single_read (db.execute)`: beyond the raw driver. The layer's `db.execute()` runs one
  statement in autocommit (1 round trip) where the naive raw code opens a transaction
  (BEGIN, SELECT, COMMIT: 3 round trips); a ratio below 1 is the gain.
- `client CPU per op`: this process's CPU time (all its threads) per operation, median of
  the repetitions. It leaves out the time the machine gives to other tenants, which on a
  shared VM swings single repetitions by 30 % or more (see the min-max of the ratios), so
  it is the steadier measure of what the layer itself costs.

Where the layer's cost goes on a pooled transaction (psycopg backend, `timeit` minimums
on the machine above, no I/O): checkout + release 13.0 us against psycopg_pool's
`getconn` + `putconn` 6.5 us, of which the pool statistics (counters under a lock, for
`get_pool_info()`) take 2.4 us and the zero-round-trip liveness test (`poll()` on the
socket) 1.2 us; the transaction-scope record 1.0 us; the connection wrapper 1.4 us; the
cached `:name` translation 1.0 us; `statement_deadline` about 1-2 us per round trip
(psycopg's own wait timeout; a watchdog lease on psycopg < 3.3). Everything else is the
driver's and the server's.

Why a target can be missed: the layer adds a few to a few tens of microseconds of client
CPU to operations that cost 230-550 us through the raw driver on this machine (see the
CPU column; that figure itself moves by 2x between runs here), so its true cost is a few
percent and the 1.05 targets sit inside that range. Part of it is work the raw driver
does not do: the liveness test at checkout (a dead connection is never handed out), the
pool statistics behind `get_pool_info()` and `statement_deadline`. A repetition's ratio
also swings by tens of percent on a shared 2-CPU VM (the min-max column, and the CPU
time stolen by other guests in the header), so a workload close to its target can land
on either side from one run to the next.
"""


#: Workloads of short operations: many short repetitions, so that a burst of noise from
#: the rest of the machine spoils a few pairs (and the median ignores them), not a few
#: long ones.
SHORT_WORKLOADS = frozenset(
    {"pooled_tx", "point_read", "single_read (db.execute)", "async_50_tasks_pool_10", "health_check"}
)


@dataclass
class Scale:
    reps: int
    short_reps: int
    tx: int
    rows: int
    thread_tx: int
    async_reads: int

    @classmethod
    def full(cls) -> Scale:
        return cls(reps=7, short_reps=21, tx=500, rows=50_000, thread_tx=250, async_reads=20)

    @classmethod
    def quick(cls) -> Scale:
        return cls(reps=3, short_reps=5, tx=300, rows=20_000, thread_tx=60, async_reads=10)

    def reps_for(self, workload: str) -> int:
        return self.short_reps if workload in SHORT_WORKLOADS else self.reps


@dataclass
class Workload:
    name: str
    backend: str
    raw_label: str
    unit: str
    ops: int
    context: Callable[[], contextlib.AbstractContextManager[tuple[Callable[[], float], Callable[[], float]]]]
    target: float | None = None
    throughput_target: bool = False
    notes: dict[str, str] = field(default_factory=dict)

    def extra(self) -> dict[str, str]:
        return self.notes


def server_version(url: str) -> str:
    with psycopg.connect(url) as conn:
        return "PostgreSQL " + str(conn.execute("SHOW server_version").fetchone()[0]).split()[0]  # type: ignore[index]


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _prepare_tables(url: str, rows: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_users, bench_bulk")
        conn.execute(
            "CREATE TABLE bench_users (id INT PRIMARY KEY, username TEXT NOT NULL, email TEXT NOT NULL, score INT)"
        )
        conn.execute(
            "INSERT INTO bench_users SELECT g, 'user' || g, 'user' || g || '@example.com', g %% 100 "
            "FROM generate_series(1, %s) g",
            (rows,),
        )
        conn.execute("CREATE TABLE bench_bulk (id INT, username TEXT, email TEXT, score INT)")
        conn.execute("ANALYZE bench_users")


# --- helpers shared by the thread workload --------------------------------------------------


def _threads(run_one: Callable[[list[float]], None], threads: int) -> tuple[float, list[float]]:
    waits: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        local: list[float] = []
        run_one(local)
        with lock:
            waits.extend(local)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    started = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return time.perf_counter() - started, waits


def _wait_note(waits: list[float]) -> str:
    if not waits:
        return "-"
    ordered = sorted(waits)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    return f"max {max(ordered) * 1000:.1f} ms, p99 {p99 * 1000:.2f} ms"


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

    @contextlib.contextmanager
    def pooled_tx() -> Iterator[tuple[Callable[[], float], Callable[[], float]]]:
        with pools() as (raw_pool, db):

            def raw() -> float:
                def go() -> None:
                    for _ in range(scale.tx):
                        with raw_pool.connection() as conn:
                            conn.execute("SELECT 1").fetchone()

                return _timed(go)

            def layer() -> float:
                def go() -> None:
                    for _ in range(scale.tx):
                        with db.transaction() as conn:
                            conn.execute("SELECT 1").fetchone()

                return _timed(go)

            yield raw, layer

    work.append(Workload("pooled_tx", "psycopg", "psycopg_pool", "tx/s", scale.tx, pooled_tx, 1.05))

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


def all_workloads(url: str, scale: Scale) -> list[Workload]:
    _prepare_tables(url, scale.rows)
    return psycopg_workloads(url, scale) + sqlalchemy_workloads(url, scale)
