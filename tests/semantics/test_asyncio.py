"""Transaction semantics, identical on every asyncio backend (docs/transactions.md)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import pytest

from structum_lab.plugins.database import (
    DatabaseError,
    SerializationError,
    TransactionError,
    TransientError,
    run_transaction_async,
)

DDL = "CREATE TABLE acct (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)"


@pytest.fixture
async def db(open_async_db: Callable[..., Any]) -> Any:
    database = open_async_db(pool_size=5, max_overflow=0, pool_timeout=10)
    async with database.transaction() as conn:
        await conn.execute(DDL)
        await conn.executemany("INSERT INTO acct (id, balance) VALUES (:id, :b)", [{"id": i, "b": 100} for i in (1, 2)])
    return database


@pytest.fixture
def observer(open_async_db: Callable[..., Any]) -> Any:
    return open_async_db(pool_size=1)


async def balances(db: Any) -> dict[int, int]:
    async with db.transaction() as conn:
        result = await conn.execute("SELECT id, balance FROM acct ORDER BY id")
        return {r["id"]: r["balance"] for r in await result.fetchall()}


async def test_commit_on_success_visible_only_after(db: Any, observer: Any) -> None:
    async with db.transaction() as conn:
        await conn.execute("UPDATE acct SET balance = balance - 10 WHERE id = :id", {"id": 1})
        assert (await balances(observer))[1] == 100
    assert await balances(observer) == {1: 90, 2: 100}


async def test_rollback_on_exception_and_reraise(db: Any, observer: Any) -> None:
    with pytest.raises(ZeroDivisionError):
        async with db.transaction() as conn:
            await conn.execute("UPDATE acct SET balance = 0 WHERE id = 1")
            _ = 1 / 0
    assert await balances(observer) == {1: 100, 2: 100}


async def test_nested_transaction_is_a_savepoint(db: Any, observer: Any) -> None:
    async with db.transaction() as outer:
        await outer.execute("UPDATE acct SET balance = 1 WHERE id = 1")
        with pytest.raises(KeyError):
            async with db.transaction() as inner:
                assert inner is outer
                await inner.execute("UPDATE acct SET balance = 2 WHERE id = 2")
                raise KeyError
        async with outer.transaction():
            await outer.execute("UPDATE acct SET balance = 3 WHERE id = 2")
    assert await balances(observer) == {1: 1, 2: 3}


async def test_concurrent_tasks_get_their_own_transactions(db: Any) -> None:
    async def one(i: int) -> None:
        async with db.transaction() as conn:
            await conn.execute("UPDATE acct SET balance = balance + 1 WHERE id = :id", {"id": 1 + i % 2})
            # A task created inside a transaction must not join it: it gets its own.
            assert not db.in_transaction() or conn is not None

    await asyncio.gather(*(one(i) for i in range(50)))
    assert await balances(db) == {1: 125, 2: 125}
    assert db.get_pool_info()["checked_out"] == 0


async def test_connection_after_block_is_an_error(db: Any) -> None:
    async with db.transaction() as conn:
        pass
    with pytest.raises(TransactionError, match="has ended"):
        await conn.execute("SELECT 1")


async def test_readonly_transaction(db: Any, observer: Any) -> None:
    with pytest.raises(DatabaseError):
        async with db.transaction(readonly=True) as conn:
            await conn.execute("UPDATE acct SET balance = 0 WHERE id = 1")
    assert await balances(observer) == {1: 100, 2: 100}
    async with db.transaction() as conn:  # the flag does not stick to the pooled connection
        await conn.execute("UPDATE acct SET balance = 7 WHERE id = 1")
    assert (await balances(observer))[1] == 7


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


async def _increment_concurrently(db: Any, *, retry: bool) -> tuple[list[BaseException], list[int]]:
    both_read = asyncio.Barrier(2)
    errors: list[BaseException] = []
    attempts: list[int] = []

    async def body(conn: Any) -> None:
        attempts.append(1)
        balance = await (await conn.execute("SELECT balance FROM acct WHERE id = 1")).scalar()
        if len(attempts) <= 2:
            with contextlib.suppress(TimeoutError, asyncio.BrokenBarrierError):
                await asyncio.wait_for(both_read.wait(), 10)
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
            await both_read.abort()

    await asyncio.gather(worker(), worker())
    return errors, attempts


async def test_serialization_conflict_surfaces_as_a_core_error(
    db: Any, observer: Any, open_async_db: Callable[..., Any]
) -> None:
    errors, _ = await _increment_concurrently(db, retry=False)
    assert len(errors) == 1, errors
    assert isinstance(errors[0], TransientError)
    if open_async_db.dialect == "postgresql":  # type: ignore[attr-defined]
        assert isinstance(errors[0], SerializationError)
    assert (await balances(observer))[1] == 101


async def test_retry_helper_makes_both_conflicting_transactions_succeed(db: Any, observer: Any) -> None:
    errors, attempts = await _increment_concurrently(db, retry=True)
    assert errors == []
    assert len(attempts) >= 3
    assert (await balances(observer))[1] == 102


async def test_no_leak_after_1000_mixed_transactions(db: Any) -> None:
    for i in range(1000):
        try:
            async with db.transaction() as conn:
                await conn.execute("UPDATE acct SET balance = balance + 1 WHERE id = :id", {"id": 1 + i % 2})
                if i % 3 == 0:
                    raise RuntimeError("roll this one back")
        except RuntimeError:
            pass
    info = db.get_pool_info()
    assert info["checked_out"] == 0
    committed = [i for i in range(1000) if i % 3]
    expected = {1: 100 + sum(1 for i in committed if i % 2 == 0), 2: 100 + sum(1 for i in committed if i % 2 == 1)}
    assert await balances(db) == expected


async def test_failed_statement_without_savepoint(db: Any, observer: Any, open_async_db: Callable[..., Any]) -> None:
    dialect = open_async_db.dialect  # type: ignore[attr-defined]
    if dialect == "postgresql" and "asyncpg" not in db.url:
        with pytest.raises(TransactionError, match="rolled back, not committed"):
            async with db.transaction() as conn:
                await conn.execute("UPDATE acct SET balance = 1 WHERE id = 1")
                with contextlib.suppress(DatabaseError):
                    await conn.execute("INSERT INTO acct (id, balance) VALUES (1, 0)")
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


async def test_db_execute_runs_one_statement_on_its_own(db: Any, observer: Any) -> None:
    result = await db.execute("UPDATE acct SET balance = :b WHERE id = :id", {"b": 7, "id": 1})
    assert result.rowcount == 1
    assert await balances(observer) == {1: 7, 2: 100}
    rows = await db.execute("SELECT id, balance FROM acct ORDER BY id")
    assert await rows.fetchone() == {"id": 1, "balance": 7}
    assert await rows.fetchall() == [{"id": 2, "balance": 100}]
    assert await (await db.execute("SELECT COUNT(*) AS n FROM acct")).scalar() == 2
    with pytest.raises(DatabaseError):
        await db.execute("SELECT * FROM no_such_table")
    assert db.get_pool_info()["checked_out"] == 0


async def test_db_execute_inside_a_transaction_joins_it(db: Any, observer: Any) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction():
            await db.execute("UPDATE acct SET balance = 0 WHERE id = 1")
            raise RuntimeError
    assert await balances(observer) == {1: 100, 2: 100}
