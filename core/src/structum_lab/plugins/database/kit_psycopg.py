"""Building blocks for backends on psycopg 3 (the psycopg backend, SQLAlchemy's psycopg
driver, a third-party backend): ``statement_deadline`` on psycopg connections, COPY,
LISTEN, core ``Row`` dicts and the rows of a cursor for the engine (``PsycopgRows``),
several statements in one round trip (``run_batch``), and the driver verbs psycopg answers
itself (``PsycopgVerbs``), and BEGIN sent with a connection's next statement whoever sends
it (``install_deferred_begin``, ``defer_begin``).

Importing this module imports psycopg; :mod:`structum_lab.plugins.database.kit` does not.

Every wait for the server (statement, fetch, COMMIT, ping) goes through
``Connection.wait()``: a subclass that mixes in :data:`PsycopgDeadline` (or
:data:`AsyncPsycopgDeadline`) bounds them all by its ``_sdb_deadline`` attribute, tightened
by ``round_trip_cap``. A timeout psycopg passes itself (``notifies()``) is left alone.

psycopg >= 3.3 takes the timeout in its own waiting loop (C code, no cost per I/O step);
older versions get the watchdog. Either way a round trip that ran out of time leaves
the connection mid-protocol, so it is closed (never reused) and the caller gets an
``OperationalError`` saying why, which the backends report as ``ConnectionLostError``.
"""

from __future__ import annotations

import inspect
from functools import cache
from typing import TYPE_CHECKING, Any, Final

import psycopg

from ._engine.deadline import _CAP, WATCHDOG, deadline_message, round_trip_budget
from ._psycopg.batch import begun_query, run_batch
from ._psycopg.batch_async import begun_query as begun_query_async
from ._psycopg.batch_async import run_batch as run_batch_async
from ._psycopg.copy import copy_in, copy_out, copy_statement
from ._psycopg.copy_async import copy_in as copy_in_async
from ._psycopg.copy_async import copy_out as copy_out_async
from ._psycopg.cursor_rows import PsycopgRows, open_stream
from ._psycopg.cursor_rows_async import AsyncPsycopgRows
from ._psycopg.cursor_rows_async import open_stream as open_stream_async
from ._psycopg.deferred_begin import defer_begin, install_deferred_begin, send_begin, take_begin
from ._psycopg.deferred_begin_async import defer_begin as defer_begin_async
from ._psycopg.deferred_begin_async import install_deferred_begin as install_deferred_begin_async
from ._psycopg.deferred_begin_async import send_begin as send_begin_async
from ._psycopg.deferred_begin_async import take_begin as take_begin_async
from ._psycopg.listen import PsycopgNotifier
from ._psycopg.listen_async import AsyncPsycopgNotifier
from ._psycopg.rows import parenthesized, row_factory
from ._psycopg.verbs import PsycopgVerbs
from ._psycopg.verbs_async import AsyncPsycopgVerbs

__all__ = [
    "NATIVE_TIMEOUT",
    "AsyncPsycopgNotifier",
    "AsyncPsycopgRows",
    "AsyncPsycopgVerbs",
    "PsycopgRows",
    "PsycopgNotifier",
    "PsycopgVerbs",
    "begun_query",
    "begun_query_async",
    "copy_in",
    "copy_in_async",
    "copy_out",
    "copy_out_async",
    "copy_statement",
    "defer_begin",
    "defer_begin_async",
    "install_deferred_begin",
    "install_deferred_begin_async",
    "open_stream",
    "open_stream_async",
    "AsyncPsycopgDeadline",
    "AsyncWatchdogDeadline",
    "PsycopgDeadline",
    "WatchdogDeadline",
    "bounded_connection_class",
    "parenthesized",
    "row_factory",
    "run_batch",
    "run_batch_async",
    "send_begin",
    "send_begin_async",
    "take_begin",
    "take_begin_async",
]

try:
    from psycopg.errors import _WaitTimeout
except ImportError:  # pragma: no cover - psycopg < 3.3
    _WaitTimeout = None  # type: ignore[assignment,misc]

#: Whether this psycopg bounds ``wait()`` itself (3.3 and later).
NATIVE_TIMEOUT: Final = _WaitTimeout is not None and "timeout" in inspect.signature(psycopg.Connection.wait).parameters

#: psycopg's own wake-up interval in ``wait()`` (``_WAIT_INTERVAL``); a deadline is honoured within it.
_INTERVAL: Final = 0.1


_cap = _CAP.get

#: ``timeout`` not given. psycopg's own calls give none, except ``notifies()``, which passes
#: its caller's, None included: a LISTEN loop without a limit waits as long as it likes.
_UNSET: Any = object()


