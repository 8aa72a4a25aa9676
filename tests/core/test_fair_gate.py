"""First come, first served checkout (``_engine/gate.py``): waiters get permits in arrival
order, a returning holder cannot barge in ahead of them, and timeouts and cancellations
never lose a permit. Observed through orderings, not timings."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from structum_lab.plugins.database._engine.gate import AsyncFairGate, FairGate


def _wait_until(predicate: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)


def test_threads_are_served_in_arrival_order_and_a_returning_holder_waits_its_turn() -> None:
    gate = FairGate(1)
    assert gate.acquire(1)
    order: list[str] = []

    def waiter(name: str) -> None:
        assert gate.acquire(10)
        order.append(name)
        gate.release()

    threads = []
    for name in ("first", "second", "third"):
        thread = threading.Thread(target=waiter, args=(name,))
        thread.start()
        threads.append(thread)
        queued = len(threads)
        _wait_until(lambda: len(gate._waiters) == queued)  # noqa: B023 - called before the next turn
    gate.release()
    assert gate.acquire(10)  # the holder comes back at once: it queues behind the three
    order.append("holder")
    gate.release()
    for thread in threads:
        thread.join()
    assert order == ["first", "second", "third", "holder"]


def test_a_timed_out_wait_returns_false_and_keeps_the_count() -> None:
    gate = FairGate(2)
    assert gate.acquire(0) and gate.acquire(0)
    assert not gate.acquire(0.05)
    assert not gate._waiters
    gate.release()
    assert gate.acquire(0)  # the released permit was not lost to the timed-out waiter
    gate.release()
    gate.release()
    assert gate._free == 2


async def test_tasks_are_served_in_arrival_order() -> None:
    gate = AsyncFairGate(1)
    assert await gate.acquire(1)
    order: list[int] = []

    async def waiter(number: int) -> None:
        assert await gate.acquire(10)
        order.append(number)
        await asyncio.sleep(0)
        gate.release()

    tasks = []
    for number in range(5):
        tasks.append(asyncio.create_task(waiter(number)))
        await asyncio.sleep(0)  # each reaches the gate before the next starts
    gate.release()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert gate._free == 1


async def test_a_cancelled_or_timed_out_task_never_loses_a_permit() -> None:
    gate = AsyncFairGate(1)
    assert await gate.acquire(1)
    cancelled = asyncio.create_task(gate.acquire(10))
    await asyncio.sleep(0)
    timed_out = await gate.acquire(0.01)
    assert timed_out is False
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    gate.release()
    assert gate._free == 1 and not gate._waiters
    assert await gate.acquire(0)
