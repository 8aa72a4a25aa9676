"""What a backend may or may not have, each test run where ``db.features`` says it does:
streaming, COPY, LISTEN/NOTIFY, transactional DDL (docs/results.md)."""

from __future__ import annotations

import pytest

from ..._contract.errors import ParameterError, ProgrammingError
from .base_async import AsyncKitBase, names
from .protocols_async import AsyncKitDatabase
from .support import raises, requires, unique_name

__all__ = ["AsyncCapabilityTests"]


class AsyncCapabilityTests(AsyncKitBase):
    """``conn.stream()``, ``copy_records()``/``copy_out()``, ``db.listen()``, DDL in a transaction."""

    @requires("server_side_cursors")
    async def test_stream_reads_every_row_in_batches(self, db: AsyncKitDatabase) -> None:
        rows = [{"id": i, "name": f"n{i}"} for i in range(250)]
        async with db.transaction() as conn:
            await conn.executemany("INSERT INTO items (id, name) VALUES (:id, :name)", rows)
            streamed = [row async for row in conn.stream("SELECT id, name FROM items ORDER BY id", batch_size=100)]
            assert streamed == rows
            query = "SELECT id FROM items WHERE id >= :low ORDER BY id"
            assert [row["id"] async for row in conn.stream(query, {"low": 245}, batch_size=2)] == [
                245,
                246,
                247,
                248,
                249,
            ]
            with pytest.raises(ParameterError, match="batch_size"):
                async for _ in conn.stream("SELECT id FROM items", batch_size=0):
                    pass
            assert await (await conn.execute("SELECT COUNT(*) FROM items")).scalar() == 250

    @requires("server_side_cursors")
    async def test_a_stream_left_early_is_closed_with_its_transaction(
        self, db: AsyncKitDatabase, observer: AsyncKitDatabase
    ) -> None:
        async with db.transaction() as conn:
            await conn.executemany(
                "INSERT INTO items (id, name) VALUES (:id, :name)", [{"id": i, "name": f"n{i}"} for i in range(50)]
            )
            async for row in conn.stream("SELECT id FROM items ORDER BY id", batch_size=10):
                assert row == {"id": 0}
                break
        assert len(await names(observer)) == 50  # the transaction committed past the open cursor
        assert db.get_pool_info()["checked_out"] == 0

    @requires("copy")
    async def test_copy_records_in_and_out(self, db: AsyncKitDatabase, observer: AsyncKitDatabase) -> None:
        async with db.transaction() as conn:
            count = await conn.copy_records("items", ["id", "name"], [(i, f"n{i}") for i in range(1000)])
            assert count == 1000
            out = [
                record
                async for record in conn.copy_out("SELECT id, name FROM items WHERE id < :n ORDER BY id", {"n": 3})
            ]
            assert out == [(0, "n0"), (1, "n1"), (2, "n2")]
        assert len(await names(observer)) == 1000

    @requires("listen_notify")
    async def test_notifications_arrive_when_the_transaction_commits(self, db: AsyncKitDatabase) -> None:
        channel = unique_name("kit")
        received: list[tuple[str, str]] = []
        async with db.listen(channel, timeout=5) as notifications:
            async with raises(RuntimeError), db.transaction() as conn:
                await conn.notify(channel, "rolled back")
                raise RuntimeError
            async with db.transaction() as conn:
                await conn.notify(channel, "42")
            async for note in notifications:
                received.append((note.channel, note.payload))
                break
        assert received == [(channel, "42")]

    @requires("transactional_ddl")
    async def test_ddl_rolls_back_with_its_transaction(
        self, db: AsyncKitDatabase, observer: AsyncKitDatabase, table: str
    ) -> None:
        async with raises(RuntimeError), db.transaction() as conn:
            await conn.execute(f"CREATE TABLE {table} (n INT)")
            await conn.execute(f"INSERT INTO {table} (n) VALUES (1)")
            raise RuntimeError
        with pytest.raises(ProgrammingError):
            await observer.execute(f"SELECT n FROM {table}")
