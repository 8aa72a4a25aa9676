"""Locks that the same thread, or the same asyncio task, may take again while holding them."""

from __future__ import annotations

import asyncio
import threading

__all__ = ["AsyncReentrantLock", "ReentrantLock"]


class ReentrantLock:
    """``threading.RLock`` under the name the generated sync code uses."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.RLock()

    def acquire(self) -> None:
        self._lock.acquire()

    def release(self) -> None:
        self._lock.release()


class AsyncReentrantLock:
    """An ``asyncio.Lock`` that the task holding it may acquire again (as ``threading.RLock``)."""

    __slots__ = ("_depth", "_lock", "_owner")

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[object] | None = None
        self._depth = 0

    async def acquire(self) -> None:
        task = asyncio.current_task()
        if task is not None and self._owner is task:
            self._depth += 1
            return
        await self._lock.acquire()
        self._owner = task
        self._depth = 1

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
            self._lock.release()
