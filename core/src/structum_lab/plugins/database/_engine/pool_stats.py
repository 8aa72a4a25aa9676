"""Checkout statistics every backend keeps the same way, and the exhaustion message.

Percentiles hide starvation (a pool can serve p99 in 0.06 ms while one caller
waits 1.4 s), so the longest wait is kept, timeouts included.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from .._contract.protocols import PoolInfo

__all__ = ["PoolStats", "pool_figures", "pool_exhausted_message"]


def pool_figures(checked_out: int, total: int, size: int, max_size: int, **more: int) -> PoolInfo:
    """A driver's ``pool_figures``: ``available`` and ``overflow`` follow from the open connections
    (``total``) and the steady ``size`` unless given in ``more`` (``min_size``, ``connections_lost``...)."""
    figures: dict[str, int] = {
        "checked_out": checked_out,
        "available": total - checked_out,
        "total": total,
        "overflow": max(0, total - size),
        "size": size,
        "max_size": max_size,
    }
    figures.update(more)
    return figures  # type: ignore[return-value]


class PoolStats:
    """Counters updated around each checkout; cheap enough for the hot path."""

    __slots__ = (
        "_lock",
        "checked_out",
        "checkouts",
        "connections_lost",
        "listener_reconnects",
        "max_wait",
        "timeouts",
        "waiting",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.waiting = 0
        self.checked_out = 0
        self.checkouts = 0
        self.timeouts = 0
        self.connections_lost = 0
        self.listener_reconnects = 0
        self.max_wait = 0.0

    def checkout_started(self) -> float:
        with self._lock:
            self.waiting += 1
        return time.perf_counter()

    def checkout_done(self, started: float) -> None:
        waited = time.perf_counter() - started
        with self._lock:
            self.waiting -= 1
            self.checked_out += 1
            self.checkouts += 1
            self.max_wait = max(self.max_wait, waited)

    def checkout_failed(self, started: float, *, timed_out: bool) -> float:
        """Record a failed checkout; returns how long the caller waited."""
        waited = time.perf_counter() - started
        with self._lock:
            self.waiting -= 1
            if timed_out:
                self.timeouts += 1
                self.max_wait = max(self.max_wait, waited)
        return waited

    def released(self) -> None:
        with self._lock:
            self.checked_out -= 1

    def lost(self) -> None:
        with self._lock:
            self.connections_lost += 1

    def listener_lost(self) -> None:
        with self._lock:
            self.listener_reconnects += 1

    def counters(self) -> dict[str, Any]:
        """The counter part of :class:`PoolInfo`."""
        with self._lock:
            return {
                "requests_waiting": self.waiting,
                "checkouts": self.checkouts,
                "timeouts": self.timeouts,
                "connections_lost": self.connections_lost,
                "max_wait_ms": round(self.max_wait * 1000.0, 3),
                "listener_reconnects": self.listener_reconnects,
            }


def pool_exhausted_message(
    *, name: str, waited: float, pool_timeout: float, pool_size: int, max_overflow: int, info: PoolInfo
) -> str:
    """Why a checkout timed out and what to change: the same words on every backend."""
    return (
        f"no database connection became free within {waited:.1f} s (pool_timeout={pool_timeout:g}): "
        f"all {info.get('max_size', pool_size + max_overflow)} connections of database {name!r} are in use "
        f"(pool_size={pool_size}, max_overflow={max_overflow}, {info.get('requests_waiting', 0)} callers waiting). "
        "Increase pool_size or max_overflow, shorten transactions, or look for leaked connections "
        "(get_connection() without close())"
    )
