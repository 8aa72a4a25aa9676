"""Telling live pooled connections from dead ones, and a pool's connection outcome.

* :class:`ConnectMonitor` remembers how the last connection attempt went. A pool that
  connects in background workers (psycopg_pool) never tells a waiting caller that the
  server is down; the monitor lets a checkout fail fast with the real connection error
  instead of waiting out ``pool_timeout``.
* :func:`readable_probe` is a zero-round-trip liveness test: an idle connection of a
  request/response protocol receives nothing unless the server closed it (terminated
  backend, restart, idle timeout) or sent a notification, so a readable socket at
  checkout is the cue for a real ping (HikariCP's idea, with its ``aliveBypassWindowMs``).
"""

from __future__ import annotations

import select
from collections.abc import Callable
from typing import Any

__all__ = ["ConnectMonitor", "readable_probe"]


class ConnectMonitor:
    """The outcome of the latest connection attempt, shared by the pool's workers and callers.

    ``up`` is False until a connection succeeds, after a failed attempt, and after a
    checkout found a dead connection (the server may be restarting); ``error`` is the
    latest connection error, cleared when a new doubt starts or a connection succeeds.
    Plain attribute writes: readers only need the latest value, not a consistent pair.
    """

    __slots__ = ("error", "listener", "reported", "up")

    def __init__(self) -> None:
        self.up = False
        self.error: BaseException | None = None
        self.reported = False  # the current outage has been reported
        #: The engine's ``connection_event`` (set through the driver's ``on_connection``).
        self.listener: Callable[[Any, float], None] | None = None

    def report(self, kind: str, duration_s: float = 0.0) -> None:
        """Tell the engine's observers that a connection was ``created`` or ``closed``."""
        listener = self.listener
        if listener is not None:
            listener(kind, duration_s)

    def still_up(self) -> bool:
        """``up``, read again after a wait (during which a pool worker may have changed it)."""
        return self.up

    def succeeded(self) -> bool:
        """Record a connection; True when it ends an outage that was reported."""
        self.error = None
        self.up = True
        ended, self.reported = self.reported, False
        return ended

    def failed(self, error: BaseException) -> bool:
        """Record a failed attempt; True for the first one of an outage (report it once)."""
        self.up = False
        self.error = error
        first, self.reported = not self.reported, True
        return first

    def suspect(self) -> None:
        """A connection died: wait for the next attempt's outcome before trusting the pool again."""
        self.up = False
        self.error = None


def readable_probe(fd: int) -> Callable[[int], list[Any]]:
    """A function that, called with 0, returns without blocking a non-empty list when
    ``fd`` has input (or hung up). The bound ``poll`` itself: it runs on every checkout."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)  # POLLHUP/POLLERR/POLLNVAL are always reported
        return poller.poll

    def readable(timeout: int) -> list[Any]:  # pragma: no cover - Windows
        return select.select([fd], [], [], timeout)[0]

    return readable
