"""``pgbouncer = true`` through a real PgBouncer in transaction mode (Debian's, started by the
test in front of the shared server), on both backends: psycopg's prepared statements are off,
and what would leave state on a server session that other clients get next is refused."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from _tools import pgbouncer

from structum_lab.plugins.database import ConfigurationError, DatabaseInterface, NotSupportedError, connect


@pytest.fixture(scope="module")
def bouncer_url() -> Iterator[str]:
    # One server connection for every client: whatever one client leaves on it, the next one meets.
    with pgbouncer(default_pool_size=1) as url:
        yield url


@pytest.fixture
def bouncer(pg_url: str, bouncer_url: str) -> str:
    return bouncer_url


def two_clients(db: DatabaseInterface, iterations: int = 100) -> list[BaseException]:
    """Two threads, each repeating the same statements (psycopg prepares one after 5 runs)."""
    errors: list[BaseException] = []

    def client(offset: int) -> None:
        try:
            for i in range(iterations):
                with db.transaction() as conn:
                    assert conn.execute("SELECT :i::int + 1 AS n", {"i": i + offset}).scalar() == i + offset + 1
                    conn.execute("SET LOCAL statement_timeout = '5s'")  # transaction state: allowed
                assert db.execute("SELECT :i::int AS n", {"i": i}).scalar() == i
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k * 1000,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_two_clients_100_iterations_through_transaction_mode(bouncer: str, backend: str) -> None:
    db = connect(bouncer, backend=backend, pgbouncer=True, pool_size=2)
    try:
        assert two_clients(db) == []
        assert db.health_check().healthy
    finally:
        db.shutdown()


def test_without_the_option_prepared_statements_break(bouncer: str, backend: str) -> None:
    db = connect(bouncer, backend=backend, pool_size=2)
    try:
        errors = two_clients(db, iterations=20)
    finally:
        db.shutdown()
    assert errors and "prepared statement" in str(errors[0])  # the control of the test above


def test_session_state_is_refused(bouncer: str, backend: str) -> None:
    db = connect(bouncer, backend=backend, pgbouncer=True, pool_size=1)
    try:
        for sql in (
            "SET search_path TO public",
            "set session timezone = 'UTC'",
            "SELECT 1; SET application_name = 'x'",
            "SELECT pg_advisory_lock(42)",
            "SELECT pg_try_advisory_lock_shared(1, 2)",
            "PREPARE q AS SELECT 1",
            "LISTEN jobs",
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
        ):
            with pytest.raises(NotSupportedError, match="pgbouncer = true"):
                db.execute(sql)
        with pytest.raises(NotSupportedError, match="SET LOCAL"), db.transaction() as conn:
            conn.execute("SET statement_timeout = 1000")
        with db.transaction() as conn:  # transaction-scoped forms, and the words in literals, are fine
            conn.execute("SET LOCAL statement_timeout = 1000")
            conn.execute("SET TRANSACTION READ ONLY")
            conn.execute("SELECT pg_advisory_xact_lock(42)")
            assert conn.execute("SELECT 'SET x = 1; pg_advisory_lock(1)' AS text").scalar().startswith("SET")
        with pytest.raises(NotSupportedError, match="PgBouncer"):
            db.listen("jobs")  # type: ignore[attr-defined]
    finally:
        db.shutdown()


def test_what_pgbouncer_would_drop_silently_is_a_configuration_error(pg_url: str) -> None:
    with pytest.raises(ConfigurationError, match="statement_timeout"):
        connect(pg_url, pgbouncer=True, statement_timeout=5)
    with pytest.raises(ConfigurationError, match="contradicts pgbouncer"):
        connect(pg_url, pgbouncer=True, prepare_threshold=10)
    with pytest.raises(ConfigurationError, match="configures the psycopg driver"):
        connect(pg_url.replace("postgresql://", "postgresql+pg8000://"), pgbouncer=True)
