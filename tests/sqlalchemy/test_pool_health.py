"""Pool figures, pool exhaustion and health checks of SQLAlchemyDatabase."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import sqlalchemy.exc

from structum_lab.plugins.database import (
    ConnectionFailedError,
    HealthStatus,
    PoolTimeoutError,
    SQLAlchemyDatabase,
    TransactionError,
)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_pool_info_before_during_after(pg_url: str) -> None:
    db = SQLAlchemyDatabase(pg_url, pool_size=2, max_overflow=1, pool_timeout=2)
    try:
        info = db.get_pool_info()
        assert (info["checked_out"], info["available"], info["total"], info["overflow"]) == (0, 0, 0, 0)
        assert info["size"] == 2 and info["max_size"] == 3
        with db.transaction(), db.get_connection() as second:
            second.execute("SELECT 1")
            info = db.get_pool_info()
            assert info["checked_out"] == 2 and info["total"] == 2 and info["overflow"] == 0
            third = db.get_connection()
            info = db.get_pool_info()
            assert info["checked_out"] == 3 and info["overflow"] == 1
            third.close()
        info = db.get_pool_info()
        assert info["checked_out"] == 0
        assert info["available"] == info["total"] == 2
        assert info["checkouts"] == 3
    finally:
        db.shutdown()


def test_pool_exhaustion_raises_both_error_types_with_advice(pg_url: str) -> None:
    db = SQLAlchemyDatabase(pg_url, pool_size=1, max_overflow=0, pool_timeout=0.5)
    try:
        holder = db.get_connection()
        started = time.monotonic()
        with pytest.raises(PoolTimeoutError) as info, db.transaction():
            pass
        elapsed = time.monotonic() - started
        assert 0.4 < elapsed < 3
        assert isinstance(info.value, sqlalchemy.exc.TimeoutError)  # spec section 6.3
        message = str(info.value)
        assert "pool_size=1" in message and "max_overflow=0" in message and "Increase pool_size" in message
        holder.close()
        with db.transaction() as conn:  # fully usable again
            assert conn.execute("SELECT 1 AS one").scalar() == 1
        info_after = db.get_pool_info()
        assert info_after["checked_out"] == 0 and info_after["timeouts"] == 1
        assert info_after["max_wait_ms"] >= 400
    finally:
        db.shutdown()


def test_health_check_healthy_with_latency(pg_url: str) -> None:
    with SQLAlchemyDatabase(pg_url) as db:
        result = db.health_check()
        assert result.status is HealthStatus.HEALTHY
        assert result.message == "Database connection OK"
        assert 0 < result.latency_ms < 1000
        assert result.details["pool"]["checked_out"] == 0


def test_health_check_against_a_closed_port_is_unhealthy_and_quick() -> None:
    url = f"postgresql+psycopg://app:s3cr3t-pw@127.0.0.1:{closed_port()}/nowhere"
    with SQLAlchemyDatabase(url, health_check_timeout=3) as db:
        started = time.monotonic()
        result = db.health_check()
        assert time.monotonic() - started < 3.5
    assert result.status is HealthStatus.UNHEALTHY
    assert "s3cr3t-pw" not in result.message and "s3cr3t-pw" not in repr(result)
    assert result.message.startswith("Database unreachable")


def test_health_check_deadline_holds_against_a_silent_server() -> None:
    # A listener that accepts and never answers: the driver would wait for its own timeout.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    try:
        with SQLAlchemyDatabase(f"postgresql+psycopg://u@127.0.0.1:{port}/db", health_check_timeout=1) as db:
            started = time.monotonic()
            result = db.health_check()
            assert time.monotonic() - started < 1.8
        assert result.status is HealthStatus.UNHEALTHY
        assert "within 1 s" in result.message
    finally:
        server.close()


def test_health_check_reports_degraded_when_pool_is_exhausted(pg_url: str) -> None:
    with SQLAlchemyDatabase(pg_url, pool_size=1, max_overflow=0, pool_timeout=10) as db:
        holder = db.get_connection()
        started = time.monotonic()
        result = db.health_check()
        assert time.monotonic() - started < 1  # does not wait behind the pool
        holder.close()
    assert result.status is HealthStatus.DEGRADED
    assert "exhausted" in result.message


def test_unreachable_server_gives_connection_failed_error() -> None:
    url = f"postgresql+psycopg://app:pw-123456@127.0.0.1:{closed_port()}/x"
    with SQLAlchemyDatabase(url) as db, pytest.raises(ConnectionFailedError) as info, db.transaction():
        pass
    assert "could not connect" in str(info.value)
    assert "pw-123456" not in str(info.value)
    assert isinstance(info.value.__cause__, sqlalchemy.exc.OperationalError)


def test_shutdown_is_final_and_idempotent(sqlite_url: str) -> None:
    db = SQLAlchemyDatabase(sqlite_url)
    with db.transaction() as conn:
        conn.execute("SELECT 1")
    db.shutdown()
    db.shutdown()
    with pytest.raises(TransactionError, match="shut down"), db.transaction():
        pass


def test_threads_get_their_own_transactions(pg_url: str, table: str) -> None:
    with SQLAlchemyDatabase(pg_url, pool_size=4) as db:
        with db.transaction() as conn:
            conn.execute(f"CREATE TABLE {table} (n INT)")
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                for i in range(20):
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
            assert conn.execute(f"SELECT COUNT(DISTINCT n) FROM {table}").scalar() == 160
            conn.execute(f"DROP TABLE {table}")
        assert db.get_pool_info()["checked_out"] == 0
