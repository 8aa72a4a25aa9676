"""Connections, savepoints and transaction blocks: the rules of docs/transactions.md, once.

* ``db.transaction()`` checks out a connection, begins, and commits when its block ends
  (rolls back on any exception, cancellation included); called inside an open
  transaction of the same thread or task it becomes a SAVEPOINT of that one.
* A connection whose block ended (or that was closed) refuses to run anything.
* A connection dropped without ``close()`` is handed to the reaper, never rolled back
  inside the finalizer.
* Clean-up after an error runs shielded from a second cancellation, so a pooled
  connection is never lost.
"""

from __future__ import annotations

import time
from asyncio import AbstractEventLoop, get_running_loop, shield
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from typing import Any, ClassVar, Generic, TypeVar, cast

from .._contract.driver_async import AsyncRows, RawT
from .._contract.errors import NotSupportedError, ParameterError, ProgrammingError, TransactionError
from .._contract.protocols import IsolationLevel, Params
from .._contract.rows import Row
from . import leaks
from .core_async import AsyncEngine
from .deadline import executemany_batches
from .flavour import ASYNC
from .logs import SQL_LOG, log
from .messages import CONNECTION_ENDED, NESTED_OPTIONS, NOTHING_EXECUTED
from .result_async import AsyncEngineResult

__all__ = ["AsyncEngineConnection", "AsyncSavepoint", "AsyncTransactionBlock", "ConnT"]

_epoch = leaks.epoch


