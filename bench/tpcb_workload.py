"""pgbench's TPC-B-like transaction: raw psycopg_pool, pgbench (C), the transaction as one message written
by hand (the ceiling of pipelining), and the layer with and without pipeline=True."""

from __future__ import annotations

import contextlib
import random
import re
import resource
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from structum_lab.plugins.database import SQLAlchemyDatabase

try:
    from structum_lab.plugins.database import AsyncPostgresDatabase, PostgresDatabase
except Exception:  # pragma: no cover - the psycopg backend is optional
    PostgresDatabase = AsyncPostgresDatabase = None  # type: ignore[assignment,misc]

from workloads import Measured, MultiWorkload, Scale, Side, _measured, with_database

# --- TPC-B-like (pgbench's transaction) ---------------------------------------------------------

TPCB_DATABASE = "structum_bench"
TPCB_THREADS = 4
TPCB_SCALE = 1  # pgbench -s: 100,000 accounts, 10 tellers, 1 branch per unit
PGBENCH = shutil.which("pgbench")
PGBENCH_LABEL = "pgbench (C)"

_TPCB_TABLES = """
CREATE TABLE pgbench_branches (bid INT NOT NULL, bbalance INT, filler CHAR(88)) WITH (fillfactor = 100);
CREATE TABLE pgbench_tellers (tid INT NOT NULL, bid INT, tbalance INT, filler CHAR(84)) WITH (fillfactor = 100);
CREATE TABLE pgbench_accounts (aid INT NOT NULL, bid INT, abalance INT, filler CHAR(84)) WITH (fillfactor = 100);
CREATE TABLE pgbench_history (tid INT, bid INT, aid INT, delta INT, mtime TIMESTAMP, filler CHAR(22));
INSERT INTO pgbench_branches SELECT b, 0 FROM generate_series(1, {s}) b;
INSERT INTO pgbench_tellers SELECT t, (t - 1) / 10 + 1, 0 FROM generate_series(1, 10 * {s}) t;
INSERT INTO pgbench_accounts SELECT a, (a - 1) / 100000 + 1, 0, '' FROM generate_series(1, 100000 * {s}) a;
ALTER TABLE pgbench_branches ADD PRIMARY KEY (bid);
ALTER TABLE pgbench_tellers ADD PRIMARY KEY (tid);
ALTER TABLE pgbench_accounts ADD PRIMARY KEY (aid);
VACUUM ANALYZE pgbench_branches, pgbench_tellers, pgbench_accounts, pgbench_history
"""


ONE_MESSAGE_LABEL = "one message (by hand)"


def _raw_statements(aid: int, tid: int, bid: int, delta: int) -> list[tuple[str, tuple[int, ...]]]:
    """The statements of one transaction in psycopg's style, for the message written by hand."""
    return [
        ("UPDATE pgbench_accounts SET abalance = abalance + %s WHERE aid = %s", (delta, aid)),
        ("SELECT abalance FROM pgbench_accounts WHERE aid = %s", (aid,)),
        ("UPDATE pgbench_tellers SET tbalance = tbalance + %s WHERE tid = %s", (delta, tid)),
        ("UPDATE pgbench_branches SET bbalance = bbalance + %s WHERE bid = %s", (delta, bid)),
        (
            "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (%s, %s, %s, %s, CURRENT_TIMESTAMP)",
            (tid, bid, aid, delta),
        ),
    ]


