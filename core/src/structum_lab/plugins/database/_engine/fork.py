"""Fork safety: a pool inherited through ``os.fork()`` belongs to the parent.

A pre-fork server (gunicorn, multiprocessing's ``fork`` start method) copies the
parent's pool into every child: the same sockets, so a child using one would
interleave its protocol messages with the parent's on one server session, and a
child closing one would end the parent's session. A child must neither use nor
close them; it needs a pool of its own.

A backend compares the epoch it built its pool in with :data:`FORK` ``.epoch`` at
checkout (one attribute comparison: no ``getpid()`` system call on the hot path) and,
when they differ, calls :func:`adopt` to replace the inherited pool with a fresh one,
leaving the parent's connections untouched (never closed, just no longer used).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

__all__ = ["FORK", "adopt"]


class _ForkState:
    """The fork epoch of this process (0 in the original process, +1 in each forked child)."""

    __slots__ = ("epoch", "inherited", "lock")

    def __init__(self) -> None:
        self.epoch = 0
        # Serializes the pool replacement when several threads of a child start at once.
        self.lock = threading.Lock()
        #: The parent's pools, abandoned by this process but never finalized (see adopt()).
        self.inherited: list[object] = []

    def after_fork_in_child(self) -> None:
        self.epoch += 1
        # The parent's lock may have been held by another thread at fork time; the child
        # has only the forking thread, so a new lock is the only safe one.
        self.lock = threading.Lock()


FORK = _ForkState()


def adopt(owner: object, rebuild: Callable[[], object]) -> None:
    """Run ``rebuild()`` once per fork for ``owner`` (which keeps the epoch in ``_fork_epoch``).

    ``rebuild`` makes a new pool and returns the inherited one, without closing it; it runs
    in the child only, at its first use of the database. The inherited pool is kept
    referenced for the life of the process: its finalizers would act on kernel objects the
    parent still uses. An asyncio driver's connection (asyncpg, aiomysql) unregisters its
    socket from the event loop it was made in, and the child's copy of that loop shares
    its epoll instance with the parent's: the parent would stop hearing from that
    connection and hang. A pool's finalizer would signal the parent's worker threads.
    """
    with FORK.lock:
        if getattr(owner, "_fork_epoch", None) != FORK.epoch:
            FORK.inherited.append(rebuild())
            owner._fork_epoch = FORK.epoch  # type: ignore[attr-defined]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=FORK.after_fork_in_child)
