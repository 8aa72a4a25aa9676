"""Scenario 3: a blackholed server, through a TCP proxy the test controls.

* ``blackhole``: the proxy accepts connections and never answers. ``health_check()``,
  ``transaction()`` and a checkout return or raise within their deadlines
  (``health_check_timeout``, ``connect_timeout``, ``pool_timeout``).
* ``stall``: the proxy stops forwarding mid-stream. A statement waiting for its answer
  fails after ``statement_deadline`` with ``ConnectionLostError``; idle pooled
  connections fail their ping within the checkout's deadline. A connection that timed
  out is never reused: when the proxy forwards again (delivering the stale answers),
  every query still gets its own result.
* A query running past ``statement_timeout`` gets ``StatementTimeoutError`` and the
  connection stays usable.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import psycopg
import pytest

from structum_lab.plugins.database import (
    AsyncPostgresDatabase,
    ConfigurationError,
    ConnectionFailedError,
    ConnectionLostError,
    HealthStatus,
    PostgresDatabase,
    SQLAlchemyDatabase,
    StatementTimeoutError,
    connect,
)
from structum_lab.plugins.database._engine import deadline as deadline_module
from structum_lab.plugins.database.kit import DEADLINE_GRACE, DEFAULT_STATEMENT_DEADLINE, WATCHDOG, round_trip_cap
from structum_lab.plugins.database.kit_psycopg import (
    NATIVE_TIMEOUT,
    AsyncPsycopgDeadline,
    AsyncWatchdogDeadline,
    PsycopgDeadline,
    WatchdogDeadline,
)

from ._faults import ASYNC_KINDS, SYNC_KINDS, app_name, open_db
from ._infra import Proxy

pytestmark = pytest.mark.postgres

KINDS = SYNC_KINDS + ASYNC_KINDS
CONNECT, POOL, HEALTH, STATEMENT = 2.0, 1.0, 1.0, 1.5
OPTIONS = {
    "pool_size": 2,
    "max_overflow": 0,
    "connect_timeout": CONNECT,
    "pool_timeout": POOL,
    "health_check_timeout": HEALTH,
    "statement_deadline": STATEMENT,
}
MARGIN = 0.75  # scheduling slack on a loaded CI machine
#: The documented bound of a checkout: waiting for a slot or pinging an idle connection
#: (pool_timeout), then one connection attempt (connect_timeout).
CHECKOUT_BOUND = POOL + CONNECT + MARGIN
DOWN = (ConnectionFailedError, ConnectionLostError)


class Sync:
    """The same calls on sync and async databases (async ones on a private event loop)."""

    def __init__(self, kind: str, url: str, **options: Any) -> None:
        self.is_async = kind in ASYNC_KINDS
        self.loop = asyncio.new_event_loop()
        self.db = open_db(kind, url, app_name(), **{**OPTIONS, **options})

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def scalar(self, sql: str) -> Any:
        if not self.is_async:
            with self.db.transaction() as conn:
                return conn.execute(sql).scalar()

        async def go() -> Any:
            async with self.db.transaction() as conn:
                return await (await conn.execute(sql)).scalar()

        return self.run(go())

    def checkout(self) -> None:
        """get_connection(), one statement, close(): a pool checkout the caller controls."""
        if not self.is_async:
            conn = self.db.get_connection()
            try:
                conn.execute("SELECT 1")
            finally:
                conn.close()
            return

        async def go() -> None:
            conn = await self.db.get_connection()
            try:
                await conn.execute("SELECT 1")
            finally:
                await conn.close()

        self.run(go())

    def stalled_mid_transaction(self, proxy: Proxy) -> None:
        """A transaction whose second statement is sent after the proxy stopped forwarding."""
        if not self.is_async:
            with self.db.transaction() as conn:
                conn.execute("SELECT 1")
                proxy.mode = "stall"
                conn.execute("SELECT 2")
            return

        async def go() -> None:
            async with self.db.transaction() as conn:
                await conn.execute("SELECT 1")
                proxy.mode = "stall"
                await conn.execute("SELECT 2")

        self.run(go())

    def bulk(self, setup: str, sql: str, param_sets: list[dict[str, Any]], count_sql: str) -> tuple[int, int]:
        """executemany in one transaction: (rows it reports, rows the transaction then sees)."""
        if not self.is_async:
            with self.db.transaction() as conn:
                conn.execute(setup)
                return conn.executemany(sql, param_sets), conn.execute(count_sql).scalar()

        async def go() -> tuple[int, int]:
            async with self.db.transaction() as conn:
                await conn.execute(setup)
                reported = await conn.executemany(sql, param_sets)
                return reported, await (await conn.execute(count_sql)).scalar()

        return self.run(go())  # type: ignore[no-any-return]

    def health(self) -> Any:
        return self.run(self.db.health_check()) if self.is_async else self.db.health_check()

    def close(self) -> None:
        if self.is_async:
            self.run(self.db.shutdown())
        else:
            self.db.shutdown()
        self.loop.close()


def timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    try:
        value = call()
    except Exception as exc:
        return exc, time.monotonic() - started
    return value, time.monotonic() - started


@pytest.mark.parametrize("kind", KINDS)
def test_blackhole_deadlines(kind: str, proxy_to_pg: Proxy) -> None:
    proxy_to_pg.mode = "blackhole"
    d = Sync(kind, proxy_to_pg.url())
    try:
        result, took = timed(d.health)
        assert result.status is HealthStatus.UNHEALTHY and took < HEALTH + MARGIN, (result, took)
        error, took_tx = timed(lambda: d.scalar("SELECT 1"))
        assert isinstance(error, ConnectionFailedError), repr(error)
        assert took_tx < CHECKOUT_BOUND, took_tx
        error, took_checkout = timed(d.checkout)
        assert isinstance(error, ConnectionFailedError) and took_checkout < CHECKOUT_BOUND
        proxy_to_pg.mode = "forward"
        assert d.scalar("SELECT 5") == 5  # back without manual action
        print(f"\n{kind} blackhole: health {took:.2f} s, transaction {took_tx:.2f} s, checkout {took_checkout:.2f} s")
    finally:
        proxy_to_pg.mode = "forward"
        d.close()


@pytest.mark.parametrize("kind", KINDS)
def test_stall_mid_statement_and_no_reuse(kind: str, proxy_to_pg: Proxy) -> None:
    d = Sync(kind, proxy_to_pg.url())
    try:
        assert d.scalar("SELECT 1") == 1
        error, took = timed(lambda: d.stalled_mid_transaction(proxy_to_pg))
        assert isinstance(error, ConnectionLostError), repr(error)
        assert "statement_deadline" in str(error) and "not committed" in str(error)
        assert STATEMENT - 0.1 <= took < STATEMENT + MARGIN, took
        time.sleep(0.3)  # the pool's refill attempts start while the network is still stalled
        # The proxy now delivers the stalled "SELECT 2" and its answer; a connection that
        # timed out must not be reused, or a later query would read that stale answer.
        proxy_to_pg.mode = "forward"
        answers = [d.scalar(f"SELECT {n}") for n in range(40, 46)]
        assert answers == list(range(40, 46))
        info = d.db.get_pool_info()
        assert info["checked_out"] == 0 and info["connections_lost"] >= 1, info
        print(f"\n{kind} stall mid-statement: ConnectionLostError after {took:.2f} s (statement_deadline={STATEMENT})")
    finally:
        proxy_to_pg.mode = "forward"
        d.close()


@pytest.mark.parametrize("kind", KINDS)
def test_stall_with_idle_pool(kind: str, proxy_to_pg: Proxy) -> None:
    d = Sync(kind, proxy_to_pg.url())
    try:
        assert d.scalar("SELECT 1") == 1
        time.sleep(0.6)  # idle long enough to be pinged at checkout on every backend
        proxy_to_pg.mode = "stall"
        error, took_checkout = timed(d.checkout)
        assert isinstance(error, DOWN), repr(error)
        assert took_checkout < CHECKOUT_BOUND, took_checkout
        result, took_health = timed(d.health)
        assert result.status is HealthStatus.UNHEALTHY and took_health < HEALTH + MARGIN
        error, took_tx = timed(lambda: d.scalar("SELECT 1"))
        assert isinstance(error, DOWN) and took_tx < CHECKOUT_BOUND, (error, took_tx)
        proxy_to_pg.mode = "forward"
        assert [d.scalar(f"SELECT {n}") for n in (7, 8, 9)] == [7, 8, 9]
        assert d.db.get_pool_info()["checked_out"] == 0
        print(
            f"\n{kind} stall, idle pool: checkout {took_checkout:.2f} s, health {took_health:.2f} s, "
            f"transaction {took_tx:.2f} s"
        )
    finally:
        proxy_to_pg.mode = "forward"
        d.close()


@pytest.mark.parametrize("kind", KINDS)
def test_health_check_on_a_stalled_pooled_connection(kind: str, proxy_to_pg: Proxy) -> None:
    # The probe pings a pooled connection that stopped answering. Cancelling it at the
    # deadline must not wait for the driver's cancel request to that silent server.
    d = Sync(kind, proxy_to_pg.url())
    try:
        assert d.scalar("SELECT 1") == 1
        proxy_to_pg.mode = "stall"
        result, took = timed(d.health)
        assert result.status is HealthStatus.UNHEALTHY, result
        assert took < HEALTH + MARGIN, took
        proxy_to_pg.mode = "forward"
        assert d.scalar("SELECT 3") == 3
        assert d.health().status is HealthStatus.HEALTHY
    finally:
        proxy_to_pg.mode = "forward"
        d.close()


@pytest.mark.parametrize("kind", KINDS)
def test_statement_timeout(kind: str, pg_url: str) -> None:
    d = Sync(kind, pg_url, statement_timeout=0.5)
    try:
        error, took = timed(lambda: d.scalar("SELECT pg_sleep(5)"))
        assert isinstance(error, StatementTimeoutError), repr(error)
        assert isinstance(error, TimeoutError) and error.sqlstate == "57014"
        assert 0.45 <= took < 0.5 + MARGIN, took
        assert d.scalar("SELECT 11") == 11  # the server cancelled the statement; the connection is fine
        assert d.db.get_pool_info()["connections_lost"] == 0
    finally:
        d.close()


def test_deadline_defaults(pg_url: str) -> None:
    """No statement waits forever by default; the deadline follows statement_timeout."""
    with PostgresDatabase(pg_url) as db:
        assert db.settings.statement_deadline == DEFAULT_STATEMENT_DEADLINE
    with PostgresDatabase(pg_url, statement_timeout=0.5) as db:
        assert db.settings.statement_deadline == 0.5 + DEADLINE_GRACE
    with PostgresDatabase(pg_url, statement_deadline=0) as db:
        assert db.settings.statement_deadline is None  # disabled on request
    adb = AsyncPostgresDatabase(pg_url, statement_deadline=7)
    assert adb.settings.statement_deadline == 7
    sa_db = SQLAlchemyDatabase(pg_url.replace("postgresql://", "postgresql+psycopg://"), statement_deadline=3)
    try:
        with sa_db.transaction() as conn:
            raw = conn.sqlalchemy_connection.connection.driver_connection
            assert type(raw).__name__ == "BoundedConnection"  # round trips go through the deadline
    finally:
        sa_db.shutdown()


def test_statement_deadline_is_a_checked_option() -> None:
    with pytest.raises(ConfigurationError, match="statement_deadline"):
        connect("postgresql://app@127.0.0.1:1/app", statement_deadline=-1)
    with pytest.raises(ConfigurationError, match="statement_deadline"):
        connect("sqlite://", statement_deadline="soon")


@pytest.mark.parametrize("kind", KINDS)
def test_a_bulk_executemany_may_outlast_the_deadline_of_one_round_trip(
    kind: str, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A driver sends a whole executemany as one round trip; the layer sends it in batches,
    so a bulk operation longer than statement_deadline completes. Batches of 100 here (1,000
    by default) keep the test short: the server sleeps at least 1 ms per row, so the 600
    rows take at least 0.6 s, longer than the deadline, and a batch about 0.1 s."""
    monkeypatch.setattr(deadline_module, "EXECUTEMANY_BATCH", 100)
    deadline = 0.5
    d = Sync(kind, pg_url, statement_deadline=deadline)
    try:
        started = time.monotonic()
        reported, seen = d.bulk(
            "CREATE TEMP TABLE structum_bulk (id int) ON COMMIT DROP",
            "INSERT INTO structum_bulk SELECT :id FROM pg_sleep(0.001)",
            [{"id": n} for n in range(600)],
            "SELECT count(*) FROM structum_bulk",
        )
        took = time.monotonic() - started
        assert seen == 600
        assert reported == (-1 if kind == "sqlalchemy-asyncpg" else 600)  # asyncpg does not report a count
        assert took > deadline, took  # longer than one round trip may take
    finally:
        d.close()