class _NativeDeadline:
    _sdb_deadline: float | None = None
    pgconn: Any

    def wait(self, gen: Any, interval: float = _INTERVAL, timeout: float | None = _UNSET) -> Any:
        # Inlined (no helper call): this runs on every round trip.
        if timeout is _UNSET:
            timeout = self._sdb_deadline
            cap = _cap()
            if cap is not None and (timeout is None or cap < timeout):
                timeout = cap
            if timeout is not None:
                try:
                    return super().wait(gen, interval, timeout)  # type: ignore[misc]
                except _WaitTimeout:
                    self.pgconn.finish()
                    raise psycopg.OperationalError(deadline_message(timeout, self._sdb_deadline)) from None
        return super().wait(gen, interval, timeout)  # type: ignore[misc]


class _AsyncNativeDeadline:
    _sdb_deadline: float | None = None
    pgconn: Any

    async def wait(self, gen: Any, interval: float = _INTERVAL, timeout: float | None = _UNSET) -> Any:  # noqa: ASYNC109 - psycopg's signature
        # Inlined (no helper call): this runs on every round trip.
        if timeout is _UNSET:
            timeout = self._sdb_deadline
            cap = _cap()
            if cap is not None and (timeout is None or cap < timeout):
                timeout = cap
            if timeout is not None:
                try:
                    return await super().wait(gen, interval, timeout)  # type: ignore[misc]
                except _WaitTimeout:
                    self.pgconn.finish()
                    raise psycopg.OperationalError(deadline_message(timeout, self._sdb_deadline)) from None
        return await super().wait(gen, interval, timeout)  # type: ignore[misc]


class _Watched:
    """One round trip under the watchdog: the lease is taken on entry and returned on
    exit, where an error caused by the watchdog's cut is replaced by one that says why."""

    __slots__ = ("_configured", "_lease", "_limit")

    def __init__(self, conn: Any, limit: float) -> None:
        self._limit = limit
        self._configured = conn._sdb_deadline
        self._lease = WATCHDOG.arm(conn.pgconn.socket, limit)

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        WATCHDOG.disarm(self._lease)
        if self._lease.expired and isinstance(exc, psycopg.Error):
            raise psycopg.OperationalError(deadline_message(self._limit, self._configured)) from None


class _WatchdogDeadline:
    _sdb_deadline: float | None = None
    pgconn: Any

    def wait(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
        limit = round_trip_budget(self._sdb_deadline)
        if limit is None or "timeout" in kwargs:
            return super().wait(gen, *args, **kwargs)  # type: ignore[misc]
        with _Watched(self, limit):
            return super().wait(gen, *args, **kwargs)  # type: ignore[misc]


class _AsyncWatchdogDeadline:
    _sdb_deadline: float | None = None
    pgconn: Any

    async def wait(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
        limit = round_trip_budget(self._sdb_deadline)
        if limit is None or "timeout" in kwargs:
            return await super().wait(gen, *args, **kwargs)  # type: ignore[misc]
        with _Watched(self, limit):
            return await super().wait(gen, *args, **kwargs)  # type: ignore[misc]


# The mixins to put before ``psycopg.Connection`` / ``AsyncConnection`` in a subclass that
# sets ``_sdb_deadline``: ``class C(PsycopgDeadline, Connection[Row]): _sdb_deadline = 5.0``.
if TYPE_CHECKING:
    PsycopgDeadline = _NativeDeadline
    AsyncPsycopgDeadline = _AsyncNativeDeadline
else:
    PsycopgDeadline = _NativeDeadline if NATIVE_TIMEOUT else _WatchdogDeadline
    AsyncPsycopgDeadline = _AsyncNativeDeadline if NATIVE_TIMEOUT else _AsyncWatchdogDeadline

#: The watchdog mixins whatever the psycopg version (what psycopg < 3.3 gets; tests use them).
WatchdogDeadline = _WatchdogDeadline
AsyncWatchdogDeadline = _AsyncWatchdogDeadline


@cache
def bounded_connection_class(
    deadline: float, *, is_async: bool
) -> type[psycopg.Connection[Any]] | type[psycopg.AsyncConnection[Any]]:
    """A psycopg connection class (the asyncio one if ``is_async``) whose waits for the server
    give up after ``deadline`` seconds, for code that opens its own connections."""
    if is_async:

        class AsyncBoundedConnection(AsyncPsycopgDeadline, psycopg.AsyncConnection[Any]):
            _sdb_deadline = deadline

        return AsyncBoundedConnection

    class BoundedConnection(PsycopgDeadline, psycopg.Connection[Any]):
        _sdb_deadline = deadline

    return BoundedConnection
