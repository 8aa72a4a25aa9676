"""The specification's examples that hold on every backend (sections 6.1-6.2, 7.2-7.4, 8.1),
run as written: the sync module as the spec shows them, the asyncio one as an asyncio
application writes them."""

from __future__ import annotations

import pytest

from ..._contract.health import HealthStatus
from .base_async import AsyncKitBase
from .protocols_async import AsyncKitConnection, AsyncKitDatabase
from .support import (
    Opener,
    requires,
)
from .support import async_fixture as loop_fixture  # sync: from pytest import fixture as loop_fixture

__all__ = ["AsyncSpecExampleTests"]

SCHEMA = """
CREATE TABLE users (id {serial}, username VARCHAR(50) UNIQUE NOT NULL, email VARCHAR(255) UNIQUE NOT NULL);
CREATE TABLE profiles (user_id INT REFERENCES users(id), bio TEXT);
CREATE TABLE accounts (id INT PRIMARY KEY, balance INT NOT NULL);
CREATE TABLE orders (id {serial}, item TEXT NOT NULL);
CREATE TABLE order_items (order_id INT NOT NULL, sku VARCHAR(50) UNIQUE NOT NULL);
INSERT INTO users (username, email) VALUES ('alice', 'alice@example.com')
"""


class AsyncSpecExampleTests(AsyncKitBase):
    """The spec's pool, transaction, savepoint and health examples."""

    @loop_fixture
    async def spec_db(self, open_database: Opener[AsyncKitDatabase]) -> AsyncKitDatabase:
        """A database with the spec's tables (``serial_key`` for their ids)."""
        # pool_size and pool_timeout as the spec's config/app/database.toml sets them
        database = open_database(pool_size=10, pool_timeout=30)
        async with database.transaction() as conn:
            for statement in SCHEMA.format(serial=self.serial_key).split(";"):
                await conn.execute(statement)
        return database

    async def test_pool_configuration_and_monitoring(
        self, open_database: Opener[AsyncKitDatabase], capsys: pytest.CaptureFixture[str]
    ) -> None:
        # Section 6.1 and 6.2
        url = open_database.url
        db = open_database(url, pool_size=10, max_overflow=20, pool_timeout=30, pool_recycle=3600, pool_pre_ping=True)
        info = db.get_pool_info()
        print(f"Checked out: {info['checked_out']}")
        print(f"Available: {info['available']}")
        print(f"Total: {info['total']}")
        print(f"Overflow: {info['overflow']}")
        await db.shutdown()
        lines = capsys.readouterr().out.splitlines()
        assert lines[0] == "Checked out: 0" and lines[3] == "Overflow: 0"
        assert lines[1] == f"Available: {info['available']}" and lines[2] == f"Total: {info['total']}"
        if not self.pool_prefills:  # the pool opens connections when first asked for
            assert lines == ["Checked out: 0", "Available: 0", "Total: 0", "Overflow: 0"]

    async def test_explicit_commit_rollback(self, spec_db: AsyncKitDatabase) -> None:
        # Section 7.2
        db = spec_db
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO accounts (id, balance) VALUES (1, 500), (2, 0)")
        conn = await db.get_connection()
        try:
            await conn.execute("UPDATE accounts SET balance = balance - 100 WHERE id = 1")
            await conn.execute("UPDATE accounts SET balance = balance + 100 WHERE id = 2")
            await conn.commit()
        except Exception:
            await conn.rollback()
            raise
        finally:
            await conn.close()
        async with db.transaction() as c:
            rows = await (await c.execute("SELECT balance FROM accounts ORDER BY id")).fetchall()
            assert [r["balance"] for r in rows] == [400, 100]

    @requires("savepoints")
    async def test_savepoints(self, spec_db: AsyncKitDatabase) -> None:
        # Section 7.3, with a failing insert rolled back to the savepoint
        db = spec_db
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO order_items (order_id, sku) VALUES (0, 'dup')")
            await conn.execute("INSERT INTO orders (item) VALUES ('book')")
            await conn.execute("SAVEPOINT sp1")
            try:
                await conn.execute("INSERT INTO order_items (order_id, sku) VALUES (1, 'dup')")
            except Exception:
                await conn.execute("ROLLBACK TO SAVEPOINT sp1")
        async with db.transaction() as conn:
            assert await (await conn.execute("SELECT item FROM orders")).fetchall() == [{"item": "book"}]
            assert await (await conn.execute("SELECT order_id FROM order_items")).fetchall() == [{"order_id": 0}]

    async def test_nested_transactions(self, spec_db: AsyncKitDatabase) -> None:
        # Section 7.4 (with RETURNING where the backend declares it, else a query for the id)
        db = spec_db
        returning = db.features.returning

        async def create_user_with_profile(username: str, email: str) -> int:
            async with db.transaction() as conn:
                if returning:
                    result = await conn.execute(
                        "INSERT INTO users (username, email) VALUES (:u, :e) RETURNING id", {"u": username, "e": email}
                    )
                else:
                    await conn.execute(
                        "INSERT INTO users (username, email) VALUES (:u, :e)", {"u": username, "e": email}
                    )
                    result = await conn.execute("SELECT id FROM users WHERE username = :u", {"u": username})
                row = await result.fetchone()
                assert row is not None
                user_id: int = row["id"]
                await create_profile(conn, user_id)
                return user_id

        async def create_profile(conn: AsyncKitConnection, user_id: int) -> None:
            await conn.execute(
                "INSERT INTO profiles (user_id, bio) VALUES (:id, :bio)", {"id": user_id, "bio": "New user"}
            )

        user_id = await create_user_with_profile("bob", "bob@example.com")
        async with db.transaction() as conn:
            bio = await (await conn.execute("SELECT bio FROM profiles WHERE user_id = :id", {"id": user_id})).scalar()
            assert bio == "New user"

    async def test_health_check_example(self, spec_db: AsyncKitDatabase, capsys: pytest.CaptureFixture[str]) -> None:
        # Section 8.1
        result = await spec_db.health_check()
        print(f"Status: {result.status}")
        print(f"Message: {result.message}")
        print(f"Latency: {result.latency_ms}ms")
        lines = capsys.readouterr().out.splitlines()
        assert lines == [
            "Status: HealthStatus.HEALTHY",
            "Message: Database connection OK",
            f"Latency: {result.latency_ms}ms",
        ]
        assert lines[2].startswith("Latency: ") and lines[2].endswith("ms")
        assert result.status == HealthStatus.HEALTHY and result.status.value == "healthy"
        assert result.details["backend"] == self.backend