@pytest.mark.parametrize("mechanism", ["native", "watchdog"])
def test_a_stalled_round_trip_is_given_up_and_the_connection_closed(mechanism: str, proxy_to_pg: Proxy) -> None:
    """Both ways a psycopg connection bounds its waits: psycopg's own timeout (3.3+) and
    the watchdog (older psycopg), on a real connection through a stalled proxy."""
    mixin = PsycopgDeadline if mechanism == "native" else WatchdogDeadline
    if mechanism == "native" and not NATIVE_TIMEOUT:
        pytest.skip("this psycopg has no wait(timeout=): the backends use the watchdog, tested below")

    class Bounded(mixin, psycopg.Connection[Any]):  # type: ignore[misc,valid-type]
        _sdb_deadline = 0.6

    conn = Bounded.connect(proxy_to_pg.url(), autocommit=True)
    try:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        with round_trip_cap(5.0):  # a cap looser than the deadline changes nothing
            assert conn.execute("SELECT pg_sleep(0.2), 2").fetchone() == ("", 2)
        proxy_to_pg.mode = "stall"
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError, match=r"did not answer within 0\.6 s \(statement_deadline\)"):
            conn.execute("SELECT 3")
        took = time.monotonic() - started
        assert 0.5 <= took < 0.6 + MARGIN, took
        assert conn.closed  # mid-protocol: never reusable
        proxy_to_pg.mode = "forward"
    finally:
        proxy_to_pg.mode = "forward"
        conn.close()


