"""The spec's PostgreSQL examples (section 5, and the shared sections 6-8), run as written."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from structum_lab.config import set_config_provider
from structum_lab.plugins.database import (
    AsyncPostgresDatabase,
    HealthStatus,
    PostgresDatabase,
    from_config,
)
from structum_lab.plugins.dynaconf import DynaconfConfigProvider

SCHEMA = """
CREATE TABLE users (
    id SERIAL PRIMARY KEY,
    username VARCHAR(50) UNIQUE NOT NULL,
    email VARCHAR(255) UNIQUE NOT NULL
);
CREATE TABLE profiles (user_id INT REFERENCES users(id), bio TEXT);
CREATE TABLE accounts (id INT PRIMARY KEY, balance INT NOT NULL);
CREATE TABLE orders (id SERIAL PRIMARY KEY, item TEXT NOT NULL);
CREATE TABLE order_items (order_id INT NOT NULL, sku TEXT UNIQUE NOT NULL);
INSERT INTO users (username, email) VALUES ('alice', 'alice@example.com');
"""


@pytest.fixture
def project(tmp_path: Path, pg_schema_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project directory laid out as the Quick Start says, pointing at a fresh schema."""
    (tmp_path / "config" / "app").mkdir(parents=True)
    (tmp_path / "config" / "app" / "database.toml").write_text(
        textwrap.dedent(
            """
            [default]
            url = "postgresql://user:password@localhost:5432/mydb"
            pool_size = 10
            pool_timeout = 30
            echo = false  # Set true to log SQL queries
            """
        )
    )
    (tmp_path / "config" / ".secrets.toml").write_text(f'[database]\nurl = "{pg_schema_url}"\n')
    monkeypatch.chdir(tmp_path)
    provider = DynaconfConfigProvider(root_path=".")
    provider.auto_discover()
    set_config_provider(provider)
    with PostgresDatabase(pg_schema_url, pool_size=1) as setup, setup.transaction() as conn:
        conn.execute(SCHEMA)
    yield tmp_path
    set_config_provider(None)


@pytest.fixture
def db(project: Path) -> Iterator[PostgresDatabase]:
    # Section 5.1, "From config"
    database = PostgresDatabase.from_config()
    yield database
    database.shutdown()


def test_initialization_from_config(db: PostgresDatabase) -> None:
    # Section 5.1: pool_size = 10 and pool_timeout = 30 from config/app/database.toml.
    info = db.get_pool_info()
    assert info["size"] == 10 and info["min_size"] == 10 and info["max_size"] == 20
    assert db.name == "database" and db.backend == "psycopg"
    assert db.settings.timeout == 30
    with db.transaction() as conn:
        assert conn.execute("SELECT username FROM users").scalar() == "alice"


def test_manual_initialization(pg_url: str) -> None:
    # Section 5.1, "Manual": min_size/max_size/timeout are psycopg_pool's and win over pool_size.
    db = PostgresDatabase(
        url=pg_url,
        pool_size=10,
        min_size=2,  # Minimum connections to maintain
        max_size=20,  # Maximum connections
        timeout=5.0,
    )
    try:
        info = db.get_pool_info()
        assert (info["min_size"], info["size"], info["max_size"]) == (2, 2, 20)
        assert db.pool.min_size == 2 and db.pool.max_size == 20 and db.pool.timeout == 5.0
        with db.transaction() as conn:
            assert conn.execute("SELECT 1 AS one").fetchone() == {"one": 1}
    finally:
        db.shutdown()


def test_core_from_config_picks_this_backend(project: Path) -> None:
    database = from_config()
    try:
        assert isinstance(database, PostgresDatabase)
    finally:
        database.shutdown()


def test_query_execution_with_percent_s_and_a_tuple(db: PostgresDatabase, capsys: pytest.CaptureFixture[str]) -> None:
    # Section 5.2, as written.
    user_id = 1
    with db.transaction() as conn:
        # Execute with parameters
        result = conn.execute(
            "SELECT * FROM users WHERE id = %s",
            (user_id,),  # Note: tuple for parameters
        )

        # Fetch results
        row = result.fetchone()
        if row:
            print(f"User: {row['username']}")
    assert capsys.readouterr().out == "User: alice\n"


