"""The driver contract: the verbs a backend supplies to the engine, verb by verb.

The engine (``_engine/``) owns the behaviour users see: transaction rules, nesting and
savepoints, checkout accounting, health, shutdown, fork and leak handling, observer
events, error translation and secret masking. A backend supplies a *driver*: an object
with the verbs below, in the manner of SQLAlchemy's ``Dialect`` (``do_begin``,
``do_commit``, ``do_ping``, ``is_disconnect``) and Django's ``DatabaseWrapper``. Most
verbs have a default in :class:`AsyncDriverBase`; a driver overrides what its driver
library does differently.

``RawT`` is the driver's own connection object (a psycopg connection, a SQLAlchemy
``Connection``, ...); the engine never looks inside it, it only hands it back. The asyncio
names (``AsyncDriver``...) have sync twins without the prefix (``Driver``...).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from .errors import ConfigurationError, DatabaseError, NotSupportedError
from .features import Features, PoolLimits
from .notifications import Notification
from .protocols import IsolationLevel, PoolInfo
from .rows import Row

if TYPE_CHECKING:
    from .._engine.params import Bound, Translator

__all__ = ["AsyncDriver", "AsyncDriverBase", "AsyncNotifier", "AsyncRows", "RawT"]

#: The driver's connection object, opaque to the engine.
RawT = TypeVar("RawT")


class AsyncRows(Protocol):
    """What ``execute()`` returns: the rows of one statement, as core :class:`Row` dicts.

    A fetch past the last row gives ``None`` / ``[]``. The engine checks nothing before a
    fetch: asked for rows of a statement that returns none (``INSERT`` without
    ``RETURNING``), raise :class:`NoRows` or a driver error (the engine then asks
    :attr:`returns_rows`); the user gets a ``ProgrammingError`` that says to use ``rowcount``.
    """

    @property
    def rowcount(self) -> int:
        """Rows affected (or returned, when the driver knows); -1 if unknown."""
        ...

    @property
    def returns_rows(self) -> bool: ...

    def keys(self) -> list[str]:
        """Column names in select-list order (``[]`` for a statement without rows)."""
        ...

    async def fetchone(self) -> Row | None: ...
    async def fetchmany(self, size: int) -> list[Row]: ...
    async def fetchall(self) -> list[Row]: ...

    async def scalar(self) -> object:
        """The first column of the next row, by position (``None`` without a row)."""
        ...

    async def close(self) -> None:
        """Discard what is left (the cursor goes now); later fetches give ``None``/``[]``."""
        ...


class AsyncNotifier(Protocol):
    """A connection of its own, outside the pool, that receives notifications."""

    async def listen(self, channels: Sequence[str]) -> None:
        """``LISTEN`` on each channel (names quoted)."""
        ...

    async def wait(self, seconds: float | None) -> list[Notification]:
        """Notifications received (at least one), or ``[]`` when ``seconds`` passed
        without any; ``None`` waits as long as it takes. A lost connection raises."""
        ...

    async def close(self) -> None: ...


class AsyncDriver(Protocol[RawT]):
    """The verbs the engine calls; see :class:`AsyncDriverBase` for the defaults.

    Errors: a verb raises its driver's own exceptions (those in :attr:`errors`), and the
    engine translates them with :meth:`unwrap_error`; a verb may also raise a core
    :class:`DatabaseError` itself, which passes unchanged.
    """

    @property
    def features(self) -> Features:
        """Capability flags; the engine and the conformance tests read them."""
        ...

    @property
    def limits(self) -> PoolLimits:
        """Pool sizes as configured, for the exhaustion message and the health check."""
        ...

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """The exceptions the engine catches around these verbs and translates."""
        ...

    @property
    def translator(self) -> Translator:
        """Rewrites ``:name`` (and the other accepted styles) into the driver's paramstyle."""
        ...

    @property
    def error_classes(self) -> Mapping[type[DatabaseError], type[DatabaseError]]:
        """Subclasses to raise instead of the engine's own errors (``PoolTimeoutError``,
        ``NoResultFound``, ``MultipleResultsFound``), e.g. to make them catchable as the
        driver library's own too."""
        ...

    @property
    def loggers(self) -> Sequence[str | logging.Logger]:
        """Loggers the driver writes to; the engine masks the database's secrets in them."""
        ...

    # -- the pool ----------------------------------------------------------------------

    async def open(self) -> None:
        """Start the pool (called once, before the first checkout). Must not wait for a server."""
        ...

    async def close(self) -> None:
        """Close the pool and its idle connections; connections still lent are closed on return."""
        ...

    def after_fork(self) -> object:
        """In a forked child: start over with a pool of its own, leaving the parent's
        connections untouched, and return the inherited pool (core keeps it referenced
        and never closes it). The engine calls :meth:`open` again before the next checkout."""
        ...

    def pool_figures(self, checked_out: int) -> PoolInfo:
        """``available``, ``total``, ``overflow``, ``size``, ``max_size`` (and optionally
        ``min_size``, ``checked_out``, and ``connections_lost`` counted by the pool itself);
        ``checked_out`` is the engine's own count of lent connections."""
        ...

    @property
    def pool_ready(self) -> bool:
        """False while the pool has no working connection (starting, or the server was just
        lost): the health check then asks :meth:`verify_server` instead of waiting on the pool."""
        ...

    async def verify_server(self, budget: float) -> None:
        """Open one connection outside the pool within ``budget`` seconds and close it."""
        ...

    async def acquire(self, *, ping: bool) -> RawT:
        """A live connection, within the pool timeout; raise :class:`PoolExhausted` when none
        became free. ``ping``: the caller (a health check) needs proof of life, so make a
        round trip on it even if the connection was used a moment ago."""
        ...

    async def release(self, raw: RawT) -> None:
        """Give a connection back: roll back anything open, return it to the pool (or discard
        it if it is broken). Never raises."""
        ...

    def describe(self, raw: RawT) -> str:
        """How a leak warning names a connection (``"server pid 4242"``)."""
        ...

    def abandon(self, raw: RawT) -> None:
        """Drop a connection whose event loop is gone (a leaked async connection): close its
        socket without I/O on the loop."""
        ...

    # -- transactions ------------------------------------------------------------------

    async def begin(self, raw: RawT, isolation: IsolationLevel | None, readonly: bool) -> None:
        """Start a transaction, with its isolation level and read-only mode when given."""
        ...

    def begin_sql(self, isolation: IsolationLevel | None, readonly: bool) -> str:
        """``features.deferred_begin``: the statement that starts a transaction with these
        options (``BEGIN ISOLATION LEVEL ... READ ONLY``); the engine sends it with the
        transaction's first statement, through :meth:`execute_begun` or :meth:`command`."""
        ...

    async def execute_begun(self, raw: RawT, begin: str, sql: str, params: Bound) -> AsyncRows:
        """Send ``begin`` and the statement, in one round trip where the driver can; the rows
        are the statement's. A failure that left no transaction open must leave
        :meth:`begun` False."""
        ...

    def begun(self, raw: RawT) -> bool:
        """Whether the connection is inside a transaction now (after a failed ``execute_begun``)."""
        ...

    async def commit(self, raw: RawT) -> None:
        """COMMIT. On failure raise; the engine then calls :meth:`rollback` to leave the
        connection clean."""
        ...

    async def rollback(self, raw: RawT) -> None:
        """ROLLBACK whatever is open, including a transaction whose COMMIT failed."""
        ...

    async def reset(self, raw: RawT) -> None:
        """After a transaction that set isolation or read-only: restore the defaults."""
        ...

    def transaction_failed(self, raw: RawT) -> bool:
        """Whether the server has aborted the open transaction (``features.aborted_state``)."""
        ...

    async def autocommit(self, raw: RawT, enabled: bool) -> None:
        """Switch autocommit (``features.autocommit``) for one statement outside a transaction."""
        ...

    async def command(self, raw: RawT, sql: str) -> None:
        """Run SQL without parameters and discard any result (savepoints, ``SET``)."""
        ...

    async def savepoint(self, raw: RawT, name: str) -> None: ...
    async def release_savepoint(self, raw: RawT, name: str) -> None: ...
    async def rollback_to_savepoint(self, raw: RawT, name: str) -> None:
        """Roll back to the savepoint and release it."""
        ...

    # -- statements --------------------------------------------------------------------

    async def execute(self, raw: RawT, sql: str, params: Bound) -> AsyncRows:
        """Run one translated statement; ``params`` is None when the SQL has no placeholders
        (then no ``%`` may be parsed)."""
        ...

    async def executemany(self, raw: RawT, sql: str, param_sets: Sequence[Bound]) -> int:
        """Run one statement per parameter set (a batch of at most ``EXECUTEMANY_BATCH``);
        return the rows affected, -1 if unknown."""
        ...

    async def execute_batch(
        self, raw: RawT, begin: str | None, statements: Sequence[tuple[str, Bound]], end: str | None
    ) -> Sequence[AsyncRows]:
        """``features.pipelining``: send ``begin`` (when given), the statements and ``end``
        (``COMMIT``, when given) in one round trip where the driver can, and return each
        statement's rows, readable after the call (buffered). If statement ``i`` fails,
        ``raise BatchFailed(i) from error``: the server has run none of the later ones (nor
        ``end``), and the transaction is open and aborted."""
        ...

    async def stream(self, raw: RawT, sql: str, params: Bound, batch_size: int) -> AsyncRows:
        """Run a query whose rows are read ``batch_size`` at a time from a server-side cursor (or
        the driver's streaming mode), never all at once (``features.server_side_cursors``);
        ``close()`` on the rows closes the cursor."""
        ...

    async def copy_in(
        self,
        raw: RawT,
        table: str,
        columns: Sequence[str],
        records: Iterable[Sequence[Any]] | AsyncIterable[Sequence[Any]],
    ) -> int:
        """``COPY table (columns) FROM STDIN`` with ``records`` (``features.copy``); the row count."""
        ...

    def copy_out(self, raw: RawT, sql: str, params: Bound) -> AsyncIterator[tuple[Any, ...]]:
        """The rows of ``COPY (sql) TO STDOUT`` as tuples of Python values, streamed (``features.copy``)."""
        ...

    async def notifier(self) -> AsyncNotifier:
        """A new connection for LISTEN, outside the pool (``features.listen_notify``)."""
        ...

    # -- errors ------------------------------------------------------------------------

    def unwrap_error(self, exc: BaseException, raw: RawT | None) -> tuple[BaseException, bool]:
        """The exception to classify (the DB-API error under a wrapper) and whether the
        connection is now dead (``is_disconnect``)."""
        ...

    def connection_lost(self) -> None:
        """A connection died in use: the server may be restarting (the pool may want to check)."""
        ...