class AsyncEngineConnection(Generic[RawT]):
    """A pooled connection inside a transaction.

    Not safe to share between tasks: use one per task (each ``db.transaction()`` gives its
    caller its own).
    """

    __slots__ = ("_depth", "_engine", "_epoch", "_last", "_loop", "_pending", "_raw", "_streams")

    #: The result class ``execute()`` returns (a backend may add escape hatches to it).
    result_class: ClassVar[type[AsyncEngineResult]] = AsyncEngineResult

    def __init__(self, engine: AsyncEngine[RawT], raw: RawT, pending: str | None = None) -> None:
        self._engine = engine
        self._raw: RawT | None = raw
        #: The BEGIN that goes out with the first statement (``features.deferred_begin``).
        self._pending = pending
        self._last: AsyncEngineResult | None = None
        self._depth = 0
        self._epoch = _epoch()
        self._streams: list[tuple[AsyncRows, int]] | None = None  # open streams and their savepoint depth
        self._loop: AbstractEventLoop | None
        if ASYNC:  # ASYNC
            self._loop = get_running_loop()  # where the connection must be returned if it leaks
        else:
            self._loop = None

    def __del__(self, _reclaim_later: Any = leaks.reclaim_later) -> None:
        # Dropped while still open (get_connection() without close()): the reaper thread
        # rolls back and returns the connection; a finalizer itself must not block or lock.
        raw = self._raw
        if raw is not None:
            self._raw = None
            _reclaim_later(self._epoch, self._engine.reclaim, raw, self._loop)

    def _live(self) -> RawT:
        raw = self._raw
        if raw is None:
            raise TransactionError(CONNECTION_ENDED, backend=self._engine.backend)
        return raw

    @property
    def closed(self) -> bool:
        return self._raw is None

    async def start(self) -> None:
        """Send the transaction's BEGIN now if no statement has yet (it normally travels with
        the first statement). Needed only before using the driver's own connection object."""
        raw = self._live()
        pending = self._pending
        if pending is not None:
            engine = self._engine
            try:
                await engine.driver.command(raw, pending)
            except engine.errors as exc:
                raise engine.translate(exc, raw) from exc
            self._pending = None

    def _sync_started(self) -> None:
        """For the driver-connection escape hatches: on asyncio a property cannot send BEGIN."""
        if self._pending is not None:
            if ASYNC:  # ASYNC
                raise TransactionError(
                    "this transaction has not begun yet (BEGIN goes with its first statement): run a statement "
                    "or 'await conn.start()' before using the driver's connection",
                    backend=self._engine.backend,
                )
            else:
                self.start()  # type: ignore[unused-coroutine]

    # -- statements ----------------------------------------------------------------------

    async def execute(self, sql: str, params: Params = None) -> AsyncEngineResult:
        """Run one statement: ``:name`` placeholders with a dict (``%s``/``$1`` with a tuple
        where the driver has a positional style)."""
        raw = self._raw
        if raw is None:
            raise TransactionError(CONNECTION_ENDED, backend=self._engine.backend)
        engine = self._engine
        query, bound = engine.translator(sql, params)
        pending = self._pending
        try:
            if pending is None:
                rows = await engine.driver.execute(raw, query, bound)
            else:
                self._pending = None
                rows = await engine.driver.execute_begun(raw, pending, query, bound)
        except engine.errors as exc:
            if pending is not None and not engine.driver.begun(raw):
                self._pending = pending  # nothing reached the server: BEGIN still to come
            raise engine.translate(exc, raw, sql=sql, params=params) from exc
        if engine.echo:
            SQL_LOG.info("%s %r", query, bound)
        self._last = result = self.result_class(rows, engine)
        return result

    async def executemany(self, sql: str, params_seq: Iterable[Params]) -> int:
        """One statement for each parameter set, in batches; returns the rows affected (-1 if unknown)."""
        raw = self._live()
        engine = self._engine
        statement = engine.translator.prepare(sql)
        batch = statement.bind_many(params_seq)
        if not batch:
            return 0
        if self._pending is not None:
            await self.start()
        total = 0
        try:
            for chunk in executemany_batches(batch):  # each a round trip under statement_deadline
                count = await engine.driver.executemany(raw, statement.sql, chunk)
                total = total + count if total >= 0 and count >= 0 else -1
        except engine.errors as exc:
            raise engine.translate(exc, raw, sql=sql) from exc
        return total

    async def stream(self, sql: str, params: Params = None, *, batch_size: int = 1000) -> AsyncIterator[Row]:
        """The rows of a query, read ``batch_size`` at a time from a server-side cursor: memory
        holds about ``batch_size`` rows, however many the query returns.

        ``async for row in conn.stream(...)``. Breaking out of the loop, an exception in it,
        and the end of the transaction close the cursor.
        """
        raw = self._live()
        engine = self._engine
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ParameterError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
        query, bound = engine.translator(sql, params)
        if self._pending is not None:
            await self.start()
        try:
            rows = await engine.driver.stream(raw, query, bound, batch_size)
        except engine.errors as exc:
            raise engine.translate(exc, raw, sql=sql, params=params) from exc
        entry = (rows, self._depth)
        if self._streams is None:
            self._streams = []
        self._streams.append(entry)
        try:
            while True:
                try:
                    batch = await rows.fetchmany(batch_size)
                except engine.read_errors as exc:
                    raise AsyncEngineResult(rows, engine)._failed(exc) from exc
                if not batch:
                    return
                for row in batch:
                    yield row
        finally:
            await self._close_stream(entry)

    async def copy_records(
        self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]] | AsyncIterable[Sequence[Any]]
    ) -> int:
        """Bulk-load ``rows`` into ``table`` (``"name"`` or ``"schema.name"``) with COPY; returns the count.

        Much faster than ``executemany`` for thousands of rows (one stream, no statement per
        row). PostgreSQL only (``db.features.copy``); elsewhere ``NotSupportedError``.
        """
        raw = self._live()
        engine = self._engine
        if self._pending is not None:
            await self.start()
        try:
            return await engine.driver.copy_in(raw, table, columns, rows)
        except engine.errors as exc:
            raise engine.translate(exc, raw) from exc

    async def copy_out(self, sql: str, params: Params = None) -> AsyncIterator[tuple[Any, ...]]:
        """The rows of a query through ``COPY (query) TO STDOUT``, as tuples, streamed: the
        fastest way to read many rows (PostgreSQL only; elsewhere ``NotSupportedError``).

        It runs in a savepoint, so breaking out of the loop (which cancels the COPY) leaves
        the transaction usable.
        """
        raw = self._live()
        engine = self._engine
        query, bound = engine.translator(sql, params)
        async with self.transaction():
            records = engine.driver.copy_out(raw, query, bound)
            try:
                async for record in records:
                    yield record
            except engine.errors as exc:
                raise engine.translate(exc, raw) from exc
            finally:
                await records.aclose()  # type: ignore[attr-defined]

    async def notify(self, channel: str, payload: str = "") -> None:
        """Send ``NOTIFY channel, payload``; it is delivered when the transaction commits."""
        if not self._engine.features.listen_notify:
            raise NotSupportedError(f"the {self._engine.backend} backend has no LISTEN/NOTIFY on this database")
        await self.execute("SELECT pg_notify(:channel, :payload)", {"channel": channel, "payload": payload})

    async def _close_stream(self, entry: tuple[AsyncRows, int]) -> None:
        streams = self._streams
        if streams is not None and entry in streams:
            streams.remove(entry)
            try:
                await entry[0].close()
            except Exception:
                log.debug("closing a stream's cursor failed", exc_info=True)

    async def _close_streams(self, depth: int = 0) -> None:
        """Close the cursors of streams not read to the end that were opened at ``depth`` or deeper:
        before the transaction ends, or before a savepoint they were opened in is rolled back."""
        for entry in [e for e in self._streams or () if e[1] >= depth]:
            await self._close_stream(entry)

    def _last_result(self) -> AsyncEngineResult:
        if self._last is None:
            raise ProgrammingError(NOTHING_EXECUTED, backend=self._engine.backend)
        return self._last

    async def fetchone(self) -> Row | None:
        """Fetch from the last ``execute()`` result (DB-API cursor style, spec section 1.1)."""
        return await self._last_result().fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Row]:
        return await self._last_result().fetchmany(size)

    async def fetchall(self) -> list[Row]:
        return await self._last_result().fetchall()

    # -- transactions --------------------------------------------------------------------

    def transaction(self) -> AsyncSavepoint[RawT]:
        """A nested transaction (SAVEPOINT): ``async with conn.transaction(): ...``."""
        return AsyncSavepoint(self)

    async def commit(self) -> None:
        """Commit the work so far; the next statement starts a new transaction."""
        raw = self._live()
        if self._streams:
            await self._close_streams()
        engine = self._engine
        if self._pending is None:  # else nothing ran: nothing to commit
            await engine.commit(raw)
        await self._next_transaction(raw)

    async def rollback(self) -> None:
        """Roll back the work so far; the next statement starts a new transaction."""
        raw = self._live()
        if self._streams:
            await self._close_streams()
        if self._pending is None:
            await self._engine.rollback(raw)
        await self._next_transaction(raw)

    async def _next_transaction(self, raw: RawT) -> None:
        engine = self._engine
        if engine.features.deferred_begin:
            self._pending = engine.driver.begin_sql(engine.isolation, False)
        else:
            await engine.restart(raw)

    async def close(self) -> None:
        """Roll back anything uncommitted and return the connection to the pool."""
        raw = self._raw
        if raw is None:
            return
        if self._streams:
            await shield(self._close_streams())
        self._raw = None
        self._last = None
        # Shielded: a second cancellation arriving during the return would lose the connection.
        await shield(self._engine.release(raw))

    async def __aenter__(self) -> AsyncEngineConnection[RawT]:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        try:
            if exc_type is None and self._raw is not None and self._pending is None:
                await self._engine.commit(self._raw)
        finally:
            await self.close()


