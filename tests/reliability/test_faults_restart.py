"""Scenario 2: the server goes away and comes back (a throwaway cluster the test owns).

* ``pg_ctl stop`` in ``fast`` and ``immediate`` mode: ``health_check()`` turns UNHEALTHY
  within its timeout, calls fail fast (well before ``pool_timeout``) with
  ``ConnectionFailedError``/``ConnectionLostError``; after ``pg_ctl start`` the next
  call succeeds with no manual action.
* ``pg_ctl restart -m fast`` with several idle pooled connections: the first request
  succeeds within 2 s (the stale pool is cleared at once, not tested one connection
  at a time with a back-off).
* ``stop -m immediate`` (a crash) under concurrent writers: every commit acknowledged
  before the crash is there after recovery.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from structum_lab.plugins.database import ConnectionFailedError, ConnectionLostError, HealthStatus

from ._faults import ASYNC_KINDS, SYNC_KINDS, app_name, open_db
from ._infra import Cluster, pg_bin, require_tool

KINDS = SYNC_KINDS + ASYNC_KINDS
POOL_TIMEOUT = 10.0  # far above what "fail fast" allows, so a wait for the pool shows
HEALTH_TIMEOUT = 1.0
FAST = 1.5  # seconds: "fails fast" / "recovers at once", with a margin for a loaded CI machine
OPTIONS = {
    "pool_size": 3,
    "max_overflow": 2,
    "pool_timeout": POOL_TIMEOUT,
    "connect_timeout": 2,
    "health_check_timeout": HEALTH_TIMEOUT,
}
DOWN = (ConnectionFailedError, ConnectionLostError)


@pytest.fixture(scope="module")
def shared_cluster() -> Iterator[Cluster]:
    """One throwaway cluster for the module (initdb costs 1-2 s): each test stops, crashes or
    restarts it, and finds it running when it starts."""
    require_tool(pg_bin() is not None, "PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    instance = Cluster()
    instance.start()
    try:
        yield instance
    finally:
        instance.destroy()


@pytest.fixture
def server(shared_cluster: Cluster) -> Cluster:
    shared_cluster.stop("fast")  # a clean start for every test, whatever the previous one left
    shared_cluster.start()
    return shared_cluster


class Driver:
    """Runs the same calls on a sync or an async database, from synchronous test code."""

    def __init__(self, kind: str, url: str, **options: Any) -> None:
        self.kind = kind
        self.is_async = kind in ASYNC_KINDS
        self.loop = asyncio.new_event_loop() if self.is_async else None
        self.db = open_db(kind, url, app_name(), **{**OPTIONS, **options})

    def _run(self, coro: Any) -> Any:
        assert self.loop is not None
        return self.loop.run_until_complete(coro)

    def scalar(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        if not self.is_async:
            with self.db.transaction() as conn:
                return conn.execute(sql, params).scalar()

        async def run() -> Any:
            async with self.db.transaction() as conn:
                return await (await conn.execute(sql, params)).scalar()

        return self._run(run())

    def health(self) -> Any:
        return self._run(self.db.health_check()) if self.is_async else self.db.health_check()

    def fill(self, n: int) -> None:
        """Hold ``n`` connections at once, so ``n`` idle ones stay pooled afterwards."""
        if not self.is_async:
            conns = [self.db.get_connection() for _ in range(n)]
            for conn in conns:
                conn.execute("SELECT 1")
                conn.close()
            return

        async def run() -> None:
            conns = [await self.db.get_connection() for _ in range(n)]
            for conn in conns:
                await conn.execute("SELECT 1")
                await conn.close()

        self._run(run())

    def pool_info(self) -> Any:
        return self.db.get_pool_info()

    def close(self) -> None:
        if self.is_async:
            self._run(self.db.shutdown())
            assert self.loop is not None
            self.loop.close()
        else:
            self.db.shutdown()


def _timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    try:
        value = call()
    except Exception as exc:
        return exc, time.monotonic() - started
    return value, time.monotonic() - started


@pytest.mark.parametrize("mode", ["fast", "immediate"])
@pytest.mark.parametrize("kind", KINDS)
def test_stop_fails_fast_and_start_recovers(kind: str, mode: str, server: Cluster) -> None:
    d = Driver(kind, server.url)
    try:
        d.fill(3)
        assert d.scalar("SELECT 1") == 1
        server.stop(mode)

        result, took_health = _timed(d.health)
        assert result.status is HealthStatus.UNHEALTHY, result
        assert took_health < HEALTH_TIMEOUT + 0.5
        failures = []
        for attempt in range(3):  # the first call meets dead pooled connections, the next ones no server
            error, took = _timed(lambda: d.scalar("SELECT 1"))
            assert isinstance(error, DOWN), (attempt, error)
            assert took < FAST, (attempt, took)  # not a wait for pool_timeout
            assert "connect" in str(error) or "lost" in str(error)
            failures.append(took)
        result, took = _timed(d.health)
        assert result.status is HealthStatus.UNHEALTHY and took < HEALTH_TIMEOUT + 0.5

        server.start()
        value, took = _timed(lambda: d.scalar("SELECT 2"))
        assert value == 2, value  # the very first call after the restart, no manual action
        assert took < FAST
        assert d.health().status is HealthStatus.HEALTHY
        assert d.pool_info()["checked_out"] == 0
        print(
            f"\n{kind} stop -m {mode}: UNHEALTHY in {took_health * 1000:.0f} ms, calls failed in "
            f"{max(failures) * 1000:.0f} ms at most, first call after start {took * 1000:.1f} ms"
        )
    finally:
        d.close()


@pytest.mark.parametrize("kind", KINDS)
def test_restart_first_request_within_2s(kind: str, server: Cluster) -> None:
    d = Driver(kind, server.url, pool_size=5, max_overflow=0)
    try:
        d.fill(5)  # five idle pooled connections, all stale after the restart
        time.sleep(0.6)  # older than the psycopg backend's ping bypass window too
        server.restart("fast")
        value, took = _timed(lambda: d.scalar("SELECT 3"))
        assert value == 3, value
        assert took < 2.0
        value, took_again = _timed(lambda: d.scalar("SELECT 4"))
        assert value == 4 and took_again < 1.0
        assert d.pool_info()["checked_out"] == 0
        print(f"\n{kind} restart -m fast: first request {took * 1000:.1f} ms, second {took_again * 1000:.1f} ms")
    finally:
        d.close()


@pytest.mark.parametrize("kind", KINDS)
def test_acknowledged_commits_survive_a_crash(kind: str, server: Cluster) -> None:
    table = f"acked_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (txn TEXT PRIMARY KEY)")
    d = Driver(kind, server.url)
    acked: list[str] = []
    failed: list[BaseException] = []
    stop = threading.Event()

    def one() -> None:
        txn = uuid.uuid4().hex
        try:
            d.scalar(f"INSERT INTO {table} VALUES (:t) RETURNING txn", {"t": txn})
        except DOWN as exc:
            failed.append(exc)
        else:
            acked.append(txn)

    async def writer() -> None:
        while not stop.is_set():
            txn = uuid.uuid4().hex
            try:
                async with d.db.transaction() as conn:
                    await conn.execute(f"INSERT INTO {table} VALUES (:t)", {"t": txn})
            except DOWN as exc:
                failed.append(exc)
                await asyncio.sleep(0.01)
            else:
                acked.append(txn)

    try:
        if d.is_async:

            async def crash_under_load() -> None:
                tasks = [asyncio.create_task(writer()) for _ in range(4)]
                await asyncio.sleep(0.3)
                await asyncio.to_thread(server.stop, "immediate")
                await asyncio.sleep(0.2)
                stop.set()
                await asyncio.gather(*tasks)

            d._run(crash_under_load())
        else:

            def loop() -> None:
                while not stop.is_set():
                    one()

            threads = [threading.Thread(target=loop) for _ in range(4)]
            for thread in threads:
                thread.start()
            time.sleep(0.3)
            server.stop("immediate")
            time.sleep(0.2)
            stop.set()
            for thread in threads:
                thread.join(20)
        assert acked and failed
        server.start()
        assert d.scalar("SELECT 1") == 1  # recovered without manual action
        present = _present(server.url, table)
        missing = set(acked) - present
        assert not missing, f"{len(missing)} acknowledged commits lost"
        print(f"\n{kind}: {len(acked)} acknowledged commits all present after the crash, {len(failed)} calls failed")
    finally:
        d.close()


def _present(url: str, table: str) -> set[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {row[0] for row in conn.execute(f"SELECT txn FROM {table}").fetchall()}
