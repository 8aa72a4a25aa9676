"""Pool figures, exhaustion, health checks, dead-connection recovery and shutdown of PostgresDatabase."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest
from fake_servers import Proxy, SilentServer, closed_port

from structum_lab.plugins.database import (
    ConnectionFailedError,
    ConnectionLostError,
    HealthStatus,
    PoolTimeoutError,
    PostgresDatabase,
    TransactionError,
    hookimpl,
)
from structum_lab.plugins.database._config.manager import get_plugin_manager


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def backend_pids(admin: Any, application_name: str) -> list[int]:
    rows = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND pid <> pg_backend_pid()",
        (application_name,),
    ).fetchall()
    return [r[0] for r in rows]


def test_pool_info_before_during_after(open_pg: Any) -> None:
    db: PostgresDatabase = open_pg(pool_size=2, max_overflow=1, pool_timeout=2)
    info = db.get_pool_info()
    assert info["checked_out"] == 0 and info["size"] == 2 and info["min_size"] == 2 and info["max_size"] == 3
    db.pool.wait(5)  # the pool opened with the database and fills in the background
    info = db.get_pool_info()
    assert (info["checked_out"], info["available"], info["total"], info["overflow"]) == (0, 2, 2, 0)
    with db.transaction(), db.get_connection() as second:
        second.execute("SELECT 1")
        info = db.get_pool_info()
        assert info["checked_out"] == 2 and info["available"] == 0 and info["total"] == 2 and info["overflow"] == 0
        third = db.get_connection()
        info = db.get_pool_info()
        assert info["checked_out"] == 3 and info["total"] == 3 and info["overflow"] == 1
        third.close()
    info = db.get_pool_info()
    assert info["checked_out"] == 0 and info["available"] == info["total"] == 3
    assert info["checkouts"] == 3 and info["timeouts"] == 0 and info["requests_waiting"] == 0
    assert set(info) >= {"connections_lost", "max_wait_ms"}


def test_pool_exhaustion_raises_pool_timeout_with_advice(open_pg: Any) -> None:
    db: PostgresDatabase = open_pg(pool_size=1, max_overflow=0, pool_timeout=0.5)
    holder = db.get_connection()
    started = time.monotonic()
    with pytest.raises(PoolTimeoutError) as info, db.transaction():
        pass
    elapsed = time.monotonic() - started
    assert 0.4 < elapsed < 3
    assert isinstance(info.value, TimeoutError) and info.value.backend == "psycopg"
    message = str(info.value)
    assert "pool_size=1" in message and "max_overflow=0" in message and "Increase pool_size" in message
    assert "all 1 connections of database" in message
    holder.close()
    with db.transaction() as conn:  # fully usable again
        assert conn.execute("SELECT 1 AS one").scalar() == 1
    after = db.get_pool_info()
    assert after["checked_out"] == 0 and after["timeouts"] == 1 and after["max_wait_ms"] >= 400


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

    observer = Observer()
    get_plugin_manager().register(observer)
    try:
        db: PostgresDatabase = open_pg(pool_size=1, max_overflow=0, pool_timeout=0.2)
        with db.get_connection(), pytest.raises(PoolTimeoutError):
            db.get_connection()
    finally:
        get_plugin_manager().unregister(observer)
    assert len(seen) == 1 and seen[0][0]["checked_out"] == 1 and seen[0][1] >= 0.15


def test_transaction_finished_event(open_pg: Any) -> None:
    seen: list[tuple[str, Any]] = []

    class Observer:
        @hookimpl
        def structum_database_transaction_finished(self, database: Any, outcome: str, error: Any) -> None:
            seen.append((outcome, error))

    observer = Observer()
    get_plugin_manager().register(observer)
    try:
        db: PostgresDatabase = open_pg(pool_size=1)
        with db.transaction() as conn:
            conn.execute("SELECT 1")
            with db.transaction():  # a savepoint: not reported
                pass
        with pytest.raises(KeyError), db.transaction():
            raise KeyError
    finally:
        get_plugin_manager().unregister(observer)
    assert [o for o, _ in seen] == ["commit", "rollback"] and isinstance(seen[1][1], KeyError)


def test_health_check_healthy_with_latency(open_pg: Any) -> None:
    db: PostgresDatabase = open_pg()
    result = db.health_check()
    assert result.status is HealthStatus.HEALTHY and result.message == "Database connection OK"
    assert 0 < result.latency_ms < 1000
    db.pool.wait(5)
    result = db.health_check()  # now on a pooled connection
    assert result.status is HealthStatus.HEALTHY
    assert result.details["pool"]["checked_out"] == 0 and result.details["backend"] == "psycopg"


def test_health_check_against_a_closed_port_is_unhealthy_and_quick() -> None:
    url = f"postgresql://app:s3cr3t-pw@127.0.0.1:{closed_port()}/nowhere"
    started = time.monotonic()
    with PostgresDatabase(url, health_check_timeout=3) as db:
        assert time.monotonic() - started < 1  # construction never waits for the server
        result = db.health_check()
        assert "s3cr3t-pw" not in repr(db) and "s3cr3t-pw" not in db.url
    assert time.monotonic() - started < 3
    assert result.status is HealthStatus.UNHEALTHY
    assert result.message.startswith("Database unreachable: could not connect")
    assert "s3cr3t-pw" not in result.message and "s3cr3t-pw" not in repr(result)


def test_health_check_deadline_holds_against_a_silent_server(silent_server: SilentServer) -> None:
    db = PostgresDatabase(f"postgresql://u:pw-silent-1@127.0.0.1:{silent_server.port}/db", health_check_timeout=1)
    try:
        started = time.monotonic()
        result = db.health_check()
        assert time.monotonic() - started < 1.8
    finally:
        db.shutdown()
    assert result.status is HealthStatus.UNHEALTHY
    assert "within 1 s" in result.message


def test_health_check_reports_degraded_when_pool_is_exhausted(open_pg: Any) -> None:
    db: PostgresDatabase = open_pg(pool_size=1, max_overflow=0, pool_timeout=10)
    holder = db.get_connection()
    started = time.monotonic()
    result = db.health_check()
    assert time.monotonic() - started < 1  # does not wait behind the pool
    holder.close()
    assert result.status is HealthStatus.DEGRADED
    assert "exhausted" in result.message
    assert db.health_check().status is HealthStatus.HEALTHY


def test_unreachable_server_gives_connection_failed_error_quickly() -> None:
    url = f"postgresql://app:pw-123456@127.0.0.1:{closed_port()}/x"
    with PostgresDatabase(url, pool_timeout=20) as db:
        started = time.monotonic()
        with pytest.raises(ConnectionFailedError) as info, db.transaction():
            pass
        assert time.monotonic() - started < 2  # the real error, not a pool_timeout wait
        assert db.get_pool_info()["checked_out"] == 0
    assert "could not connect" in str(info.value) and "Connection refused" in str(info.value)
    assert "pw-123456" not in str(info.value)
    assert isinstance(info.value.__cause__, psycopg.OperationalError)


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


def test_shutdown_is_final_and_idempotent(open_pg: Any) -> None:
    db: PostgresDatabase = open_pg(pool_size=1)
    with db.transaction() as conn:
        conn.execute("SELECT 1")
    lent = db.get_connection()
    db.shutdown()
    db.shutdown()
    with pytest.raises(TransactionError, match="shut down"), db.transaction():
        pass
    with pytest.raises(TransactionError, match="shut down"):
        db.get_connection()
    lent.close()  # a connection lent before shutdown can still be returned
    result = db.health_check()
    assert result.status is HealthStatus.UNHEALTHY and "shut down" in result.message


def test_threads_get_their_own_transactions(open_pg: Any, table: str) -> None:
    db: PostgresDatabase = open_pg(pool_size=4, max_overflow=0)
    with db.transaction() as conn:
        conn.execute(f"CREATE TABLE {table} (n INT)")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(25):
                with db.transaction() as c:
                    c.execute(f"INSERT INTO {table} (n) VALUES (:n)", {"n": n * 100 + i})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with db.transaction() as conn:
        assert conn.execute(f"SELECT COUNT(DISTINCT n) FROM {table}").scalar() == 200
    info = db.get_pool_info()
    assert info["checked_out"] == 0 and info["checkouts"] == 202 and info["total"] <= 4


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
