"""The transaction rules of docs/transactions.md (1-3, 5-7), observed from a second connection.

``observer`` is a second, independent pool on the same database: it sees only what is
committed, so each rule is checked as another user of the database would see it.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from ..._contract.errors import DatabaseError, IntegrityError, ProgrammingError, TransactionError, TransientError
from ..._engine.flavour import ASYNC
from .base_async import AsyncKitBase, balances, names
from .protocols_async import AsyncKitDatabase
from .support import Opener, raises, requires

__all__ = ["AsyncTransactionTests"]


class _Boom(Exception):
    pass


class AsyncTransactionTests(AsyncKitBase):
    """Commit and rollback, savepoints, isolation and read-only, ended connections, ``get_connection()``,
    ``db.execute()``."""

    # -- rule 1: commit on success, roll back on any exception ---------------------------

    async def test_commit_on_success_visible_only_after(self, db: AsyncKitDatabase, observer: AsyncKitDatabase) -> None:
        async with db.transaction() as conn:
            await conn.execute("UPDATE acct SET balance = balance - 10 WHERE id = :id", {"id": 1})
            await conn.execute("INSERT INTO items (id, name) VALUES (:id, :name)", {"id": 1, "name": "a"})
            assert (await balances(observer))[1] == 100
            assert await names(observer) == []
        assert await balances(observer) == {1: 90, 2: 100}
        assert await names(observer) == ["a"]

    async def test_rollback_on_exception_and_reraise(self, db: AsyncKitDatabase, observer: AsyncKitDatabase) -> None:
        async with raises(ZeroDivisionError), db.transaction() as conn:
            await conn.execute("UPDATE acct SET balance = 0 WHERE id = 1")
            await conn.execute("UPDATE acct SET balance = 0 WHERE id = 2")
            _ = 1 / 0
        assert await balances(observer) == {1: 100, 2: 100}
        async with raises(_Boom), db.transaction() as conn:
            await conn.execute("INSERT INTO items (id, name) VALUES (1, 'a')")
            await conn.execute("INSERT INTO items (id, name) VALUES (2, 'b')")
            raise _Boom
        assert await names(observer) == []
        assert db.get_pool_info()["checked_out"] == 0

    async def test_failed_statement_rolls_back_the_whole_transaction(
        self, db: AsyncKitDatabase, observer: AsyncKitDatabase
    ) -> None:
        async with raises(IntegrityError) as info, db.transaction() as conn:
            await conn.execute("INSERT INTO items (id, name) VALUES (1, 'a')")
            await conn.execute("INSERT INTO items (id, name) VALUES (2, 'a')")
        assert info.value.__cause__ is not None
        assert info.value.backend == self.backend
        self.check_error("unique_violation", info.value)
        assert await names(observer) == []

    # -- rule 2: nesting creates savepoints ----------------------------------------------

    @requires("savepoints")
    async def test_nested_transaction_is_a_savepoint(self, db: AsyncKitDatabase, observer: AsyncKitDatabase) -> None:
        async with db.transaction() as outer:
            await outer.execute("UPDATE acct SET balance = 1 WHERE id = 1")
            await outer.execute("INSERT INTO items (id, name) VALUES (1, 'outer')")
            assert db.in_transaction()
            async with raises(KeyError), db.transaction() as inner:
                assert inner is outer
                await inner.execute("UPDATE acct SET balance = 2 WHERE id = 2")
                await inner.execute("INSERT INTO items (id, name) VALUES (2, 'inner')")
                raise KeyError("undo the inner part only")
            assert db.get_pool_info()["checked_out"] == 1
            async with outer.transaction():
                await outer.execute("UPDATE acct SET balance = 3 WHERE id = 2")
            async with raises(ValueError), outer.transaction():
                await outer.execute("UPDATE acct SET balance = 4 WHERE id = 1")
                raise ValueError
        assert not db.in_transaction()
        assert await balances(observer) == {1: 1, 2: 3}
        assert await names(observer) == ["outer"]
        assert db.get_pool_info()["checked_out"] == 0

    @requires("savepoints")
    async def test_savepoint_api_rolls_back_only_the_inner_block(
        self, db: AsyncKitDatabase, observer: AsyncKitDatabase
    ) -> None:
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO items (id, name) VALUES (1, 'order')")
            async with raises(IntegrityError), conn.transaction():
                await conn.execute("INSERT INTO items (id, name) VALUES (2, 'item')")
                await conn.execute("INSERT INTO items (id, name) VALUES (3, 'order')")
            async with conn.transaction(), conn.transaction():  # nested savepoints
                await conn.execute("INSERT INTO items (id, name) VALUES (4, 'kept')")
        assert await names(observer) == ["order", "kept"]

    @requires("savepoints")
    async def test_raw_savepoint_statements_as_in_the_spec(
        self, db: AsyncKitDatabase, observer: AsyncKitDatabase
    ) -> None:
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO items (id, name) VALUES (1, 'order')")
            savepoint = await conn.execute("SAVEPOINT sp1")
            assert savepoint.rowcount in (-1, 0)
            try:
                await conn.execute("INSERT INTO items (id, name) VALUES (2, 'order')")  # duplicate name
            except DatabaseError:
                await conn.execute("ROLLBACK TO SAVEPOINT sp1")
            await conn.execute("INSERT INTO items (id, name) VALUES (3, 'after')")
        assert await names(observer) == ["order", "after"]

    if ASYNC:  # ASYNC

        async def test_concurrent_tasks_get_their_own_transactions(self, db: AsyncKitDatabase) -> None:
            async def one(i: int) -> None:
                async with db.transaction() as conn:
                    await conn.execute("UPDATE acct SET balance = balance + 1 WHERE id = :id", {"id": 1 + i % 2})

            async with db.transaction() as outer:
                await outer.execute("SELECT 1")

                async def child() -> tuple[bool, bool]:
                    inherited = db.in_transaction()
                    async with db.transaction() as mine:
                        await mine.execute("SELECT 1")
                        return inherited, mine is outer

                # A task created inside a transaction must not join it: it gets its own.
                assert await asyncio.create_task(child()) == (False, False)
            await asyncio.gather(*(one(i) for i in range(50)))
            assert await balances(db) == {1: 125, 2: 125}
            assert db.get_pool_info()["checked_out"] == 0

    else:

        def test_another_thread_gets_its_own_transaction(
            self, db: AsyncKitDatabase, observer: AsyncKitDatabase
        ) -> None:
            if self.locking_isolation:
                pytest.skip("the thread's INSERT would wait for the write lock of the open transaction")
            seen: list[bool] = []
            with db.transaction() as conn:  # type: ignore[attr-defined]
                conn.execute("INSERT INTO items (id, name) VALUES (1, 'main')")

                def other() -> None:
                    with db.transaction() as mine:  # type: ignore[attr-defined]
                        seen.append(mine is conn)
                        mine.execute("INSERT INTO items (id, name) VALUES (2, 'thread')")

                thread = threading.Thread(target=other)
                thread.start()
                thread.join()
            assert seen == [False]
            assert names(observer) == ["main", "thread"]  # type: ignore[comparison-overlap]

    # -- rule 3: isolation level and read-only, per transaction ---------------------------

    @requires("readonly")
    async def test_readonly_transaction(self, db: AsyncKitDatabase, observer: AsyncKitDatabase) -> None:
        async with db.transaction(readonly=True) as conn:
            assert await (await conn.execute("SELECT COUNT(*) FROM acct")).scalar() == 2
        for write in ("UPDATE acct SET balance = 0 WHERE id = 1", "INSERT INTO items (id, name) VALUES (1, 'nope')"):
            async with raises(ProgrammingError) as info, db.transaction(readonly=True) as conn:
                await conn.execute(write)
            self.check_error("readonly_write", info.value)
        assert await balances(observer) == {1: 100, 2: 100}
        assert await names(observer) == []
        # The read-only flag does not stick to the pooled connections.
        for i in range(6):
            async with db.transaction() as conn:
                await conn.execute("INSERT INTO items (id, name) VALUES (:id, 'yes')", {"id": i})
                await conn.execute("DELETE FROM items")
        assert await names(observer) == []
        async with db.transaction() as conn:
            await conn.execute("UPDATE acct SET balance = 7 WHERE id = 1")
            await conn.execute("INSERT INTO items (id, name) VALUES (2, 'yes')")
        assert (await balances(observer))[1] == 7
        assert await names(observer) == ["yes"]

    @requires("isolation_levels")
    async def test_repeatable_read_keeps_its_snapshot(
        self, db: AsyncKitDatabase, observer: AsyncKitDatabase, open_database: Opener[AsyncKitDatabase]
    ) -> None:
        if "repeatable_read" not in db.features.isolation_levels:
            pytest.skip(f"the {self.backend} backend does not declare repeatable_read")
        if self.locking_isolation:
            # Locks, not snapshots: a writer cannot commit under an open reader.
            impatient = open_database(None, pool_size=1, **self.impatient_options)
            async with db.transaction(isolation="repeatable_read") as conn:
                assert await (await conn.execute("SELECT balance FROM acct WHERE id = 1")).scalar() == 100
                async with raises(TransientError), impatient.transaction() as other:
                    await other.execute("UPDATE acct SET balance = 5 WHERE id = 1")
                assert await (await conn.execute("SELECT balance FROM acct WHERE id = 1")).scalar() == 100
            assert (await balances(observer))[1] == 100
            return
        async with db.transaction(isolation="repeatable_read") as conn:
            assert await (await conn.execute("SELECT balance FROM acct WHERE id = 1")).scalar() == 100
            async with observer.transaction() as other:
                await other.execute("UPDATE acct SET balance = 5 WHERE id = 1")
            assert await (await conn.execute("SELECT balance FROM acct WHERE id = 1")).scalar() == 100
        async with db.transaction(isolation="read_committed") as conn:
            assert await (await conn.execute("SELECT balance FROM acct WHERE id = 1")).scalar() == 5

    @requires("isolation_levels")
    async def test_every_declared_isolation_level_runs_and_does_not_stick(self, db: AsyncKitDatabase) -> None:
        for level in sorted(db.features.isolation_levels):
            async with db.transaction(isolation=level) as conn:
                await conn.execute("UPDATE acct SET balance = balance + 1 WHERE id = 1")
        async with db.transaction() as conn:
            await conn.execute("UPDATE acct SET balance = balance + 1 WHERE id = 1")
        assert (await balances(db))[1] == 100 + len(db.features.isolation_levels) + 1
        assert db.get_pool_info()["checked_out"] == 0

    async def test_isolation_on_a_nested_transaction_is_refused(self, db: AsyncKitDatabase) -> None:
        async with (
            db.transaction(),
            raises(TransactionError, match="outermost"),
            db.transaction(isolation="serializable"),
        ):
            pass

    # -- rule 5: a connection outlives its block only as an error -------------------------

    async def test_connection_after_block_is_an_error(self, db: AsyncKitDatabase) -> None:
        async with db.transaction() as conn:
            result = await conn.execute("SELECT 1 AS one")
        with pytest.raises(TransactionError, match="transaction has ended"):
            await conn.execute("SELECT 1")
        for call in (conn.commit, conn.rollback, conn.transaction().__aenter__):
            with pytest.raises(TransactionError):
                await call()
        with pytest.raises(TransactionError):
            await conn.executemany("SELECT :x", [{"x": 1}])
        assert conn.closed
        assert await result.fetchone() == {"one": 1}  # rows already fetched stay readable

    if ASYNC:  # ASYNC

        async def test_cancelled_task_rolls_back_and_leaves_the_pool_healthy(
            self, db: AsyncKitDatabase, observer: AsyncKitDatabase
        ) -> None:
            inside = asyncio.Event()

            async def victim() -> None:
                async with db.transaction() as conn:
                    await conn.execute("UPDATE acct SET balance = 0 WHERE id = 1")
                    inside.set()
                    await asyncio.sleep(30)

            task = asyncio.create_task(victim())
            await inside.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await balances(observer) == {1: 100, 2: 100}
            assert db.get_pool_info()["checked_out"] == 0
            assert (await db.health_check()).healthy

    # -- rule 6: get_connection(): you end the transaction --------------------------------

    async def test_get_connection_explicit_commit_rollback_close(
        self, db: AsyncKitDatabase, observer: AsyncKitDatabase
    ) -> None:
        conn = await db.get_connection()
        try:
            await conn.execute("INSERT INTO items (id, name) VALUES (1, 'committed')")
            await conn.commit()
            await conn.execute("INSERT INTO items (id, name) VALUES (2, 'rolled back')")
            await conn.rollback()
            await conn.execute("INSERT INTO items (id, name) VALUES (3, 'second commit')")
            await conn.commit()
            assert db.get_pool_info()["checked_out"] == 1
        finally:
            await conn.close()
        assert await names(observer) == ["committed", "second commit"]
        assert db.get_pool_info()["checked_out"] == 0
        await conn.close()  # idempotent

    async def test_close_without_commit_discards_the_work(
        self, db: AsyncKitDatabase, observer: AsyncKitDatabase
    ) -> None:
        conn = await db.get_connection()
        await conn.execute("INSERT INTO items (id, name) VALUES (1, 'lost')")
        await conn.close()
        assert await names(observer) == []

    # -- rule 7: one statement on its own: db.execute() -----------------------------------

    async def test_db_execute_runs_one_statement_on_its_own(
        self, db: AsyncKitDatabase, observer: AsyncKitDatabase
    ) -> None:
        result = await db.execute("UPDATE acct SET balance = :b WHERE id = :id", {"b": 7, "id": 1})
        assert result.rowcount == 1
        assert await balances(observer) == {1: 7, 2: 100}  # committed at once
        rows = await db.execute("SELECT id, balance FROM acct ORDER BY id")
        assert rows.keys() == ["id", "balance"]
        assert await rows.fetchone() == {"id": 1, "balance": 7}
        assert await rows.fetchall() == [{"id": 2, "balance": 100}]
        assert await rows.fetchone() is None
        assert await (await db.execute("SELECT COUNT(*) AS n FROM acct")).scalar() == 2
        assert db.get_pool_info()["checked_out"] == 0
        with pytest.raises(DatabaseError):
            await db.execute("SELECT * FROM no_such_table")
        assert db.get_pool_info()["checked_out"] == 0

    async def test_db_execute_inside_a_transaction_joins_it(
        self, db: AsyncKitDatabase, observer: AsyncKitDatabase
    ) -> None:
        async with raises(RuntimeError), db.transaction():
            await db.execute("UPDATE acct SET balance = 0 WHERE id = 1")
            assert await (await db.execute("SELECT balance FROM acct WHERE id = 1")).scalar() == 0
            raise RuntimeError
        assert await balances(observer) == {1: 100, 2: 100}

    # -- no leaks ----------------------------------------------------------------------------

    @requires("savepoints")
    async def test_no_leak_after_1000_mixed_transactions(self, db: AsyncKitDatabase) -> None:
        for i in range(1000):
            try:
                async with db.transaction() as conn:
                    await conn.execute("UPDATE acct SET balance = balance + 1 WHERE id = :id", {"id": 1 + i % 2})
                    if i % 3 == 0:
                        raise RuntimeError("roll this one back")
                    if i % 7 == 0:
                        async with conn.transaction():
                            await conn.execute("UPDATE acct SET balance = balance + 1 WHERE id = 1")
            except RuntimeError:
                pass
        info = db.get_pool_info()
        assert info["checked_out"] == 0
        assert info["available"] == info["total"] >= 1
        committed = [i for i in range(1000) if i % 3]
        expected_1 = 100 + sum(1 for i in committed if i % 2 == 0) + sum(1 for i in committed if i % 7 == 0)
        expected_2 = 100 + sum(1 for i in committed if i % 2 == 1)
        assert await balances(db) == {1: expected_1, 2: expected_2}