@pytest.mark.parametrize("mechanism", ["native", "watchdog"])
def test_a_stalled_async_round_trip_is_given_up_and_the_connection_closed(mechanism: str, proxy_to_pg: Proxy) -> None:
    mixin = AsyncPsycopgDeadline if mechanism == "native" else AsyncWatchdogDeadline
    if mechanism == "native" and not NATIVE_TIMEOUT:
        pytest.skip("this psycopg has no wait(timeout=): the backends use the watchdog, tested below")

    class Bounded(mixin, psycopg.AsyncConnection[Any]):  # type: ignore[misc,valid-type]
        _sdb_deadline = 0.6

    async def scenario() -> float:
        conn = await Bounded.connect(proxy_to_pg.url(), autocommit=True)
        try:
            assert await (await conn.execute("SELECT 1")).fetchone() == (1,)
            proxy_to_pg.mode = "stall"
            started = time.monotonic()
            with pytest.raises(psycopg.OperationalError, match=r"did not answer within 0\.6 s"):
                await conn.execute("SELECT 3")
            assert conn.closed
            return time.monotonic() - started
        finally:
            proxy_to_pg.mode = "forward"
            await conn.close()

    took = asyncio.run(scenario())
    assert 0.5 <= took < 0.6 + MARGIN, took