def create_tpcb_database(url: str) -> None:
    """A database of the bench's own with pgbench's tables at scale 1 (``pgbench -i``, or the
    same tables built here when pgbench is not installed)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TPCB_DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {TPCB_DATABASE}")
    tpcb_url = with_database(url, TPCB_DATABASE)
    if PGBENCH:
        subprocess.run(  # noqa: S603 - our own command line
            [PGBENCH, "-i", "-q", "-s", str(TPCB_SCALE), tpcb_url], check=True, capture_output=True, text=True
        )
        return
    with psycopg.connect(tpcb_url, autocommit=True) as conn:
        for statement in _TPCB_TABLES.format(s=TPCB_SCALE).split(";"):
            conn.execute(statement)


def drop_tpcb_database(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TPCB_DATABASE} WITH (FORCE)")


TpcbParams = list[tuple[int, int, int, int]]  # (aid, tid, bid, delta) per transaction

UPDATE_ACCOUNT = "UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid"
SELECT_ACCOUNT = "SELECT abalance FROM pgbench_accounts WHERE aid = :aid"
UPDATE_TELLER = "UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid"
UPDATE_BRANCH = "UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid"
INSERT_HISTORY = (
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP)"
)


def _tpcb_params(per_thread: int, seed: int = 13) -> list[TpcbParams]:
    """What pgbench's tpcb-like script draws: aid, tid, bid uniform over the scale's rows,
    delta uniform in [-5000, 5000]. Drawn once, outside the timing; every side runs the same."""
    rnd = random.Random(seed)
    return [
        [
            (
                rnd.randint(1, 100_000 * TPCB_SCALE),
                rnd.randint(1, 10 * TPCB_SCALE),
                rnd.randint(1, TPCB_SCALE),
                rnd.randint(-5000, 5000),
            )
            for _ in range(per_thread)
        ]
        for _ in range(TPCB_THREADS)
    ]


def _in_threads(fn: Callable[[TpcbParams], None], params: list[TpcbParams]) -> Measured:
    threads = [threading.Thread(target=fn, args=(p,)) for p in params]

    def go() -> None:
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    return _measured(go)


def _pipeline_unavailable(db: Any) -> str | None:
    """Why ``transaction(pipeline=True)`` cannot be measured here, or None."""
    try:
        with db.transaction(pipeline=True):
            pass
    except TypeError:
        return "pipeline=True not available"
    return None


def _pgbench(url: str, *limit: str) -> tuple[float, int, float]:
    """One pgbench run: (tx/s without the initial connection time, transactions, child CPU seconds)."""
    assert PGBENCH is not None
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(  # noqa: S603 - our own command line
        [PGBENCH, "-n", "-b", "tpcb-like", "-c", str(TPCB_THREADS), "-j", str(TPCB_THREADS), *limit, url],
        check=True,
        capture_output=True,
        text=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", done.stdout)
    processed = re.search(r"number of transactions actually processed: (\d+)", done.stdout)
    if tps is None or processed is None:
        raise RuntimeError(f"unexpected pgbench output:\n{done.stdout}\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return float(tps.group(1)), int(processed.group(1)), cpu


def tpcb_workloads(url: str, scale: Scale) -> list[MultiWorkload]:
    tpcb_url = with_database(url, TPCB_DATABASE)
    sa_url = tpcb_url.replace("postgresql://", "postgresql+psycopg://", 1)
    params = _tpcb_params(scale.tpcb_tx)
    ops = TPCB_THREADS * scale.tpcb_tx

    def reset() -> None:
        """What pgbench does before a run without -n: the history emptied, the small hot tables vacuumed."""
        with psycopg.connect(tpcb_url, autocommit=True) as conn:
            conn.execute("TRUNCATE pgbench_history")
            conn.execute("VACUUM pgbench_branches, pgbench_tellers")

    def layer_default(db: Any) -> Callable[[], Measured]:
        def one(mine: TpcbParams) -> None:
            for aid, tid, bid, delta in mine:
                with db.transaction() as conn:
                    conn.execute(UPDATE_ACCOUNT, {"delta": delta, "aid": aid})
                    conn.execute(SELECT_ACCOUNT, {"aid": aid}).scalar()
                    conn.execute(UPDATE_TELLER, {"delta": delta, "tid": tid})
                    conn.execute(UPDATE_BRANCH, {"delta": delta, "bid": bid})
                    conn.execute(INSERT_HISTORY, {"tid": tid, "bid": bid, "aid": aid, "delta": delta})

        return lambda: _in_threads(one, params)

    def layer_pipelined(db: Any) -> Callable[[], Measured]:
        def one(mine: TpcbParams) -> None:
            for aid, tid, bid, delta in mine:
                with db.transaction(pipeline=True) as conn:
                    conn.execute(UPDATE_ACCOUNT, {"delta": delta, "aid": aid})
                    balance = conn.execute(SELECT_ACCOUNT, {"aid": aid})
                    conn.execute(UPDATE_TELLER, {"delta": delta, "tid": tid})
                    conn.execute(UPDATE_BRANCH, {"delta": delta, "bid": bid})
                    conn.execute(INSERT_HISTORY, {"tid": tid, "bid": bid, "aid": aid, "delta": delta})
                balance.scalar()  # read after the block: nothing forces a flush before COMMIT

        return lambda: _in_threads(one, params)

    def layer_sides(backend: str, db: Any, *, always_targeted: bool) -> list[Side]:
        pipelined = Side(f"{backend} pipeline=True")
        why_not = _pipeline_unavailable(db)
        if why_not:
            pipelined.skipped = why_not
        else:
            pipelined.run = layer_pipelined(db)
            can = getattr(getattr(db, "features", None), "pipelining", True)
            if not can:
                pipelined.notes["features.pipelining"] = "False: the block runs statement by statement"
            if can or always_targeted:
                pipelined.target, pipelined.vs = 1.8, (PGBENCH_LABEL, 1.0)
        return [Side(backend, layer_default(db)), pipelined]

    def pgbench_side() -> Side:
        if PGBENCH is None:
            return Side(PGBENCH_LABEL, skipped="pgbench not installed")

        def run() -> Measured:
            tps, done, cpu = _pgbench(tpcb_url, "-T", str(scale.pgbench_secs))
            return ops / tps, cpu / done * ops  # as if it had run the same `ops` transactions

        def count(counting: Callable[[], contextlib.AbstractContextManager[Any]]) -> float:
            short, long = max(1, scale.tpcb_tx), 2 * max(1, scale.tpcb_tx)
            with counting() as first:
                _pgbench(tpcb_url, "-t", str(short))
            with counting() as second:
                _pgbench(tpcb_url, "-t", str(long))
            return float(second.count - first.count) / (TPCB_THREADS * (long - short))

        return Side(PGBENCH_LABEL, run, count=count, notes={"command": f"-c {TPCB_THREADS} -T {scale.pgbench_secs}"})

    @contextlib.contextmanager
    def tpcb_like() -> Iterator[tuple[Callable[[], Measured], list[Side]]]:
        raw_pool = ConnectionPool(tpcb_url, min_size=TPCB_THREADS, max_size=TPCB_THREADS, open=True)
        raw_pool.wait()
        with contextlib.ExitStack() as stack:
            stack.callback(raw_pool.close)

            def raw_one(mine: TpcbParams) -> None:
                for aid, tid, bid, delta in mine:
                    with raw_pool.connection() as conn:
                        conn.execute(
                            "UPDATE pgbench_accounts SET abalance = abalance + %s WHERE aid = %s", (delta, aid)
                        )
                        conn.execute("SELECT abalance FROM pgbench_accounts WHERE aid = %s", (aid,)).fetchone()
                        conn.execute("UPDATE pgbench_tellers SET tbalance = tbalance + %s WHERE tid = %s", (delta, tid))
                        conn.execute(
                            "UPDATE pgbench_branches SET bbalance = bbalance + %s WHERE bid = %s", (delta, bid)
                        )
                        conn.execute(
                            "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
                            "VALUES (%s, %s, %s, %s, CURRENT_TIMESTAMP)",
                            (tid, bid, aid, delta),
                        )

            # The ceiling of pipeline=True: each transaction as one simple-protocol message written
            # by hand (the "BEGIN; ...; COMMIT as one message"), values bound by psycopg's
            # ClientCursor on an autocommit connection.
            one_pool = ConnectionPool(
                tpcb_url, min_size=TPCB_THREADS, max_size=TPCB_THREADS, kwargs={"autocommit": True}, open=True
            )
            one_pool.wait()
            stack.callback(one_pool.close)

            def one_message(mine: TpcbParams) -> None:
                for aid, tid, bid, delta in mine:
                    with one_pool.connection() as conn:
                        cursor = psycopg.ClientCursor(conn)
                        parts = [cursor.mogrify(sql, values) for sql, values in _raw_statements(aid, tid, bid, delta)]
                        cursor.execute(";\n".join(["BEGIN", *parts, "COMMIT"]))
                        cursor.nextset()  # past BEGIN's result
                        cursor.nextset()  # past the first UPDATE's, to the SELECT's
                        cursor.fetchone()

            sides = [pgbench_side(), Side(ONE_MESSAGE_LABEL, lambda: _in_threads(one_message, params))]
            if PostgresDatabase is not None:
                pg = PostgresDatabase(tpcb_url, pool_size=TPCB_THREADS, max_overflow=0)
                stack.callback(pg.shutdown)
                sides += layer_sides("psycopg", pg, always_targeted=True)
            sa_db = SQLAlchemyDatabase(sa_url, pool_size=TPCB_THREADS, max_overflow=0)
            stack.callback(sa_db.shutdown)
            sides += layer_sides("sqlalchemy", sa_db, always_targeted=False)
            yield (lambda: _in_threads(raw_one, params)), sides

    return [MultiWorkload("tpcb_like", f"psycopg_pool, {TPCB_THREADS} threads", "tx/s", ops, tpcb_like, reset)]
