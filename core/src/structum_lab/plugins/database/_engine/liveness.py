"""Telling live pooled connections from dead ones, and a pool's connection outcome.

* :class:`ConnectMonitor` remembers how the last connection attempt went. A pool that
  connects in background workers (psycopg_pool) never tells a waiting caller that the
  server is down; the monitor lets a checkout fail fast with the real connection error
  instead of waiting out ``pool_timeout``.
* :func:`readable_probe` is a zero-round-trip liveness test: an idle connection of a
  request/response protocol receives nothing unless the server closed it (terminated
  backend, restart, idle timeout) or sent a notification, so a readable socket at
  checkout is the cue for a real ping (HikariCP's idea, with its ``aliveBypassWindowMs``).
* :func:`needs_ping` is the rule both first-party backends apply at checkout: a
  connection used within the last :data:`PRE_PING_WINDOW` seconds whose socket is not
  readable is handed out as it is; an older one, or one whose socket is readable or cannot
  be probed, gets a ping (one round trip). :func:`forced_ping` overrides the window for
  the checkouts inside it (a health check needs the round trip); :func:`driver_socket`
  finds the socket of the DB-API drivers core knows.
* :class:`OpenConnections` counts the connections a pool holds open from its own
  connect/close callbacks, for pools that do not count them, and tells the engine's
  observers of each; :class:`ListenerOf` is a driver's ``on_connection`` forwarded to
  such a counter or to a :class:`ConnectMonitor`.
"""

from __future__ import annotations

import select
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Final

__all__ = [
    "PRE_PING_WINDOW",
    "SOCKET_DRIVERS",
    "ConnectMonitor",
    "ListenerOf",
    "OpenConnections",
    "driver_socket",
    "forced_ping",
    "needs_ping",
    "ping_forced",
    "readable_probe",
]

#: Seconds after its last use during which a connection is trusted without a ping.
PRE_PING_WINDOW: Final = 0.5

#: DB-API drivers (by SQLAlchemy's names) whose socket :func:`driver_socket` finds.
SOCKET_DRIVERS: Final = frozenset({"psycopg", "pymysql"})

#: A connection event listener: ``("created", seconds)`` or ``("closed", 0.0)``.
Listener = Callable[[Any, float], None]

_FORCE: ContextVar[bool] = ContextVar("structum_force_ping", default=False)


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
        self.listener: Listener | None = None

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


def driver_socket(driver_connection: Any) -> int | None:
    """The socket of a psycopg or PyMySQL connection (``None`` for other drivers)."""
    pgconn = getattr(driver_connection, "pgconn", None)  # psycopg
    if pgconn is not None:
        return int(pgconn.socket)
    sock = getattr(driver_connection, "_sock", None)  # PyMySQL
    return None if sock is None else int(sock.fileno())


def needs_ping(used: float, readable: Callable[[int], list[Any]] | None, window: float) -> bool:
    """Whether a connection last used at ``used`` (``time.monotonic()``) needs a ping before it
    is handed out: idle beyond ``window`` seconds, its socket readable (the server closed it,
    or sent something), or no probe (``readable``, from :func:`readable_probe`) to tell."""
    return time.monotonic() - used > window or readable is None or bool(readable(0))


@contextmanager
def forced_ping() -> Iterator[None]:
    """Checkouts inside ping whatever the window says (a health check needs the round trip)."""
    token = _FORCE.set(True)
    try:
        yield
    finally:
        _FORCE.reset(token)


#: Whether the caller is inside :func:`forced_ping`.
ping_forced: Final = _FORCE.get


class OpenConnections:
    """How many connections a pool holds open, from its connect and close callbacks, and the
    engine's observers told of each (``listener``: the driver's ``on_connection``).

    Wire :meth:`connecting` to "about to connect" (it times the connection, per thread: a
    pool may connect on the thread that checks out), :meth:`opened` to "connected" and
    :meth:`gone` to "closed" (and to "no longer the pool's"). Each takes and ignores the
    callback's arguments, unless ``holds`` is given: then :meth:`opened` and :meth:`gone`
    take the pool's entry as their second argument, and :attr:`count` asks ``holds(entry)``
    of each entry seen connecting. That is for a pool that can close a connection without
    its close callback (SQLAlchemy's, when a later connect listener is interrupted: an
    asyncio task cancelled while the connection is being set up).
    """

    __slots__ = ("_count", "_entries", "_holds", "_lock", "_started", "listener")

    def __init__(self, holds: Callable[[Any], bool] | None = None) -> None:
        self._count = 0
        self._holds = holds
        self._entries: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._started = threading.local()
        self.listener: Listener | None = None

    @property
    def count(self) -> int:
        """The connections open now."""
        holds = self._holds
        if holds is None:
            return self._count
        with self._lock:
            return sum(1 for entry in self._entries if holds(entry))

    def connecting(self, *_: object) -> None:
        self._started.at = time.perf_counter()

    def opened(self, _connection: object = None, entry: object = None, *_: object) -> None:
        with self._lock:
            if self._holds is None:
                self._count += 1
            else:
                self._entries.add(entry)
        listener = self.listener
        if listener is not None:
            started = getattr(self._started, "at", None)
            listener("created", 0.0 if started is None else time.perf_counter() - started)

    def gone(self, _connection: object = None, entry: object = None, *_: object) -> None:
        with self._lock:
            if self._holds is None:
                self._count -= 1
            else:
                self._entries.discard(entry)
        listener = self.listener
        if listener is not None:
            listener("closed", 0.0)


class ListenerOf:
    """A driver's ``on_connection``, kept as the ``listener`` of one of its attributes (a
    :class:`ConnectMonitor` or :class:`OpenConnections`): ``on_connection = ListenerOf("_monitor")``."""

    __slots__ = ("_attribute",)

    def __init__(self, attribute: str) -> None:
        self._attribute = attribute

    def __get__(self, driver: object, owner: type | None = None) -> Listener | None:
        if driver is None:  # on the class
            return None
        listener: Listener | None = getattr(getattr(driver, self._attribute), "listener", None)
        return listener

    def __set__(self, driver: object, listener: Listener | None) -> None:
        getattr(driver, self._attribute).listener = listener
