"""psycopg_pool's own: sizes in the exhaustion message, pool events, dead-connection recovery,
outages and secrets of PostgresDatabase. What every backend shares (pool figures, exhaustion,
health, shutdown): tests/semantics/test_pool_health_async.py."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fake_servers import Proxy, SilentServer

from structum_lab.plugins.database import (
    ConnectionFailedError,
    ConnectionLostError,
    HealthStatus,
    PoolTimeoutError,
    PostgresDatabase,
    hookimpl,
)
from structum_lab.plugins.database._config.manager import get_plugin_manager


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


@contextlib.contextmanager
def registered(plugin: object) -> Iterator[None]:
    """``plugin`` observes the database events during the block."""
    get_plugin_manager().register(plugin)
    try:
        yield
    finally:
        get_plugin_manager().unregister(plugin)


def backend_pids(admin: Any, application_name: str) -> list[int]:
    rows = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND pid <> pg_backend_pid()",
        (application_name,),
    ).fetchall()
    return [r[0] for r in rows]


def test_exhaustion_message_with_psycopg_sizes(open_pg: Any) -> None:
    db: PostgresDatabase = open_pg(min_size=1, max_size=1, timeout=0.2)
    with db.get_connection(), pytest.raises(PoolTimeoutError, match="min_size=1 and max_size=1: raise max_size"):
        db.get_connection()


def test_pool_exhausted_event_reaches_observers(open_pg: Any) -> None:
    seen: list[tuple[Any, float]] = []

    class Observer:
        @hookimpl
        def structum_database_pool_exhausted(self, database: Any, pool_info: Any, waited_s: float) -> None:
            seen.append((pool_info, waited_s))

    with registered(Observer()):
        db: PostgresDatabase = open_pg(pool_size=1, max_overflow=0, pool_timeout=0.2)
        with db.get_connection(), pytest.raises(PoolTimeoutError):
            db.get_connection()
    assert len(seen) == 1 and seen[0][0]["checked_out"] == 1 and seen[0][1] >= 0.15


def test_transaction_finished_event(open_pg: Any) -> None:
    seen: list[tuple[str, Any]] = []

    class Observer:
        @hookimpl
        def structum_database_transaction_finished(self, database: Any, outcome: str, error: Any) -> None:
            seen.append((outcome, error))

    with registered(Observer()):
        db: PostgresDatabase = open_pg(pool_size=1)
        with db.transaction() as conn:
            conn.execute("SELECT 1")
            with db.transaction():  # a savepoint: not reported
                pass
        with pytest.raises(KeyError), db.transaction():
            raise KeyError
    assert [o for o, _ in seen] == ["commit", "rollback"] and isinstance(seen[1][1], KeyError)


def test_silent_server_checkout_fails_within_pool_timeout(silent_server: SilentServer) -> None:
    db = PostgresDatabase(f"postgresql://u@127.0.0.1:{silent_server.port}/db", pool_timeout=1, connect_timeout=5)
    try:
        started = time.monotonic()
        with pytest.raises(ConnectionFailedError, match="no connection could be opened within 1 s"):
            db.get_connection()
        assert time.monotonic() - started < 2
    finally:
        db.shutdown()


def test_killed_idle_connections_are_replaced_without_error(open_pg: Any, pg_url: str) -> None:
    # pg_terminate_backend on every idle pooled connection, from another connection; the
    # next transactions (within the ping bypass window and after it) succeed.
    db: PostgresDatabase = open_pg(pool_size=3, max_overflow=0, application_name="structum-kill-test")
    db.pool.wait(5)
    with psycopg.connect(pg_url, autocommit=True) as admin:
        for round_ in range(2):
            with db.transaction() as conn:
                conn.execute("SELECT 1")
            wait_for(lambda: len(backend_pids(admin, "structum-kill-test")) == 3)  # refilled after round 1
            pids = backend_pids(admin, "structum-kill-test")
            for pid in pids:
                admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
            if round_ == 1:
                time.sleep(0.6)  # older than the bypass window: pinged instead of polled
            started = time.monotonic()
            with db.transaction() as conn:
                assert conn.execute("SELECT 42 AS x").scalar() == 42
            assert time.monotonic() - started < 1  # one failed check, no back-off
            assert not set(pids) & set(backend_pids(admin, "structum-kill-test"))
    info = db.get_pool_info()
    assert info["connections_lost"] >= 2 and info["checked_out"] == 0


def test_connection_killed_during_a_transaction(open_pg: Any, pg_url: str, observer: Any) -> None:
    db: PostgresDatabase = open_pg(pool_size=2, application_name="structum-kill-busy")
    with pytest.raises(ConnectionLostError, match="not committed"), db.transaction() as conn:
        conn.execute("CREATE TABLE lost (x INT)")
        pid = conn.execute("SELECT pg_backend_pid()").scalar()
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
        conn.execute("SELECT 1")
    assert db.get_pool_info()["checked_out"] == 0 and db.get_pool_info()["connections_lost"] >= 1
    with db.transaction() as conn:
        assert conn.execute("SELECT 1 AS one").scalar() == 1
    assert observer.execute("SELECT to_regclass('lost')").fetchone() == (None,)


def test_server_outage_fails_fast_and_recovers_at_once(proxy: Proxy) -> None:
    db = PostgresDatabase(proxy.url(), pool_size=2, max_overflow=0, pool_timeout=10)
    try:
        db.pool.wait(5)
        proxy.down()  # every connection dropped, new ones refused
        started = time.monotonic()
        with pytest.raises(ConnectionFailedError, match="Connection refused"), db.transaction() as conn:
            conn.execute("SELECT 1")
        assert time.monotonic() - started < 2
        assert db.health_check().status is HealthStatus.UNHEALTHY
        time.sleep(1.5)  # the pool is now backing off between reconnection attempts
        proxy.up()
        started = time.monotonic()
        with db.transaction() as conn:
            assert conn.execute("SELECT 7 AS n").scalar() == 7
        assert time.monotonic() - started < 1  # not waiting out the pool's back-off
        assert db.health_check().status is HealthStatus.HEALTHY
        assert db.get_pool_info()["checked_out"] == 0
    finally:
        db.shutdown()


def test_passwords_stay_out_of_reprs_and_errors(pg_url: str) -> None:
    url = pg_url.replace("postgres@", "postgres:pw-in-url-9@")
    db = PostgresDatabase(url, pool_size=1, connect_args={"password": "pw-in-args-9"})
    try:
        for text in (repr(db), db.url, repr(db.settings), repr(db.pool), str(db.get_pool_info())):
            assert "pw-in-url-9" not in text and "pw-in-args-9" not in text
        with db.transaction() as conn:
            assert conn.execute("SELECT 1 AS one").scalar() == 1
    finally:
        db.shutdown()
