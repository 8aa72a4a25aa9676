"""Scenario 4: pool exhaustion.

``pool_size + max_overflow`` holders keep their connections; extra callers get
``PoolTimeoutError`` after ``pool_timeout`` (close to it, not much more), with a message
that names the pool size and suggests the fix. Once the holders let go, the pool serves
a full set of holders again and reports nothing checked out.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from structum_lab.plugins.database import HealthStatus, PoolTimeoutError

from ._faults import ASYNC_KINDS, SYNC_KINDS, app_name, open_db

pytestmark = pytest.mark.postgres

SIZE, OVERFLOW, WAIT = 2, 1, 0.5
EXTRA = 3  # callers beyond the pool's capacity
SLACK = 0.4  # how much later than pool_timeout a refusal may come on a loaded machine


def _check_refusal(error: BaseException, waited: float) -> None:
    assert isinstance(error, PoolTimeoutError), repr(error)
    assert isinstance(error, TimeoutError)
    assert WAIT - 0.05 <= waited <= WAIT + SLACK, waited
    message = str(error)
    assert f"pool_size={SIZE}" in message and f"max_overflow={OVERFLOW}" in message, message
    assert f"all {SIZE + OVERFLOW} connections" in message
    assert "Increase pool_size or max_overflow" in message


@pytest.mark.parametrize("kind", SYNC_KINDS)
def test_exhaustion_sync(kind: str, pg_url: str) -> None:
    db = open_db(kind, pg_url, app_name(), pool_size=SIZE, max_overflow=OVERFLOW, pool_timeout=WAIT)
    try:
        holders = [db.get_connection() for _ in range(SIZE + OVERFLOW)]
        for conn in holders:
            conn.execute("SELECT 1")
        assert db.get_pool_info()["checked_out"] == SIZE + OVERFLOW
        outcomes: list[tuple[BaseException | None, float]] = []
        lock = threading.Lock()

        def extra_caller() -> None:
            started = time.monotonic()
            try:
                with db.transaction() as conn:
                    conn.execute("SELECT 1")
            except BaseException as exc:
                with lock:
                    outcomes.append((exc, time.monotonic() - started))
            else:
                with lock:
                    outcomes.append((None, time.monotonic() - started))

        threads = [threading.Thread(target=extra_caller) for _ in range(EXTRA)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(outcomes) == EXTRA
        for error, waited in outcomes:
            assert error is not None
            _check_refusal(error, waited)
        assert db.health_check().status is HealthStatus.DEGRADED  # reported, not queued behind the pool
        for conn in holders:
            conn.close()

        _full_round_sync(db)
        info = db.get_pool_info()
        assert info["checked_out"] == 0 and info["timeouts"] >= EXTRA, info
        print(f"\n{kind}: refusals after {sorted(round(w, 3) for _, w in outcomes)} s (pool_timeout={WAIT})")
    finally:
        db.shutdown()


def _full_round_sync(db: Any) -> None:
    """Every slot usable again: SIZE + OVERFLOW callers hold a connection at the same time."""
    barrier = threading.Barrier(SIZE + OVERFLOW, timeout=5)
    errors: list[BaseException] = []

    def holder() -> None:
        try:
            with db.transaction() as conn:
                conn.execute("SELECT 1")
                barrier.wait()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=holder) for _ in range(SIZE + OVERFLOW)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == []


@pytest.mark.parametrize("kind", ASYNC_KINDS)
async def test_exhaustion_async(kind: str, pg_url: str) -> None:
    db = open_db(kind, pg_url, app_name(), pool_size=SIZE, max_overflow=OVERFLOW, pool_timeout=WAIT)
    try:
        holders = [await db.get_connection() for _ in range(SIZE + OVERFLOW)]
        for conn in holders:
            await conn.execute("SELECT 1")
        assert db.get_pool_info()["checked_out"] == SIZE + OVERFLOW

        async def extra_caller() -> tuple[BaseException | None, float]:
            started = time.monotonic()
            try:
                async with db.transaction() as conn:
                    await conn.execute("SELECT 1")
            except Exception as exc:
                return exc, time.monotonic() - started
            return None, time.monotonic() - started

        outcomes = await asyncio.gather(*(extra_caller() for _ in range(EXTRA)))
        for error, waited in outcomes:
            assert error is not None
            _check_refusal(error, waited)
        assert (await db.health_check()).status is HealthStatus.DEGRADED
        for conn in holders:
            await conn.close()

        ready = asyncio.Barrier(SIZE + OVERFLOW)

        async def holder() -> None:
            async with db.transaction() as conn:
                await conn.execute("SELECT 1")
                await asyncio.wait_for(ready.wait(), 5)

        await asyncio.gather(*(holder() for _ in range(SIZE + OVERFLOW)))
        info = db.get_pool_info()
        assert info["checked_out"] == 0 and info["timeouts"] >= EXTRA, info
        print(f"\n{kind}: refusals after {sorted(round(w, 3) for _, w in outcomes)} s (pool_timeout={WAIT})")
    finally:
        await db.shutdown()
