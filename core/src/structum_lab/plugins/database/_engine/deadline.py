"""Client-side deadlines: no call waits forever for a server that stopped answering.

``statement_timeout`` is enforced by the server. When the server or the path to it goes
silent (a blackholed host, a stalled proxy or NAT, a frozen server), no answer and no
error ever comes, and TCP keepalives never fire through a proxy that keeps
acknowledging: a blocking driver call then waits forever, holding its pool slot. So
every round trip also gets a deadline measured by the client:

* ``statement_deadline``: the longest a statement, fetch, COMMIT or ROLLBACK may wait
  for the server without receiving anything. By default ``statement_timeout`` +
  :data:`DEADLINE_GRACE` (the server normally cancels first and its error arrives well
  within the grace), or :data:`DEFAULT_STATEMENT_DEADLINE` without a
  ``statement_timeout``; 0 disables it.
* :class:`round_trip_cap`: a tighter limit for the round trips made inside a checkout
  (the liveness ping) or a health check, whose callers have deadlines of their own.

A round trip that runs out of time leaves the connection in an unknown protocol state
(the server may still answer later), so it is closed: never reused, and the caller gets
``ConnectionLostError`` saying the transaction was not committed.

How, for psycopg (both backends, ``kit_psycopg.py``): psycopg >= 3.3 bounds its
own waiting loop (``Connection.wait(timeout=)``, in C), so a deadline costs one keyword
argument. Older psycopg, and any driver that blocks in a socket call, use the
:data:`WATCHDOG`: one thread per process, started on first use. A wait for the server
registers a lease (a dict insert, ~1 us) and removes it when the answer came; a lease
still present at its deadline gets its socket shut down, which wakes the blocked driver
with an error. (Wrapping psycopg's I/O generator in Python was measured at 3-8 us per
round trip, several percent of a pooled transaction, and was dropped.)
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar, Token
from time import monotonic
from typing import Final, TypeVar

from .fork import FORK

__all__ = [
    "DEADLINE_GRACE",
    "DEFAULT_STATEMENT_DEADLINE",
    "EXECUTEMANY_BATCH",
    "PING_FLOOR",
    "WATCHDOG",
    "Watchdog",
    "deadline_message",
    "executemany_batches",
    "ping_budget",
    "resolve_statement_deadline",
    "round_trip_budget",
    "round_trip_cap",
]

#: Statement deadline without a statement_timeout: long enough for any OLTP statement and
#: most reports, short enough that a silent server cannot pin a worker for good.
DEFAULT_STATEMENT_DEADLINE: Final = 300.0
#: Added to statement_timeout: the server's own cancellation should arrive first.
DEADLINE_GRACE: Final = 2.0

#: An executemany sends its parameter sets in batches of this many. A driver runs one
#: executemany as one round trip (psycopg: one pipeline, one wait), so without batches a
#: bulk insert of a few seconds would run into the deadline meant for one statement.
#: A batch costs one extra round trip per 1,000 rows (well under 1 % of their time).
EXECUTEMANY_BATCH: Final = 1000

_T = TypeVar("_T")

_CAP: ContextVar[float | None] = ContextVar("structum_db_round_trip_cap", default=None)


def resolve_statement_deadline(statement_timeout: float | None, statement_deadline: float | None) -> float | None:
    """The deadline of one round trip in seconds, or None for none (``statement_deadline=0``)."""
    if statement_deadline is not None:
        return float(statement_deadline) or None
    if statement_timeout:
        return float(statement_timeout) + DEADLINE_GRACE
    return DEFAULT_STATEMENT_DEADLINE


def executemany_batches(param_sets: list[_T]) -> Iterator[list[_T]]:
    """``param_sets`` in slices of :data:`EXECUTEMANY_BATCH` (the list itself when it fits one)."""
    if len(param_sets) <= EXECUTEMANY_BATCH:
        yield param_sets
        return
    for start in range(0, len(param_sets), EXECUTEMANY_BATCH):
        yield param_sets[start : start + EXECUTEMANY_BATCH]


class round_trip_cap:  # lower-case: used like a function, ``with round_trip_cap(2.0):``
    """Within the block, every round trip of this thread or task gets at most ``seconds``
    (nested caps only tighten: a ping inside a health check keeps the health deadline)."""

    __slots__ = ("_seconds", "_token")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds

    def __enter__(self) -> None:
        outer = _CAP.get()
        self._token: Token[float | None] = _CAP.set(self._seconds if outer is None else min(outer, self._seconds))

    def __exit__(self, *exc_info: object) -> None:
        _CAP.reset(self._token)


#: A ping may always take this long, however short pool_timeout is: it is one round trip,
#: and a healthy connection must not be discarded because its caller waited for a slot.
PING_FLOOR: Final = 0.5


def ping_budget(pool_timeout: float, connect_timeout: float | None, statement_deadline: float | None) -> float:
    """How long a liveness ping at checkout may wait before the connection counts as dead:
    no longer than the caller waits for a connection, than a new connection may take to
    open, or than any round trip may take."""
    limits = [max(pool_timeout, PING_FLOOR)]
    limits += [x for x in (connect_timeout, statement_deadline) if x]
    return min(limits)


def round_trip_budget(configured: float | None) -> float | None:
    """The seconds the next round trip may take: ``configured``, tightened by an enclosing cap."""
    cap = _CAP.get()
    if cap is None:
        return configured
    return cap if configured is None else min(cap, configured)


def deadline_message(seconds: float, statement_deadline: float | None) -> str:
    """Why a round trip was given up; names the setting that set the limit."""
    source = "statement_deadline" if seconds == statement_deadline else "the limit of a checkout ping or health probe"
    return (
        f"the server did not answer within {seconds:g} s ({source}); the connection was closed, as its state is unknown"
    )


class _Lease:
    __slots__ = ("deadline", "expired", "fileno")

    def __init__(self, deadline: float, fileno: int) -> None:
        self.deadline = deadline
        self.fileno = fileno
        self.expired = False


def _cut(fileno: int) -> None:
    """Shut the socket down under the driver: its blocked wait returns with an error,
    and no memory is freed behind its back (unlike closing the driver connection)."""
    try:
        sock = socket.socket(fileno=os.dup(fileno))
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


class Watchdog:
    """Cuts the connections whose wait for the server outlived its deadline."""

    #: How often the thread looks; a deadline is honoured within this much.
    TICK: Final = 0.05

    def __init__(self) -> None:
        self._leases: dict[int, _Lease] = {}
        self._epoch = -1
        self._lock = threading.Lock()

    def arm(self, fileno: int, seconds: float) -> _Lease:
        lease = _Lease(monotonic() + seconds, fileno)
        self._leases[id(lease)] = lease
        if self._epoch != FORK.epoch:  # not started yet, or a forked child (threads do not survive)
            self._start()
        return lease

    def disarm(self, lease: _Lease) -> None:
        if self._leases.pop(id(lease), None) is None:
            # The watchdog took it and may be cutting the socket right now: wait, so the
            # caller cannot close the connection and have its fd number reused (and the
            # wrong socket cut) before the cut is done. Only ever paid on a timeout.
            with self._lock:
                pass

    def _start(self) -> None:
        with self._lock:
            if self._epoch != FORK.epoch:
                self._epoch = FORK.epoch
                threading.Thread(target=self._run, name="structum-db-deadlines", daemon=True).start()

    def _run(self) -> None:
        epoch = FORK.epoch
        while epoch == FORK.epoch:
            time.sleep(self.TICK)
            now = monotonic()
            for lease in list(self._leases.values()):
                if lease.deadline <= now:
                    with self._lock:
                        if self._leases.pop(id(lease), None) is not None:
                            lease.expired = True
                            _cut(lease.fileno)


WATCHDOG: Final = Watchdog()
