"""Work a driver starts and does not wait for: asyncio tasks, or daemon threads.

The two classes have the same verbs, so a driver written for asyncio (``AsyncBackground``)
becomes, through ``tools/sync_from_async.py``, a driver on threads (``Background``).
Tasks are kept referenced until they end (the event loop holds only weak references).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable

__all__ = ["AsyncBackground", "Background"]


class AsyncBackground:
    """Tasks started with :meth:`spawn`, cancelled or awaited together at shutdown."""

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: set[asyncio.Future[object]] = set()

    def spawn(self, func: Callable[..., Awaitable[object]], *args: object, name: str = "") -> None:
        task = asyncio.ensure_future(func(*args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def wait(self) -> None:
        for task in list(self._tasks):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task

    def forget(self) -> None:
        """In a forked child: the parent's tasks belong to the parent's event loop."""
        self._tasks = set()


class Background:
    """Daemon threads started with :meth:`spawn`; they end on their own."""

    __slots__ = ()

    def spawn(self, func: Callable[..., object], *args: object, name: str = "") -> None:
        threading.Thread(target=func, args=args, name=name or "structum-db-background", daemon=True).start()

    def cancel(self) -> None:
        return None

    def wait(self) -> None:
        return None

    def forget(self) -> None:
        return None