ConnT = TypeVar("ConnT", bound=AsyncEngineConnection[Any])


class AsyncSavepoint(Generic[RawT]):
    """``async with conn.transaction():`` - a SAVEPOINT released on success, rolled back to on error."""

    __slots__ = ("_conn", "_name")

    def __init__(self, conn: AsyncEngineConnection[RawT]) -> None:
        self._conn = conn
        self._name = ""

    async def __aenter__(self) -> AsyncEngineConnection[RawT]:
        conn = self._conn
        raw = conn._live()
        engine = conn._engine
        if conn._pending is not None:
            await conn.start()
        conn._depth += 1
        self._name = name = f"structum_sp_{conn._depth}"
        try:
            await engine.driver.savepoint(raw, name)
        except BaseException as exc:
            conn._depth -= 1
            if isinstance(exc, engine.errors):
                raise engine.translate(exc, raw) from exc
            raise
        return conn

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        conn = self._conn
        conn._depth -= 1
        raw = conn._raw
        if raw is None:  # closed inside the block: everything was rolled back
            return
        engine = conn._engine
        if exc_type is None:
            try:
                await engine.driver.release_savepoint(raw, self._name)
            except engine.errors as error:
                raise engine.translate(error, raw) from error
            return
        try:
            if conn._streams:
                await conn._close_streams(conn._depth + 1)  # their cursors go with the savepoint
            await engine.driver.rollback_to_savepoint(raw, self._name)
        except Exception:
            # The caller's exception is the one that explains what happened.
            log.debug("rollback to savepoint failed after %s", exc_type.__name__, exc_info=True)


