"""``transaction(pipeline=True)``: statements queued, and sent together when a result is needed.

A pipelined block's ``execute()`` returns at once with a result whose rows are not there
yet. The queue goes to the server (``driver.execute_batch``: one round trip) when a result
is read (fetch, iteration, ``scalar()``, ``rowcount``), before anything else that needs
the server (``executemany``, ``stream``, COPY, a savepoint, the driver's connection), and
when the block ends - then with its ``COMMIT``, so a block whose results are read after
it costs one round trip, BEGIN to COMMIT.

An error comes at the latest at that send: the first statement that failed is named
(its SQL and its position in the block), the statements after it did not run, and the
transaction is rolled back whole when the block ends. On asyncio a property cannot send:
``rowcount`` and ``keys()`` of a statement not sent yet ask for ``await conn.flush()``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .._contract.errors import DatabaseError, TransactionError
from .._contract.features import BatchFailed
from .._contract.protocols import Params
from .._contract.rows import Row
from .flavour import ASYNC

if TYPE_CHECKING:
    from .._contract.driver_async import AsyncRows
    from .connection_async import AsyncEngineConnection

__all__ = ["AsyncPipeline", "AsyncQueuedRows"]

NOT_SENT = (
    "this statement of a pipelined transaction has not been sent yet: read its rows first "
    "(await result.fetchall(), scalar(), ...) or 'await conn.flush()' before reading rowcount or keys()"
)


class AsyncQueuedRows:
    """The rows of a queued statement: the first access sends the queue (``AsyncRows``)."""

    __slots__ = ("bound", "error", "params", "pipeline", "query", "rows", "sql")

    def __init__(self, pipeline: AsyncPipeline, sql: str, params: Params, query: str, bound: Any) -> None:
        self.pipeline = pipeline
        self.sql = sql
        self.params = params
        self.query = query
        self.bound = bound
        self.rows: AsyncRows | None = None
        self.error: BaseException | None = None

    @property
    def pending(self) -> bool:
        return self.rows is None and self.error is None

    async def _sent(self) -> AsyncRows:
        if self.rows is None and self.error is None:
            await self.pipeline.flush()
        return self._arrived()

    def _arrived(self) -> AsyncRows:
        if self.error is not None:
            raise self.error
        if self.rows is None:
            if ASYNC:  # ASYNC
                raise TransactionError(NOT_SENT, backend=self.pipeline.conn._engine.backend)
            else:
                self.pipeline.flush()  # type: ignore[unused-coroutine]
                return self._arrived()
        return self.rows

    @property
    def rowcount(self) -> int:
        return self._arrived().rowcount

    @property
    def returns_rows(self) -> bool:
        return self._arrived().returns_rows

    def keys(self) -> list[str]:
        return self._arrived().keys()

    async def fetchone(self) -> Row | None:
        return await (await self._sent()).fetchone()

    async def fetchmany(self, size: int) -> list[Row]:
        return await (await self._sent()).fetchmany(size)

    async def fetchall(self) -> list[Row]:
        return await (await self._sent()).fetchall()

    async def scalar(self) -> object:
        return await (await self._sent()).scalar()

    async def close(self) -> None:
        if self.rows is not None:
            await self.rows.close()


class AsyncPipeline:
    """The queue of one pipelined transaction and the rule for sending it."""

    __slots__ = ("conn", "queue", "sent")

    def __init__(self, conn: AsyncEngineConnection[Any]) -> None:
        self.conn = conn
        self.queue: list[AsyncQueuedRows] = []
        self.sent = 0  # statements of the block sent so far, for the position in a message

    def add(self, sql: str, params: Params, query: str, bound: Any) -> AsyncQueuedRows:
        queued = AsyncQueuedRows(self, sql, params, query, bound)
        self.queue.append(queued)
        return queued

    async def flush(self, end: str | None = None) -> None:
        """Send the queued statements (with BEGIN if it is still to come, and ``end`` if given)."""
        queue, conn = self.queue, self.conn
        if not queue and end is None:
            return
        raw = conn._live()
        engine = conn._engine
        driver = engine.driver
        pending = conn._pending
        self.queue = []
        first = self.sent
        self.sent += len(queue)
        timed = engine.observers.statement
        started = time.perf_counter() if timed else 0.0
        try:
            results = await driver.execute_batch(raw, pending, [(q.query, q.bound) for q in queue], end)
        except BatchFailed as failed:
            conn._pending = pending if pending is not None and not driver.begun(raw) else None
            error = self._failed(failed, queue, first)
            if timed:
                self._observe(queue, end, time.perf_counter() - started, failed.index, error)
            raise error from failed.__cause__
        except engine.errors as exc:  # the message never reached the server (a lost connection)
            conn._pending = pending if pending is not None and not driver.begun(raw) else None
            error = engine.translate(exc, raw)
            self.discard(queue, error)
            raise error from exc
        conn._pending = None
        for queued, rows in zip(queue, results, strict=True):
            queued.rows = rows
        if timed:
            self._observe(queue, end, time.perf_counter() - started, None, None)

    def _observe(
        self,
        queue: list[AsyncQueuedRows],
        end: str | None,
        duration: float,
        failed_at: int | None,
        error: DatabaseError | None,
    ) -> None:
        """One statement event per statement that ran (each with the batch's round trip)."""
        observers = self.conn._engine.observers
        size = len(queue)
        for index, queued in enumerate(queue):
            if error is not None and failed_at is not None and index > failed_at:
                break
            failed = error is not None and index == failed_at
            rows = queued.rows
            observers.emit_statement(
                queued.sql,
                duration,
                rowcount=rows.rowcount if rows is not None else -1,
                error=error if failed else None,
                params=queued.params,
                batch=size,
                kind="pipelined",
            )
        if end is not None and (error is None or failed_at is None):
            observers.emit_statement(end, duration, error=error, batch=size, kind="control")

    def _failed(self, failed: BatchFailed, queue: list[AsyncQueuedRows], first: int) -> DatabaseError:
        engine = self.conn._engine
        cause = failed.__cause__ or failed
        index = failed.index
        if index is None:
            error = engine.translate(cause, self.conn._raw, context="the pipelined transaction failed")
            self.discard(queue, error)
            return error
        culprit = queue[index]
        error = engine.translate(
            cause,
            self.conn._raw,
            context=f"statement {first + index + 1} of the pipelined transaction failed",
            sql=culprit.sql,
            params=culprit.params,
        )
        for queued in queue[:index]:  # ran, but the transaction they were in is lost
            queued.error = TransactionError(
                f"not available: statement {first + index + 1} of the pipelined transaction failed",
                backend=engine.backend,
            )
        culprit.error = error
        self.discard(queue[index + 1 :], TransactionError(
            f"not run: statement {first + index + 1} of the pipelined transaction failed before it",
            backend=engine.backend,
        ))  # fmt: skip
        return error

    def discard(self, queue: list[AsyncQueuedRows] | None = None, error: BaseException | None = None) -> None:
        """Drop statements that will not run (the block or its savepoint is being rolled back)."""
        if queue is None:
            queue, self.queue = self.queue, []
        for queued in queue:
            if queued.pending:
                queued.error = error or TransactionError(
                    "not run: the pipelined transaction (or savepoint) it was in was rolled back first",
                    backend=self.conn._engine.backend,
                )
