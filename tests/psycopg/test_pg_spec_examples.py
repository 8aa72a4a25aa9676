"""The spec's PostgreSQL examples (section 5), run as written. The sections every backend
shares (6-8): tests/semantics/test_spec_examples_async.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from structum_lab.config import set_config_provider
from structum_lab.plugins.database import (
    AsyncPostgresDatabase,
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
INSERT INTO users (username, email) VALUES ('alice', 'alice@example.com');
"""


@pytest.fixture
def project(quick_start_project: Path, pg_schema_url: str) -> Path:
    """The Quick Start's project with its config provider set, on a schema with the spec's tables."""
    provider = DynaconfConfigProvider(root_path=".")
    provider.auto_discover()
    set_config_provider(provider)
    with PostgresDatabase(pg_schema_url, pool_size=1) as setup, setup.transaction() as conn:
        conn.execute(SCHEMA)
    return quick_start_project


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