class AsyncDriverBase(Generic[RawT]):
    """Defaults for the verbs of :class:`AsyncDriver`; subclass it and override.

    Required: :meth:`acquire`, :meth:`release`, :meth:`commit`, :meth:`rollback`,
    :meth:`command`, :meth:`execute`, :meth:`executemany`, :meth:`pool_figures`, and
    the attributes ``features``, ``limits``, ``errors``, ``translator``.
    """

    features: Features = Features()
    limits: PoolLimits
    errors: tuple[type[BaseException], ...]
    translator: Translator
    #: Set by the engine: call it with ``("created", seconds)`` when the pool opened a
    #: connection and ``("closed", 0.0)`` when it closed one (any thread), for the observers.
    on_connection: Callable[[Any, float], None] | None = None
    error_classes: Mapping[type[DatabaseError], type[DatabaseError]] = {}
    loggers: Sequence[str | logging.Logger] = ()

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def after_fork(self) -> object:
        return None

    @property
    def pool_ready(self) -> bool:
        return True

    async def verify_server(self, budget: float) -> None:
        raise ConfigurationError(f"{type(self).__name__} cannot open a connection outside its pool")

    def describe(self, raw: RawT) -> str:
        return type(raw).__name__

    def abandon(self, raw: RawT) -> None:
        return None

    async def begin(self, raw: RawT, isolation: IsolationLevel | None, readonly: bool) -> None:
        """DB-API drivers begin implicitly; isolation and read-only need a driver's own verb."""
        if isolation is not None or readonly:
            raise ConfigurationError(f"{type(self).__name__} does not support isolation levels or read-only mode")

    async def reset(self, raw: RawT) -> None:
        return None

    def begin_sql(self, isolation: IsolationLevel | None, readonly: bool) -> str:
        """PostgreSQL's (and the standard's) spelling; override for other databases."""
        parts = ["BEGIN"]
        if isolation is not None:
            parts.append("ISOLATION LEVEL " + isolation.replace("_", " ").upper())
        if readonly:
            parts.append("READ ONLY")
        return " ".join(parts)

    async def execute_begun(self, raw: RawT, begin: str, sql: str, params: Bound) -> AsyncRows:
        """Two round trips; a driver that can send both at once overrides this."""
        await self.command(raw, begin)
        return await self.execute(raw, sql, params)

    def begun(self, raw: RawT) -> bool:
        return True

    def transaction_failed(self, raw: RawT) -> bool:
        return False

    async def autocommit(self, raw: RawT, enabled: bool) -> None:
        raise ConfigurationError(f"{type(self).__name__} has no autocommit mode (features.autocommit is False)")

    async def command(self, raw: RawT, sql: str) -> None:
        raise NotImplementedError

    async def execute(self, raw: RawT, sql: str, params: Bound) -> AsyncRows:
        raise NotImplementedError

    async def execute_batch(
        self, raw: RawT, begin: str | None, statements: Sequence[tuple[str, Bound]], end: str | None
    ) -> Sequence[AsyncRows]:
        raise NotSupportedError(f"{type(self).__name__} does not pipeline (features.pipelining is False)")

    async def savepoint(self, raw: RawT, name: str) -> None:
        await self.command(raw, f"SAVEPOINT {name}")

    async def release_savepoint(self, raw: RawT, name: str) -> None:
        await self.command(raw, f"RELEASE SAVEPOINT {name}")

    async def rollback_to_savepoint(self, raw: RawT, name: str) -> None:
        # Two statements: not every driver takes several in one call (sqlite3, PyMySQL).
        await self.command(raw, f"ROLLBACK TO SAVEPOINT {name}")
        await self.command(raw, f"RELEASE SAVEPOINT {name}")

    async def stream(self, raw: RawT, sql: str, params: Bound, batch_size: int) -> AsyncRows:
        raise NotSupportedError(f"{type(self).__name__} cannot stream results (features.server_side_cursors is False)")

    async def copy_in(
        self,
        raw: RawT,
        table: str,
        columns: Sequence[str],
        records: Iterable[Sequence[Any]] | AsyncIterable[Sequence[Any]],
    ) -> int:
        raise NotSupportedError(f"{type(self).__name__} has no COPY (features.copy is False)")

    def copy_out(self, raw: RawT, sql: str, params: Bound) -> AsyncIterator[tuple[Any, ...]]:
        raise NotSupportedError(f"{type(self).__name__} has no COPY (features.copy is False)")

    async def notifier(self) -> AsyncNotifier:
        raise NotSupportedError(f"{type(self).__name__} has no LISTEN/NOTIFY (features.listen_notify is False)")

    def unwrap_error(self, exc: BaseException, raw: RawT | None) -> tuple[BaseException, bool]:
        return exc, False

    def connection_lost(self) -> None:
        return None
