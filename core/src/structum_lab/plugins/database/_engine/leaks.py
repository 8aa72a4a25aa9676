"""Connections that user code dropped without closing them.

A connection from ``get_connection()`` that is garbage-collected while still open
would keep its pool slot, and its open transaction with its locks, for good:
psycopg_pool never learns about it, and SQLAlchemy's own rescue waits for the cyclic
collector (its ``Connection`` sits in a reference cycle) or, on asyncio, drops the
connection without closing it. So each backend's connection wrapper has a
``__del__`` that hands the driver connection to :func:`reclaim_later`, and a daemon
thread rolls it back, returns it to its pool and logs a warning naming the database.

The finalizer itself only enqueues. A finalizer runs at any allocation, in any
thread, possibly while that thread holds the pool's or the statistics' lock: rolling
back or taking a lock there could deadlock. ``queue.SimpleQueue.put`` is documented
as safe to call from ``__del__`` and weakref callbacks. Wrappers cost nothing until
they are dropped; a wrapper that was closed finds nothing to do.

A process started with ``fork()`` inherits wrappers whose connections belong to the
parent: each wrapper carries the fork :func:`epoch` it was made in (core's one fork
counter, ``_fork.FORK``), and a wrapper from an older epoch is never reclaimed (it would
roll back the parent's transaction).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Coroutine
from queue import SimpleQueue
from typing import Any

from .fork import FORK

__all__ = ["LEAK_TIMEOUT", "ensure_reaper", "epoch", "reclaim_later", "run_on_loop", "warn_leak"]

log = logging.getLogger("structum_lab.plugins.database")

#: How long the reaper waits for an event loop to return an async connection.
LEAK_TIMEOUT = 10.0

_Job = tuple[Callable[..., object], tuple[Any, ...]]


class _Reaper:
    """The queue and the thread of this process (one instance)."""

    def __init__(self) -> None:
        self.queue: SimpleQueue[_Job] = SimpleQueue()
        self.running = False
        self.lock = threading.Lock()
        # Jobs queued in the parent before a fork are kept, never run: they hold the
        # parent's connections, which the child must neither use nor close.
        self.inherited: list[SimpleQueue[_Job]] = []

    def run(self) -> None:
        while True:
            func, args = self.queue.get()
            try:
                func(*args)
            except Exception:
                log.warning("could not return a garbage-collected connection to its pool", exc_info=True)
            del func, args  # hold no connection while waiting for the next one

    def after_fork_in_child(self) -> None:
        self.inherited.append(self.queue)
        self.queue = SimpleQueue()
        self.running = False  # threads do not survive fork()
        self.lock = threading.Lock()  # another thread may have held it at the fork


_reaper = _Reaper()


def epoch() -> int:
    """The fork epoch to store in a new connection wrapper."""
    return FORK.epoch


def reclaim_later(created_in: int, func: Callable[..., object], *args: Any) -> None:
    """Run ``func(*args)`` on the reaper thread. Safe to call from ``__del__``."""
    if created_in == FORK.epoch:
        _reaper.queue.put((func, args))


def ensure_reaper() -> None:
    """Start the reaper thread if this process has none (cheap when it runs already).

    Called from ordinary code (database construction, ``get_connection()``), never from
    a finalizer: starting a thread takes locks.
    """
    reaper = _reaper
    if reaper.running:
        return
    with reaper.lock:
        if not reaper.running:
            threading.Thread(target=reaper.run, name="structum-db-reaper", daemon=True).start()
            reaper.running = True


def run_on_loop(loop: asyncio.AbstractEventLoop | None, coro: Coroutine[Any, Any, object]) -> bool:
    """Run ``coro`` on ``loop`` from the reaper thread, waiting a bounded time for it.

    False when the loop is closed, so ``coro`` never runs: the caller then closes the
    connection without its loop. A loop too busy to run it within :data:`LEAK_TIMEOUT`
    still runs it later; it is not cancelled halfway.
    """
    if loop is None or loop.is_closed():
        coro.close()
        return False
    try:
        future = asyncio.run_coroutine_threadsafe(coro, loop)
    except RuntimeError:  # closed between the check and the call
        coro.close()
        return False
    try:
        future.result(LEAK_TIMEOUT)
    except TimeoutError:
        log.debug("the event loop did not return a garbage-collected connection within %g s", LEAK_TIMEOUT)
    return True


def warn_leak(name: str, detail: str) -> None:
    """The warning every backend logs for a connection that was garbage-collected open."""
    log.warning(
        "database %r: a connection (%s) was garbage-collected without close(); its transaction was rolled "
        "back and it went back to the pool. Close connections from get_connection(), or use "
        "'with db.get_connection() as conn:'",
        name,
        detail,
    )


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reaper.after_fork_in_child)
