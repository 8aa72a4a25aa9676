"""Rule 4 of docs/transactions.md: conflicts are a distinct error, and retrying is one call;
and what a failed statement does to the transaction around it."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import pytest

from ..._contract.errors import DatabaseError, SerializationError, TransactionError, TransientError
from ..._contract.protocols import AsyncConnection
from ..._engine.flavour import ASYNC
from ..._engine.retry import run_transaction_async
from .base_async import AsyncKitBase, balances
from .protocols_async import AsyncKitDatabase
from .support import raises, requires

__all__ = ["AsyncConflictTests"]


async def _increment_concurrently(db: AsyncKitDatabase, *, retry: bool) -> tuple[list[BaseException], list[int]]:
    """Two workers read the same row, meet at a barrier, then both write it.

    Under SERIALIZABLE one of them must lose: PostgreSQL reports 40001, MariaDB a deadlock
    (1213), SQLite SQLITE_BUSY (lock upgrade deadlock). With ``retry`` both go through
    run_transaction(). The workers are asyncio tasks, or threads.
    """
    barrier = asyncio.Barrier(2)  # sync: barrier = threading.Barrier(2, timeout=10)
    errors: list[BaseException] = []
    attempts: list[int] = []

    async def body(conn: AsyncConnection) -> None:
        attempts.append(1)
        balance = await (await conn.execute("SELECT balance FROM acct WHERE id = 1")).scalar()
        if len(attempts) <= 2:  # only the first round meets at the barrier
            if ASYNC:  # ASYNC
                with contextlib.suppress(TimeoutError, asyncio.BrokenBarrierError):
                    await asyncio.wait_for(barrier.wait(), 10)
            else:
                with contextlib.suppress(threading.BrokenBarrierError):
                    barrier.wait()  # type: ignore[unused-coroutine]
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


class AsyncConflictTests(AsyncKitBase):
    """Serialization conflicts, ``run_transaction()``, and a failed statement without a savepoint."""

    @requires("isolation_levels")
    async def test_serialization_conflict_surfaces_as_a_core_error(
        self, db: AsyncKitDatabase, observer: AsyncKitDatabase
    ) -> None:
        self._need_serializable(db)
        errors, _ = await _increment_concurrently(db, retry=False)
        assert len(errors) == 1, errors
        assert isinstance(errors[0], TransientError)
        self.check_error("serialization_conflict", errors[0])
        assert (await balances(observer))[1] == 101  # the winner committed, the loser left nothing

    @requires("isolation_levels")
    async def test_retry_helper_makes_both_conflicting_transactions_succeed(
        self, db: AsyncKitDatabase, observer: AsyncKitDatabase
    ) -> None:
        self._need_serializable(db)
        errors, attempts = await _increment_concurrently(db, retry=True)
        assert errors == []
        assert len(attempts) >= 3  # at least one transaction ran again
        assert (await balances(observer))[1] == 102  # no increment lost

    def _need_serializable(self, db: AsyncKitDatabase) -> None:
        if "serializable" not in db.features.isolation_levels:
            pytest.skip(f"the {self.backend} backend does not declare serializable")

    async def test_retry_refuses_to_run_inside_a_transaction(self, db: AsyncKitDatabase) -> None:
        async def nothing(conn: AsyncConnection) -> None:
            return None

        async with db.transaction(), raises(TransactionError, match="outermost"):
            await run_transaction_async(db, nothing)

    async def test_retry_gives_up_after_attempts(self, db: AsyncKitDatabase) -> None:
        calls = []

        async def always_conflicts(conn: AsyncConnection) -> None:
            calls.append(1)
            raise SerializationError("simulated conflict", sqlstate="40001")

        with pytest.raises(TransientError):
            await run_transaction_async(db, always_conflicts, attempts=3, backoff=0)
        assert len(calls) == 3

    async def test_failed_statement_without_savepoint(self, db: AsyncKitDatabase, observer: AsyncKitDatabase) -> None:
        """PostgreSQL aborts the whole transaction on an error; COMMIT would silently roll back,
        so the layer raises instead (``features.aborted_state``). MariaDB and SQLite undo only
        the failed statement (``statement_error_aborts`` False)."""
        if db.features.aborted_state:
            async with raises(TransactionError, match="rolled back, not committed") as info, db.transaction() as conn:
                await conn.execute("UPDATE acct SET balance = 1 WHERE id = 1")
                with contextlib.suppress(DatabaseError):
                    await conn.execute("INSERT INTO acct (id, balance) VALUES (1, 0)")  # duplicate key
            assert info.value.sqlstate == "25P02"
            assert await balances(observer) == {1: 100, 2: 100}
        elif self.statement_error_aborts:
            # The driver cannot see the aborted state: COMMIT rolls back, as the server decides.
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