class AsyncTransactionBlock(Generic[ConnT]):
    """``async with db.transaction() as conn:`` (class-based: cheaper than ``@asynccontextmanager``)."""

    __slots__ = ("_conn", "_engine", "_factory", "_isolation", "_nested", "_readonly", "_started", "_token")

    def __init__(
        self, engine: AsyncEngine[Any], factory: type[ConnT], isolation: IsolationLevel | None, readonly: bool
    ) -> None:
        self._engine = engine
        self._factory = factory
        self._isolation = isolation
        self._readonly = readonly
        self._nested: AsyncSavepoint[Any] | None = None
        self._started = 0.0

    async def __aenter__(self) -> ConnT:
        engine = self._engine
        current = engine.scope.current()
        if current is not None:
            if self._isolation is not None or self._readonly:
                raise TransactionError(NESTED_OPTIONS, backend=engine.backend)
            self._nested = nested = AsyncSavepoint(current)
            return cast("ConnT", await nested.__aenter__())
        if engine.observed():
            self._started = time.perf_counter()
        raw = await engine.checkout()
        if engine.features.deferred_begin:  # BEGIN goes out with the first statement
            pending = engine.driver.begin_sql(self._isolation or engine.isolation, self._readonly)
            self._conn = conn = self._factory(engine, raw, pending)
        else:
            await engine.begin(raw, self._isolation, self._readonly)  # gives the connection back if it fails
            self._conn = conn = self._factory(engine, raw)
        self._token = engine.scope.enter(conn)
        return conn

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if self._nested is not None:
            await self._nested.__aexit__(exc_type, exc, tb)
            return
        engine = self._engine
        conn = self._conn
        engine.scope.leave(self._token)
        raw = conn._raw
        error: BaseException | None = exc
        if raw is None:  # closed inside the block: its work was rolled back
            if self._started:
                engine.transaction_finished("rollback", self._started, error)
            return
        if conn._streams:
            await shield(conn._close_streams())
        begun = conn._pending is None
        conn._raw = None
        conn._last = None
        reset = (self._isolation is not None or self._readonly) and not engine.features.deferred_begin
        try:
            if not begun:  # no statement ran: there is no transaction to end
                await engine.release(raw)
            elif exc_type is None:
                try:
                    await engine.commit(raw)
                except BaseException as commit_error:
                    error = commit_error
                    await shield(engine.finish(raw, rollback=True, reset=reset))
                    raise
                await engine.finish(raw, rollback=False, reset=reset)
            else:
                # Cancellation lands here most often: finish the clean-up even if cancelled again.
                await shield(engine.finish(raw, rollback=True, reset=reset))
        finally:
            if self._started:
                engine.transaction_finished("commit" if error is None else "rollback", self._started, error)
