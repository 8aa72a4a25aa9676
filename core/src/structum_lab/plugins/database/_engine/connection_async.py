"""The connection a transaction runs on: statements, results, streams, COPY, commit and
rollback, by the rules of docs/transactions.md, once for every backend.

* The transaction's BEGIN goes with its first statement where the driver can
  (``features.deferred_begin``); a pipelined block queues its statements (``pipeline_async``).
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
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from .._contract.driver_async import AsyncRows, RawT
from .._contract.errors import NotSupportedError, ParameterError, ProgrammingError, TransactionError
from .._contract.protocols import Params
from .._contract.rows import Row
from . import leaks
from .core_async import AsyncEngine
from .deadline import executemany_batches
from .flavour import ASYNC
from .logs import SQL_LOG, log
from .messages import CONNECTION_ENDED, NOT_BEGUN, NOTHING_EXECUTED
from .result_async import AsyncEngineResult
from .savepoint_async import AsyncSavepoint

if TYPE_CHECKING:
    from .pipeline_async import AsyncPipeline

__all__ = ["AsyncEngineConnection", "ConnT"]

_epoch = leaks.epoch


class AsyncEngineConnection(Generic[RawT]):
    """A pooled connection inside a transaction.

    Not safe to share between tasks: use one per task (each ``db.transaction()`` gives its
    caller its own).
    """

    __slots__ = (
        "_copying", "_depth", "_engine", "_epoch", "_last", "_loop", "_pending", "_pipeline", "_raw", "_streams",
    )  # fmt: skip

    #: The result class ``execute()`` returns (a backend may add escape hatches to it).
    result_class: ClassVar[type[AsyncEngineResult]] = AsyncEngineResult

    def __init__(self, engine: AsyncEngine[RawT], raw: RawT, pending: str | None = None) -> None:
        self._engine = engine
        self._raw: RawT | None = raw
        #: The BEGIN that goes out with the first statement (``features.deferred_begin``).
        self._pending = pending
        #: The statement queue of a ``transaction(pipeline=True)`` block.
        self._pipeline: AsyncPipeline | None = None
        self._last: AsyncEngineResult | None = None
        self._depth = 0
        self._epoch = _epoch()
        self._streams: list[tuple[AsyncRows, int]] | None = None  # open streams and their savepoint depth
        self._copying: AsyncIterator[tuple[Any, ...]] | None = None  # a copy_out() in progress
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
        if self._copying is not None:
            await self._settle()
        if self._pipeline is not None:
            await self._pipeline.flush()
        pending = self._pending
        if pending is not None:
            engine = self._engine
            try:
                await engine.driver.command(raw, pending)
            except engine.errors as exc:
                raise engine.translate(exc, raw) from exc
            self._pending = None

    def _sync_started(self) -> None:
        """For the driver-connection escape hatches: on asyncio a property cannot send BEGIN
        (nor the statements a pipelined block has queued)."""
        if self._pending is not None or (self._pipeline is not None and self._pipeline.queue):
            if ASYNC:  # ASYNC
                raise TransactionError(NOT_BEGUN, backend=self._engine.backend)
            else:
                self.start()  # type: ignore[unused-coroutine]

    async def flush(self) -> None:
        """Send the statements a ``transaction(pipeline=True)`` block has queued (one round
        trip), so that their errors surface here; elsewhere it does nothing."""
        if self._pipeline is not None:
            await self._pipeline.flush()

    # -- statements ----------------------------------------------------------------------

    async def execute(self, sql: str, params: Params = None) -> AsyncEngineResult:
        """Run one statement: ``:name`` placeholders with a dict (``%s``/``$1`` with a tuple
        where the driver has a positional style)."""
        raw = self._raw
        if raw is None:
            raise TransactionError(CONNECTION_ENDED, backend=self._engine.backend)
        if self._copying is not None:
            await self._settle()
        engine = self._engine
        query, bound = engine.translator(sql, params)
        if self._pipeline is not None:
            if engine.echo:
                SQL_LOG.info("%s %r", query, bound)
            self._last = queued = self.result_class(self._pipeline.add(sql, params, query, bound), engine)
            return queued
        pending = self._pending
        timed = engine.observers.statement
        started = time.perf_counter() if timed else 0.0
        try:
            if pending is None:
                rows = await engine.driver.execute(raw, query, bound)
            else:
                self._pending = None
                rows = await engine.driver.execute_begun(raw, pending, query, bound)
        except engine.errors as exc:
            if pending is not None and not engine.driver.begun(raw):
                self._pending = pending  # nothing reached the server: BEGIN still to come
            error = engine.translate(exc, raw, sql=sql, params=params)
            if timed:
                engine.observers.emit_statement(sql, time.perf_counter() - started, error=error, params=params)
            raise error from exc
        if timed:
            engine.observers.emit_statement(sql, time.perf_counter() - started, rowcount=rows.rowcount, params=params)
        if engine.echo:
            SQL_LOG.info("%s %r", query, bound)
        self._last = result = self.result_class(rows, engine)
        return result

    async def executemany(self, sql: str, params_seq: Iterable[Params]) -> int:
        """One statement for each parameter set, in batches; returns the rows affected (-1 if unknown)."""
        raw = self._live()
        if self._copying is not None:
            await self._settle()
        engine = self._engine
        statement = engine.translator.prepare(sql)
        batch = statement.bind_many(params_seq)
        if not batch:
            return 0
        if self._pending is not None or self._pipeline is not None:
            await self.start()
        total = 0
        timed = engine.observers.statement
        started = time.perf_counter() if timed else 0.0
        try:
            for chunk in executemany_batches(batch):  # each a round trip under statement_deadline
                count = await engine.driver.executemany(raw, statement.sql, chunk)
                total = total + count if total >= 0 and count >= 0 else -1
        except engine.errors as exc:
            error = engine.translate(exc, raw, sql=sql)
            if timed:
                engine.observers.emit_statement(
                    sql, time.perf_counter() - started, error=error, batch=len(batch), kind="executemany"
                )
            raise error from exc
        if timed:
            engine.observers.emit_statement(
                sql, time.perf_counter() - started, rowcount=total, batch=len(batch), kind="executemany"
            )
        return total

    async def stream(self, sql: str, params: Params = None, *, batch_size: int = 1000) -> AsyncIterator[Row]:
        """The rows of a query, read ``batch_size`` at a time from a server-side cursor: memory
        holds about ``batch_size`` rows, however many the query returns.

        ``async for row in conn.stream(...)``. Breaking out of the loop, an exception in it,
        and the end of the transaction close the cursor.
        """
        raw = self._live()
        if self._copying is not None:
            await self._settle()
        engine = self._engine
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ParameterError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
        query, bound = engine.translator(sql, params)
        if self._pending is not None or self._pipeline is not None:
            await self.start()
        timed = engine.observers.statement
        started = time.perf_counter() if timed else 0.0
        try:
            rows = await engine.driver.stream(raw, query, bound, batch_size)
        except engine.errors as exc:
            error = engine.translate(exc, raw, sql=sql, params=params)
            if timed:
                engine.observers.emit_statement(
                    sql, time.perf_counter() - started, error=error, params=params, kind="stream"
                )
            raise error from exc
        if timed:  # the time to open the cursor and read the first batch's header, not the whole stream
            engine.observers.emit_statement(sql, time.perf_counter() - started, params=params, kind="stream")
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
        if self._copying is not None:
            await self._settle()
        engine = self._engine
        if self._pending is not None or self._pipeline is not None:
            await self.start()
        timed = engine.observers.statement
        started = time.perf_counter() if timed else 0.0
        label = f"COPY {table} FROM STDIN"
        try:
            count = await engine.driver.copy_in(raw, table, columns, rows)
        except engine.errors as exc:
            error = engine.translate(exc, raw)
            if timed:
                engine.observers.emit_statement(label, time.perf_counter() - started, error=error, kind="copy")
            raise error from exc
        if timed:
            engine.observers.emit_statement(label, time.perf_counter() - started, rowcount=count, kind="copy")
        return count

    def copy_out(self, sql: str, params: Params = None) -> AsyncIterator[tuple[Any, ...]]:
        """The rows of a query through ``COPY (query) TO STDOUT``, as tuples, streamed: the
        fastest way to read many rows (PostgreSQL only; elsewhere ``NotSupportedError``).

        It runs in a savepoint, so leaving the loop early (which cancels the COPY) leaves the
        transaction usable. (On asyncio a generator left early is closed later, by the event
        loop: the connection's next statement ends the COPY first if it has not ended yet.)
        """
        self._live()
        holder: list[AsyncIterator[tuple[Any, ...]]] = []
        records = self._copy_out(sql, params, holder)
        holder.append(records)
        return records

    async def _copy_out(
        self, sql: str, params: Params, holder: list[AsyncIterator[tuple[Any, ...]]]
    ) -> AsyncIterator[tuple[Any, ...]]:
        if self._copying is not None:
            await self._settle()
        raw = self._live()
        engine = self._engine
        query, bound = engine.translator(sql, params)
        async with self.transaction():
            records = engine.driver.copy_out(raw, query, bound)
            self._copying = holder[0]
            try:
                async for record in records:
                    yield record
            except engine.errors as exc:
                raise engine.translate(exc, raw) from exc
            finally:
                self._copying = None
                await records.aclose()  # type: ignore[attr-defined]

    async def _settle(self) -> None:
        """End a COPY whose loop was left (asyncio closes such a generator later, by the
        event loop) before the connection runs anything else."""
        copying, self._copying = self._copying, None
        if copying is not None:
            await copying.aclose()  # type: ignore[attr-defined]

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
        raw = await self._wind_up()
        if self._pipeline is not None:
            await self._pipeline.flush()
        if self._pending is None:  # else nothing ran: nothing to commit
            await self._engine.commit(raw)
        await self._next_transaction(raw)

    async def rollback(self) -> None:
        """Roll back the work so far; the next statement starts a new transaction."""
        raw = await self._wind_up()
        if self._pipeline is not None:
            self._pipeline.discard()
        if self._pending is None:
            await self._engine.rollback(raw)
        await self._next_transaction(raw)

    async def _wind_up(self) -> RawT:
        """The live connection, once what cannot outlive a transaction has ended (a COPY, streams)."""
        raw = self._live()
        if self._copying is not None:
            await self._settle()
        if self._streams:
            await self._close_streams()
        return raw

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
        if self._copying is not None:
            await shield(self._settle())
        if self._streams:
            await shield(self._close_streams())
        if self._pipeline is not None:
            self._pipeline.discard()
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
