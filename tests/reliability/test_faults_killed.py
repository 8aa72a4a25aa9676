"""Scenario 1: killed connections.

While 8 workers run short two-row transactions, ``pg_terminate_backend`` kills every
server process of the database under test, several times. Checked afterwards:

* the pool recovers on its own (a transaction after the storm succeeds, nothing is
  left checked out);
* a transaction that started after a kill round had finished never fails: a dead
  pooled connection is never handed out (pre-ping / zero-round-trip check);
* a transaction that fails says the connection was lost (``ConnectionLostError``);
* nothing is half-applied: read from a connection outside the pool, every
  transaction reported committed has both rows, every one reported failed has none.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg
import pytest

from structum_lab.plugins.database import ConnectionLostError

from ._faults import ASYNC_KINDS, SYNC_KINDS, app_name, committed_ids, kill_all, open_db

pytestmark = pytest.mark.postgres

WORKERS = 8
ROUNDS = 5
ROUND_GAP = 0.25  # seconds between kill rounds
POOL = {"pool_size": 4, "max_overflow": 4, "pool_timeout": 5.0}


@dataclass
class Ledger:
    """What the workers were told, and when the kills happened (monotonic seconds)."""

    committed: list[str] = field(default_factory=list)
    lost: list[tuple[str, float, float]] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    kills: list[tuple[float, float, int]] = field(default_factory=list)

    def failed_outside_kill_rounds(self) -> list[str]:
        """Failed transactions that began after the last kill round had already finished."""
        bad = []
        for txn, began, _ended in self.lost:
            if not any(began <= done for _start, done, _n in self.kills):
                bad.append(txn)
        return bad


@pytest.fixture
def txn_table(pg_url: str, table: str) -> Iterator[str]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (txn TEXT NOT NULL, part INT NOT NULL, PRIMARY KEY (txn, part))")
    yield table
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")


def _killer(pg_url: str, app: str, ledger: Ledger) -> None:
    with psycopg.connect(pg_url, autocommit=True) as admin:
        time.sleep(ROUND_GAP)
        for _ in range(ROUNDS):
            started = time.monotonic()
            killed = kill_all(admin, app)  # returns once every signalled process has exited
            ledger.kills.append((started, time.monotonic(), killed))
            time.sleep(ROUND_GAP)


def _verify(pg_url: str, table: str, ledger: Ledger) -> dict[str, int]:
    assert not ledger.unexpected, ledger.unexpected[:3]
    assert ledger.failed_outside_kill_rounds() == []
    assert all("connection was lost" in message for message in ledger.messages), ledger.messages[:3]
    rows = committed_ids(pg_url, table)
    missing = [txn for txn in ledger.committed if rows.get(txn) != 2]
    assert missing == [], "transactions reported committed are not (fully) there"
    applied = [txn for txn, _b, _e in ledger.lost if txn in rows]
    assert applied == [], "transactions reported failed were (partly) applied"
    assert set(rows) == set(ledger.committed)
    killed = sum(n for _s, _d, n in ledger.kills)
    assert killed >= ROUNDS * 4, ledger.kills  # the storm really hit the pool, round after round
    assert ledger.lost, "no transaction was in flight during a kill: the scenario did not happen"
    assert len(ledger.committed) > 50
    return {"committed": len(ledger.committed), "lost": len(ledger.lost), "killed": killed}


@pytest.mark.parametrize("kind", SYNC_KINDS)
def test_killed_connections_sync(kind: str, pg_url: str, txn_table: str) -> None:
    app = app_name()
    db = open_db(kind, pg_url, app, **POOL)
    ledger = Ledger()
    stop = threading.Event()
    lock = threading.Lock()

    def worker() -> None:
        while not stop.is_set():
            txn = uuid.uuid4().hex
            began = time.monotonic()
            try:
                with db.transaction() as conn:
                    conn.execute(f"INSERT INTO {txn_table} VALUES (:t, 1)", {"t": txn})
                    conn.execute("SELECT pg_sleep(0.002)")
                    conn.execute(f"INSERT INTO {txn_table} VALUES (:t, 2)", {"t": txn})
            except ConnectionLostError as exc:
                with lock:
                    ledger.lost.append((txn, began, time.monotonic()))
                    ledger.messages.append(str(exc))
            except Exception as exc:
                with lock:
                    ledger.unexpected.append(f"{type(exc).__name__}: {exc}")
            else:
                with lock:
                    ledger.committed.append(txn)

    try:
        threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
        for thread in threads:
            thread.start()
        try:
            _killer(pg_url, app, ledger)
        finally:
            stop.set()
        for thread in threads:
            thread.join(30)
        started = time.monotonic()
        with db.transaction() as conn:  # recovered without a restart
            assert conn.execute("SELECT 1 AS one").scalar() == 1
        recovery = time.monotonic() - started
        assert db.get_pool_info()["checked_out"] == 0
        figures = _verify(pg_url, txn_table, ledger)
        print(f"\n{kind}: {figures}, first transaction after the storm {recovery * 1000:.1f} ms")
    finally:
        db.shutdown()


@pytest.mark.parametrize("kind", ASYNC_KINDS)
async def test_killed_connections_async(kind: str, pg_url: str, txn_table: str) -> None:
    app = app_name()
    db = open_db(kind, pg_url, app, **POOL)
    ledger = Ledger()
    stop = asyncio.Event()

    async def worker() -> None:
        while not stop.is_set():
            txn = uuid.uuid4().hex
            began = time.monotonic()
            try:
                async with db.transaction() as conn:
                    await conn.execute(f"INSERT INTO {txn_table} VALUES (:t, 1)", {"t": txn})
                    await conn.execute("SELECT pg_sleep(0.002)")
                    await conn.execute(f"INSERT INTO {txn_table} VALUES (:t, 2)", {"t": txn})
            except ConnectionLostError as exc:
                ledger.lost.append((txn, began, time.monotonic()))
                ledger.messages.append(str(exc))
            except Exception as exc:
                ledger.unexpected.append(f"{type(exc).__name__}: {exc}")
            else:
                ledger.committed.append(txn)

    try:
        tasks = [asyncio.create_task(worker()) for _ in range(WORKERS)]
        try:
            await asyncio.to_thread(_killer, pg_url, app, ledger)
        finally:
            stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        started = time.monotonic()
        async with db.transaction() as conn:
            assert await (await conn.execute("SELECT 1 AS one")).scalar() == 1
        recovery = time.monotonic() - started
        assert db.get_pool_info()["checked_out"] == 0
        figures = _verify(pg_url, txn_table, ledger)
        print(f"\n{kind}: {figures}, first transaction after the storm {recovery * 1000:.1f} ms")
    finally:
        await db.shutdown()
