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
(the server may still answer later), so the backend closes it: it is never reused,
and the caller gets ``ConnectionLostError`` saying the transaction was not committed.
"""

from __future__ import annotations

from collections.abc import Generator
from contextvars import ContextVar, Token
from time import monotonic
from typing import Final, TypeVar

__all__ = [
    "DEADLINE_GRACE",
    "DEFAULT_STATEMENT_DEADLINE",
    "PING_FLOOR",
    "DeadlineExceeded",
    "bounded",
    "deadline_message",
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

_CAP: ContextVar[float | None] = ContextVar("structum_db_round_trip_cap", default=None)

S = TypeVar("S")
R = TypeVar("R")
T = TypeVar("T")


def resolve_statement_deadline(statement_timeout: float | None, statement_deadline: float | None) -> float | None:
    """The deadline of one round trip in seconds, or None for none (``statement_deadline=0``)."""
    if statement_deadline is not None:
        return float(statement_deadline) or None
    if statement_timeout:
        return float(statement_timeout) + DEADLINE_GRACE
    return DEFAULT_STATEMENT_DEADLINE


class DeadlineExceeded(Exception):
    """Raised by :func:`bounded` when its deadline passes; a backend turns it into a driver error."""


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
    return f"the server sent nothing for {seconds:g} s ({source}); the connection was closed, as its state is unknown"


def bounded(gen: Generator[S, R, T], seconds: float) -> Generator[S, R, T]:
    """``gen`` with a limit on silence, for drivers that run I/O as a generator (psycopg 3).

    Every state ``gen`` yields goes to the driver's waiting loop, and every readiness
    value sent back goes to ``gen``. psycopg's loop wakes up at least every 0.1 s and
    resumes the generator with a falsy "nothing ready" value: when the server has sent
    nothing for ``seconds`` by then, :class:`DeadlineExceeded` propagates out of the
    driver call. Data arriving restarts the clock, so a long result that keeps
    streaming is not cut (``statement_timeout`` limits execution time on the server).
    """
    try:
        state = next(gen)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    deadline = monotonic() + seconds
    while True:
        ready = yield state
        if ready:
            deadline = monotonic() + seconds
        elif monotonic() >= deadline:
            gen.close()
            raise DeadlineExceeded
        try:
            state = gen.send(ready)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
