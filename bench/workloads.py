"""The benchmark workloads, each as a pair of functions: raw driver and layer.

Each function performs a fixed amount of work and returns the seconds it took.
Both sides get the same pool size and settings, so only the layer differs.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

try:
    from structum_lab.plugins.database import AsyncPostgresDatabase, PostgresDatabase
except Exception:  # pragma: no cover - the psycopg backend is optional
    PostgresDatabase = AsyncPostgresDatabase = None  # type: ignore[assignment,misc]

NOTES = """\
Notes:
- `pooled_tx`: `BEGIN; SELECT 1; COMMIT` on a pooled connection (raw: 3 round trips; on the
  psycopg backend BEGIN travels with the SELECT: 2, hence its target of 1.25x raw's throughput).
- `pooled_tx 2 round trips by hand`: `pooled_tx`'s ceiling: raw psycopg_pool (3 round trips)
  against the same transaction in 2 written by hand on an autocommit psycopg connection
  (`BEGIN; SELECT 1` as one message, then `COMMIT`), no layer.
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
- `tpcb_like`: pgbench's TPC-B-like transaction (UPDATE an account, SELECT its balance,
  UPDATE a teller and a branch, INSERT into the history; aid, tid, bid and delta drawn as
  pgbench draws them at scale 1), 4 threads on a pool of 4, in a database of its own set up
  with `pgbench -i -s 1` and dropped at the end (the history is truncated and the small tables
  vacuumed before every run of every side). The baseline is raw psycopg_pool, one statement
  per round trip; against it: pgbench, the C client (`pgbench -n -b tpcb-like -c 4 -j 4 -T
  <secs>`, its "tps ... without initial connection time"; its client CPU is the child's), the
  whole transaction as one simple-protocol message written by hand on an autocommit
  connection (`one message (by hand)`: the values bound by psycopg's `ClientCursor`; the
  ceiling of what pipelining can reach on the machine, the issue's "BEGIN; ...; COMMIT as
  one message"), the layer by default (the SELECT read with `.scalar()` inside the block) and with
  `transaction(pipeline=True)` (the SELECT's result read after the block, so nothing forces a
  flush before the end: BEGIN ... COMMIT can go in one round trip). A backend without
  pipelining runs that block statement by statement and the row says so. The pipeline rows
  also compare with pgbench, repetition by repetition (`vs pgbench` in the notes); their
  targets (>= 1.8x raw's throughput, >= 1.0x pgbench's) apply on the psycopg backend and on
  any backend whose `features.pipelining` is true.
- `observers`: `pooled_tx` (psycopg backend, pool of 4, half its transactions) without an
  observer and with each first-party one (bench/observer_workload.py): `logging` with its
  logger below DEBUG (the production case: one level check per event) and at DEBUG into a
  `NullHandler` (every record made), `prometheus` (a registry of its own), `opentelemetry`
  (the SDK, in-memory span exporter and metric reader). Each observer row's notes compare it
  with the `no observer` row: wall ratio and client CPU per operation (the steadier figure).
- `round trips per op`: counted in a separate short pass after the timed ones, not while
  timing: the same code of each side, run through a TCP proxy that counts the client's turns
  (one or more messages sent before it waits for the server), after a warm-up, divided by the
  operations (pgbench's: the difference between two runs of different lengths, so that its
  connection setup drops out).
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

Two targets of issue 13 were set from a machine where a round trip cost far more than the
client's work; they are measured against their ceiling here. `tpcb_like` with
`pipeline=True` cannot beat `one message (by hand)`, the same transaction in one round trip
with no layer at all: compare the two rows for how close it gets. `pooled_tx`'s ceiling is
the same two round trips by hand (`pooled_tx 2 round trips by hand`: `BEGIN; SELECT 1` as
one message, then `COMMIT`, on psycopg with no layer); where that row's throughput is below
1.25x raw's, the target cannot be met on the machine whatever the layer does.
"""


#: Workloads of short operations: many short repetitions, so that a burst of noise from
#: the rest of the machine spoils a few pairs (and the median ignores them), not a few
#: long ones.
#: pooled_tx's two round trips written by hand on psycopg: the ceiling of its target.
POOLED_TX_BY_HAND = "pooled_tx 2 round trips by hand"

SHORT_WORKLOADS = frozenset(
    {
        "pooled_tx",
        POOLED_TX_BY_HAND,
        "point_read",
        "single_read (db.execute)",
        "async_50_tasks_pool_10",
        "health_check",
        "observers",
    }
)


#: Workloads of a million rows a run: a few repetitions (``Scale.long_reps``) are enough.
LONG_WORKLOADS = frozenset({"stream_1m", "copy_out_1m"})


#: The transaction workloads whose round trips per operation are counted (tests/_roundtrips.py).
ROUND_TRIP_WORKLOADS = frozenset(
    {"pooled_tx", POOLED_TX_BY_HAND, "point_read", "single_read (db.execute)", "tpcb_like"}
)


@dataclass
class Scale:
    reps: int
    short_reps: int
    tx: int
    rows: int
    thread_tx: int
    async_reads: int
    tpcb_tx: int = 300  # TPC-B-like transactions per thread (4 threads)
    pgbench_secs: int = 1  # pgbench -T
    stream_rows: int = 1_000_000  # rows of stream_1m and copy_out_1m
    long_reps: int = 3  # repetitions of LONG_WORKLOADS

    @classmethod
    def full(cls) -> Scale:
        return cls(
            reps=7,
            short_reps=21,
            tx=500,
            rows=50_000,
            thread_tx=250,
            async_reads=20,
            tpcb_tx=400,
            pgbench_secs=1,
            stream_rows=1_000_000,
            long_reps=3,
        )

    @classmethod
    def quick(cls) -> Scale:
        return cls(
            reps=3,
            short_reps=5,
            tx=300,
            rows=20_000,
            thread_tx=60,
            async_reads=10,
            tpcb_tx=150,
            pgbench_secs=1,
            stream_rows=200_000,
            long_reps=3,
        )

    @classmethod
    def counting(cls) -> Scale:
        """The round-trip pass: a few operations of each side (they are counted, not timed)."""
        return cls(
            reps=1,
            short_reps=1,
            tx=20,
            rows=1_000,
            thread_tx=5,
            async_reads=2,
            tpcb_tx=10,
            pgbench_secs=1,
            stream_rows=2_000,
            long_reps=1,
        )

    def reps_for(self, workload: str) -> int:
        if workload in LONG_WORKLOADS:
            return self.long_reps
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


#: What a side of a multi-sided workload measured: wall seconds and client CPU seconds
#: (this process's, or a child's for pgbench) for the workload's ``ops`` operations.
Measured = tuple[float, float]


@dataclass
class Side:
    """One side of a multi-sided workload, compared with the workload's baseline."""

    backend: str
    run: Callable[[], Measured] | None = None
    skipped: str | None = None  # why it did not run (the row says so)
    target: float | None = None  # at least this many times the baseline's throughput
    vs: tuple[str, float] | None = None  # (another side's backend, at least this many times its throughput)
    #: Round trips per operation when the generic count (run once through the counting proxy,
    #: divide by ops) does not fit; called with the proxy's ``counting`` context factory.
    count: Callable[[Callable[[], contextlib.AbstractContextManager[Any]]], float] | None = None
    notes: dict[str, str] = field(default_factory=dict)
    #: Another side's backend to compare with in the notes (wall ratio, client CPU per op),
    #: without a target: e.g. each observer against the layer without observers.
    baseline: str | None = None


@dataclass
class MultiWorkload:
    """A baseline and several sides, measured interleaved in one run (one row per side)."""

    name: str
    raw_label: str
    unit: str
    ops: int
    context: Callable[[], contextlib.AbstractContextManager[tuple[Callable[[], Measured], list[Side]]]]
    reset: Callable[[], None] | None = None  # before every run of every side, outside the timing


def server_version(url: str) -> str:
    with psycopg.connect(url) as conn:
        return "PostgreSQL " + str(conn.execute("SHOW server_version").fetchone()[0]).split()[0]  # type: ignore[index]


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _measured(fn: Callable[[], object]) -> Measured:
    cpu = time.process_time()
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started, time.process_time() - cpu


def with_database(url: str, name: str) -> str:
    """``url`` pointing at another database of the same server."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


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


@contextlib.contextmanager
def prepared(url: str, scale: Scale, names: Collection[str] | None = None) -> Iterator[None]:
    """The bench's own tables for the run: ``bench_users``/``bench_bulk`` in the database of
    ``url`` and, when ``tpcb_like`` runs, pgbench's tables in a database of their own
    (``structum_bench``: created, initialised with ``pgbench -i -s 1``, dropped at the end)."""
    from tpcb_workload import create_tpcb_database, drop_tpcb_database  # it imports this module

    _prepare_tables(url, scale.rows)
    tpcb = not names or "tpcb_like" in names
    if tpcb:
        create_tpcb_database(url)
    try:
        yield
    finally:
        if tpcb:
            drop_tpcb_database(url)


def all_workloads(url: str, scale: Scale) -> list[Workload | MultiWorkload]:
    """Every workload, built against ``url``; the tables come from ``prepared()``."""
    # Each imports this module for the shared types.
    from observer_workload import observer_workloads
    from psycopg_workloads import psycopg_workloads
    from sqlalchemy_workloads import sqlalchemy_workloads
    from stream_workloads import stream_workloads
    from tpcb_workload import tpcb_workloads

    return [
        *psycopg_workloads(url, scale),
        *sqlalchemy_workloads(url, scale),
        *tpcb_workloads(url, scale),
        *observer_workloads(url, scale),
        *stream_workloads(url, scale),
    ]
