"""Transaction semantics, identical on every backend, sync and asyncio (docs/transactions.md).

Observed from a second, independent database (``observer``), which sees only what is
committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import pytest
from _flavours import Opener, raises

from structum_lab.plugins.database import (
    DatabaseError,
    IntegrityError,
    ProgrammingError,
    SerializationError,
    TransactionError,
    TransientError,
    run_transaction_async,
)
from structum_lab.plugins.database.kit import ASYNC

DDL = (
    "CREATE TABLE acct (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)",
    "CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(50) NOT NULL UNIQUE)",
)


@pytest.fixture
async def db(open_db_async: Opener) -> Any:
    database = open_db_async(pool_size=5, max_overflow=0, pool_timeout=10)
    async with database.transaction() as conn:
        for statement in DDL:
            await conn.execute(statement)
        await conn.executemany("INSERT INTO acct (id, balance) VALUES (:id, :b)", [{"id": i, "b": 100} for i in (1, 2)])
    return database


@pytest.fixture
def observer(open_db_async: Opener) -> Any:
    """A second, independent pool: sees only what is committed."""
    return open_db_async(pool_size=1)


async def balances(db: Any) -> dict[int, int]:
    async with db.transaction() as conn:
        result = await conn.execute("SELECT id, balance FROM acct ORDER BY id")
        return {r["id"]: r["balance"] async for r in result}


async def names(db: Any) -> list[str]:
    async with db.transaction() as conn:
        return [r["name"] for r in await (await conn.execute("SELECT name FROM items ORDER BY id")).fetchall()]


# -- rule 1: commit on success, roll back on any exception -------------------------------


async def test_commit_on_success_visible_only_after(db: Any, observer: Any) -> None:
    async with db.transaction() as conn:
        await conn.execute("UPDATE acct SET balance = balance - 10 WHERE id = :id", {"id": 1})
        await conn.execute("INSERT INTO items (id, name) VALUES (:id, :name)", {"id": 1, "name": "a"})
        assert (await balances(observer))[1] == 100
        assert await names(observer) == []
    assert await balances(observer) == {1: 90, 2: 100}
    assert await names(observer) == ["a"]


async def test_rollback_on_exception_and_reraise(db: Any, observer: Any) -> None:
    class Boom(Exception):
        pass

    async with raises(ZeroDivisionError), db.transaction() as conn:
        await conn.execute("UPDATE acct SET balance = 0 WHERE id = 1")
        await conn.execute("UPDATE acct SET balance = 0 WHERE id = 2")
        _ = 1 / 0
    assert await balances(observer) == {1: 100, 2: 100}
    async with raises(Boom), db.transaction() as conn:
        await conn.execute("INSERT INTO items (id, name) VALUES (1, 'a')")
        await conn.execute("INSERT INTO items (id, name) VALUES (2, 'b')")
        raise Boom
    assert await names(observer) == []
    assert db.get_pool_info()["checked_out"] == 0


async def test_failed_statement_rolls_back_the_whole_transaction(db: Any, observer: Any, open_db_async: Opener) -> None:
    async with raises(IntegrityError) as info, db.transaction() as conn:
        await conn.execute("INSERT INTO items (id, name) VALUES (1, 'a')")
        await conn.execute("INSERT INTO items (id, name) VALUES (2, 'a')")
    assert info.value.__cause__ is not None
    assert info.value.backend == open_db_async.backend
    if open_db_async.dialect == "postgresql":
        assert info.value.sqlstate == "23505"
    if open_db_async.backend == "psycopg":
        import psycopg

        assert isinstance(info.value.__cause__, psycopg.errors.UniqueViolation)
    assert await names(observer) == []


# -- rule 2: nesting creates savepoints ----------------------------------------------------


async def test_nested_transaction_is_a_savepoint(db: Any, observer: Any) -> None:
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


async def test_savepoint_api_rolls_back_only_the_inner_block(db: Any, observer: Any) -> None:
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO items (id, name) VALUES (1, 'order')")
        async with raises(IntegrityError), conn.transaction():
            await conn.execute("INSERT INTO items (id, name) VALUES (2, 'item')")
            await conn.execute("INSERT INTO items (id, name) VALUES (3, 'order')")
        async with conn.transaction(), conn.transaction():  # nested savepoints
            await conn.execute("INSERT INTO items (id, name) VALUES (4, 'kept')")
    assert await names(observer) == ["order", "kept"]


async def test_raw_savepoint_statements_as_in_the_spec(db: Any, observer: Any) -> None:
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

    async def test_concurrent_tasks_get_their_own_transactions(db: Any) -> None:
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
    # On SQLite the thread's INSERT would wait for the write lock of the open transaction.
    @pytest.mark.dialects("postgresql", "mysql")
    def test_another_thread_gets_its_own_transaction(db: Any, observer: Any) -> None:
        seen: list[bool] = []
        with db.transaction() as conn:
            conn.execute("INSERT INTO items (id, name) VALUES (1, 'main')")

            def other() -> None:
                with db.transaction() as mine:
                    seen.append(mine is conn)
                    mine.execute("INSERT INTO items (id, name) VALUES (2, 'thread')")

            thread = threading.Thread(target=other)
            thread.start()
            thread.join()
        assert seen == [False]
        assert names(observer) == ["main", "thread"]


# -- rule 3: isolation level and read-only, per transaction -------------------------------


async def test_readonly_transaction(db: Any, observer: Any, open_db_async: Opener) -> None:
    async with db.transaction(readonly=True) as conn:
        assert await (await conn.execute("SELECT COUNT(*) FROM acct")).scalar() == 2
    for write in ("UPDATE acct SET balance = 0 WHERE id = 1", "INSERT INTO items (id, name) VALUES (1, 'nope')"):
        async with raises(ProgrammingError) as info, db.transaction(readonly=True) as conn:
            await conn.execute(write)
        if open_db_async.dialect == "postgresql":
            assert "read-only" in str(info.value)
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


async def test_repeatable_read_keeps_its_snapshot(db: Any, observer: Any, open_db_async: Opener) -> None:
    if open_db_async.dialect == "sqlite":
        # SQLite isolates with locks, not snapshots: a writer cannot commit under an open reader.
        impatient = open_db_async(pool_size=1, connect_args={"timeout": 0.2})
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


async def test_isolation_on_a_nested_transaction_is_refused(db: Any) -> None:
    async with (
        db.transaction(),
        raises(TransactionError, match="outermost"),
        db.transaction(isolation="serializable"),
    ):
        pass


# -- rule 4: conflicts are a distinct error, and retrying is one call ---------------------


async def _increment_concurrently(db: Any, *, retry: bool) -> tuple[list[BaseException], list[int]]:
    """Two workers read the same row, meet at a barrier, then both write it.

    Under SERIALIZABLE one of them must lose: PostgreSQL reports 40001, MariaDB a
    deadlock (1213), SQLite SQLITE_BUSY (lock upgrade deadlock). With ``retry`` both
    go through run_transaction(). The workers are threads, or asyncio tasks.
    """
    barrier = asyncio.Barrier(2)  # sync: barrier = threading.Barrier(2, timeout=10)
    errors: list[BaseException] = []
    attempts: list[int] = []

    async def body(conn: Any) -> None:
        attempts.append(1)
        balance = await (await conn.execute("SELECT balance FROM acct WHERE id = 1")).scalar()
        if len(attempts) <= 2:  # only the first round meets at the barrier
            if ASYNC:  # ASYNC
                with contextlib.suppress(TimeoutError, asyncio.BrokenBarrierError):
                    await asyncio.wait_for(barrier.wait(), 10)
            else:
                with contextlib.suppress(threading.BrokenBarrierError):
                    barrier.wait()
        await conn.execute("UPDATE acct SET balance = :b WHERE id = 1", {"b": balance + 1})

    async def worker() -> None:
        try:
            if retry:
                await run_transaction_async(db, body, isolation="serializable", backoff=0.01)
            else:
                async with db.transaction(isolation="serializable") as conn:
                    await body(conn)
        except Exception as exc:
            errors.append(exc)
            await barrier.abort()

    if ASYNC:  # ASYNC
        await asyncio.gather(worker(), worker())
    else:
        threads = [threading.Thread(target=worker) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return errors, attempts


async def test_serialization_conflict_surfaces_as_a_core_error(db: Any, observer: Any, open_db_async: Opener) -> None:
    errors, _ = await _increment_concurrently(db, retry=False)
    assert len(errors) == 1, errors
    assert isinstance(errors[0], TransientError)
    if open_db_async.dialect == "postgresql":
        assert isinstance(errors[0], SerializationError) and errors[0].sqlstate == "40001"
    assert (await balances(observer))[1] == 101  # the winner committed, the loser left nothing


async def test_retry_helper_makes_both_conflicting_transactions_succeed(db: Any, observer: Any) -> None:
    errors, attempts = await _increment_concurrently(db, retry=True)
    assert errors == []
    assert len(attempts) >= 3  # at least one transaction ran again
    assert (await balances(observer))[1] == 102  # no increment lost


async def test_retry_refuses_to_run_inside_a_transaction(db: Any) -> None:
    async def nothing(conn: Any) -> None:
        return None

    async with db.transaction(), raises(TransactionError, match="outermost"):
        await run_transaction_async(db, nothing)


async def test_retry_gives_up_after_attempts(db: Any) -> None:
    calls = []

    async def always_conflicts(conn: Any) -> None:
        calls.append(1)
        raise SerializationError("simulated conflict", sqlstate="40001")

    with pytest.raises(TransientError):
        await run_transaction_async(db, always_conflicts, attempts=3, backoff=0)
    assert len(calls) == 3


async def test_failed_statement_without_savepoint(db: Any, observer: Any, open_db_async: Opener) -> None:
    """PostgreSQL aborts the whole transaction on an error; COMMIT would silently roll back,
    so the layer raises instead. MariaDB and SQLite undo only the failed statement."""
    dialect = open_db_async.dialect
    if dialect == "postgresql" and "asyncpg" not in db.url:
        async with raises(TransactionError, match="rolled back, not committed") as info, db.transaction() as conn:
            await conn.execute("UPDATE acct SET balance = 1 WHERE id = 1")
            with contextlib.suppress(DatabaseError):
                await conn.execute("INSERT INTO acct (id, balance) VALUES (1, 0)")  # duplicate key
        assert info.value.sqlstate == "25P02"
        assert await balances(observer) == {1: 100, 2: 100}
    elif dialect == "postgresql":
        # asyncpg does not expose the aborted state: COMMIT rolls back, as PostgreSQL decides.
        async with db.transaction() as conn:
            await conn.execute("UPDATE acct SET balance = 1 WHERE id = 1")
            with contextlib.suppress(DatabaseError):
                await conn.execute("INSERT INTO acct (id, balance) VALUES (1, 0)")
        assert await balances(observer) == {1: 100, 2: 100}
    else:
        async with db.transaction() as conn:
            await conn.execute("UPDATE acct SET balance = 1 WHERE id = 1")
            with contextlib.suppress(DatabaseError):
                await conn.execute("INSERT INTO acct (id, balance) VALUES (1, 0)")
        assert await balances(observer) == {1: 1, 2: 100}
    assert db.get_pool_info()["checked_out"] == 0


# -- rule 5: a connection outlives its block only as an error ------------------------------


async def test_connection_after_block_is_an_error(db: Any) -> None:
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

    async def test_cancelled_task_rolls_back_and_leaves_the_pool_healthy(db: Any, observer: Any) -> None:
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


# -- rule 6: get_connection(): you end the transaction -------------------------------------


async def test_get_connection_explicit_commit_rollback_close(db: Any, observer: Any) -> None:
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


async def test_close_without_commit_discards_the_work(db: Any, observer: Any) -> None:
    conn = await db.get_connection()
    await conn.execute("INSERT INTO items (id, name) VALUES (1, 'lost')")
    await conn.close()
    assert await names(observer) == []


# -- rule 7: one statement on its own: db.execute() ---------------------------------------


async def test_db_execute_runs_one_statement_on_its_own(db: Any, observer: Any) -> None:
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


async def test_db_execute_inside_a_transaction_joins_it(db: Any, observer: Any) -> None:
    async with raises(RuntimeError), db.transaction():
        await db.execute("UPDATE acct SET balance = 0 WHERE id = 1")
        assert await (await db.execute("SELECT balance FROM acct WHERE id = 1")).scalar() == 0
        raise RuntimeError
    assert await balances(observer) == {1: 100, 2: 100}


# -- results --------------------------------------------------------------------------------


async def test_result_api_rowcount_fetchmany_and_rows(db: Any, open_db_async: Opener) -> None:
    async with db.transaction() as conn:
        for i in range(1, 8):
            await conn.execute("INSERT INTO items (id, name) VALUES (:id, :name)", {"id": i, "name": f"n{i}"})
        assert (await conn.execute("UPDATE items SET name = name WHERE id > :n", {"n": 4})).rowcount == 3
        result = await conn.execute("SELECT id, name FROM items ORDER BY id")
        assert result.keys() == ["id", "name"]
        if open_db_async.dialect != "sqlite":  # SQLite counts no rows before they are read
            assert result.rowcount == 7
        first = await result.fetchone()
        assert first is not None
        assert first["id"] == 1 and first[1] == "n1" and first.name == "n1"
        assert dict(first) == {"id": 1, "name": "n1"}
        assert [r["id"] for r in await result.fetchmany(size=2)] == [2, 3]
        assert [r["id"] for r in await result.fetchmany()] == [4]
        assert [r["id"] async for r in result] == [5, 6, 7]
        assert await result.fetchone() is None
        assert await result.fetchall() == []
        assert await result.fetchmany(5) == []
        rest = await conn.execute("SELECT id, name FROM items ORDER BY id")
        assert (await rest.fetchone()) == {"id": 1, "name": "n1"}
        assert [r["id"] for r in await rest.fetchmany(size=2)] == [2, 3]
        assert [r["id"] for r in await rest.fetchall()] == [4, 5, 6, 7]
        assert await (await conn.execute("SELECT COUNT(*) AS n FROM items")).scalar() == 7
        assert await (await conn.execute("SELECT 1 AS a, 2 AS a")).scalar() == 1  # by position
        assert await (await conn.execute("SELECT 1 WHERE false")).scalar() is None
        scalar_then = await conn.execute("SELECT id FROM items ORDER BY id")
        assert await scalar_then.scalar() == 1
        assert await scalar_then.fetchall() == []  # scalar() exhausts, as in SQLAlchemy
        await conn.execute("SELECT name FROM items WHERE id = :id", {"id": 3})
        assert await conn.fetchone() == {"name": "n3"}  # cursor style, spec section 1.1
        assert await conn.fetchone() is None
        await conn.execute("SELECT id FROM items WHERE id < 4 ORDER BY id")
        assert await conn.fetchmany(2) == [{"id": 1}, {"id": 2}]
        assert await conn.fetchall() == [{"id": 3}]
        deleted = await conn.execute("DELETE FROM items WHERE id = 7")
        assert deleted.rowcount == 1 and deleted.keys() == []
        for fetch in (deleted.fetchall, deleted.fetchone, deleted.fetchmany, deleted.scalar):
            with pytest.raises(ProgrammingError, match="rowcount"):
                await fetch()


async def test_executemany(db: Any, observer: Any) -> None:
    async with db.transaction() as conn:
        count = await conn.executemany(
            "INSERT INTO items (id, name) VALUES (:id, :name)", [{"id": i, "name": f"n{i}"} for i in range(100)]
        )
        # asyncpg reports no row count for a batch: "rows affected or -1" (docs/architecture.md)
        assert count == (-1 if "asyncpg" in db.url else 100)
        assert await conn.executemany("INSERT INTO items (id, name) VALUES (:id, :name)", []) == 0
        assert await (await conn.execute("SELECT COUNT(*) FROM items")).scalar() == 100
    assert len(await names(observer)) == 100


@pytest.mark.dialects("postgresql")
async def test_postgres_cast_after_a_parameter(db: Any) -> None:
    n = 41 if "asyncpg" in db.url else "41"  # asyncpg binds by the cast's type; the others send text
    async with db.transaction() as conn:
        result = await conn.execute(
            "SELECT :n::int + 1 AS n, '{a}'::text[] AS arr, $$:lit$$ AS lit, '50%' AS pct /* :c */", {"n": n}
        )
        row = await result.fetchone()
    assert row == {"n": 42, "arr": ["a"], "lit": ":lit", "pct": "50%"}


# -- no leaks ---------------------------------------------------------------------------------


async def test_no_leak_after_1000_mixed_transactions(db: Any) -> None:
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