def test_a_listen_loop_waits_longer_than_the_deadline(pg_url: str) -> None:
    """psycopg's notifies() waits for the server with the caller's own limit (none here):
    statement_deadline must not cut a LISTEN loop that hears nothing for a while."""
    import threading

    db = PostgresDatabase(pg_url, statement_deadline=0.3, pool_size=1)
    try:
        with db.get_connection() as conn:
            raw = conn.psycopg_connection
            raw.execute("LISTEN structum_quiet")
            raw.commit()

            def notify_later() -> None:
                time.sleep(0.8)
                with psycopg.connect(pg_url, autocommit=True) as other:
                    other.execute("NOTIFY structum_quiet, 'late'")

            threading.Thread(target=notify_later, daemon=True).start()
            started = time.monotonic()
            heard = [n.payload for n in raw.notifies(stop_after=1)]
            assert heard == ["late"] and time.monotonic() - started > 0.6
            assert conn.execute("SELECT 1").scalar() == 1  # the connection is still fine
            raw.execute("UNLISTEN *")
    finally:
        db.shutdown()


def test_a_watchdog_lease_disarmed_in_time_leaves_the_socket_alone() -> None:
    left, right = socket.socketpair()
    try:
        on_time = WATCHDOG.arm(left.fileno(), 0.2)
        WATCHDOG.disarm(on_time)
        time.sleep(0.4)
        assert not on_time.expired
        left.sendall(b"still open")
        assert right.recv(64) == b"still open"
    finally:
        left.close()
        right.close()