def test_async_support_as_written(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Section 5.3, as written, including asyncio.run() and from_config() inside main().
    user_id = 1

    async def main() -> None:
        db = AsyncPostgresDatabase.from_config()

        async with db.transaction() as conn:
            result = await conn.execute("SELECT * FROM users WHERE id = $1", [user_id])

            user = await result.fetchone()
            print(f"User: {user['username']}")

        await db.shutdown()

    asyncio.run(main())
    assert capsys.readouterr().out == "User: alice\n"


async def test_async_support_in_the_test_loop(project: Path) -> None:
    # Section 5.3 inside pytest-asyncio's loop, and a database built outside any coroutine.
    db = AsyncPostgresDatabase.from_config()
    async with db.transaction() as conn:
        result = await conn.execute("SELECT * FROM users WHERE id = $1", [1])
        user = await result.fetchone()
        assert user is not None and user["username"] == "alice"
    assert db.get_pool_info()["checked_out"] == 0
    await db.shutdown()


def test_pool_monitoring(db: PostgresDatabase, capsys: pytest.CaptureFixture[str]) -> None:
    # Section 6.2
    info = db.get_pool_info()
    print(f"Checked out: {info['checked_out']}")
    print(f"Available: {info['available']}")
    print(f"Total: {info['total']}")
    print(f"Overflow: {info['overflow']}")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Checked out: 0" and lines[3] == "Overflow: 0"


def test_transactions_section_7(db: PostgresDatabase) -> None:
    # 7.2 explicit commit / rollback
    with db.transaction() as conn:
        conn.execute("INSERT INTO accounts (id, balance) VALUES (1, 500), (2, 0)")
    conn = db.get_connection()
    try:
        conn.execute("UPDATE accounts SET balance = balance - 100 WHERE id = 1")
        conn.execute("UPDATE accounts SET balance = balance + 100 WHERE id = 2")
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    finally:
        conn.close()

    # 7.3 savepoints, with a failing insert rolled back to the savepoint
    with db.transaction() as conn:
        conn.execute("INSERT INTO order_items (order_id, sku) VALUES (0, 'dup')")
        conn.execute("INSERT INTO orders (item) VALUES ('book')")
        conn.execute("SAVEPOINT sp1")
        try:
            conn.execute("INSERT INTO order_items (order_id, sku) VALUES (1, 'dup')")
        except Exception:
            conn.execute("ROLLBACK TO SAVEPOINT sp1")

    # 7.4 nested transactions
    def create_user_with_profile(username: str, email: str) -> int:
        with db.transaction() as conn:
            result = conn.execute(
                "INSERT INTO users (username, email) VALUES (:u, :e) RETURNING id", {"u": username, "e": email}
            )
            user_id: int = result.fetchone()["id"]  # type: ignore[index]
            create_profile(conn, user_id)
            return user_id

    def create_profile(conn: Any, user_id: int) -> None:
        conn.execute("INSERT INTO profiles (user_id, bio) VALUES (:id, :bio)", {"id": user_id, "bio": "New user"})

    user_id = create_user_with_profile("bob", "bob@example.com")

    with db.transaction() as conn:
        balances = [r["balance"] for r in conn.execute("SELECT balance FROM accounts ORDER BY id").fetchall()]
        assert balances == [400, 100]
        assert conn.execute("SELECT item FROM orders").fetchall() == [{"item": "book"}]
        assert conn.execute("SELECT bio FROM profiles WHERE user_id = :id", {"id": user_id}).scalar() == "New user"


def test_health_check_example(db: PostgresDatabase, capsys: pytest.CaptureFixture[str]) -> None:
    # Section 8.1
    result = db.health_check()
    print(f"Status: {result.status}")
    print(f"Message: {result.message}")
    print(f"Latency: {result.latency_ms}ms")
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "Status: HealthStatus.HEALTHY",
        "Message: Database connection OK",
        f"Latency: {result.latency_ms}ms",
    ]
    assert result.status == HealthStatus.HEALTHY and result.details["backend"] == "psycopg"
