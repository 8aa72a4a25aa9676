"""``async with db.transaction() as conn:``: check out, begin (or defer the BEGIN to the
first statement), commit when the block ends, roll back on any exception (cancellation
included, the clean-up shielded from a second one). Inside an open transaction of the
same thread or task it is a savepoint of that one.
"""

from __future__ import annotations

import time
from asyncio import shield
from typing import Any, Generic, cast

from .._contract.errors import TransactionError
from .._contract.protocols import IsolationLevel
from .connection_async import ConnT
from .core_async import AsyncEngine
from .messages import NESTED_OPTIONS
from .pipeline_async import AsyncPipeline
from .savepoint_async import AsyncSavepoint

__all__ = ["AsyncTransactionBlock"]


class AsyncTransactionBlock(Generic[ConnT]):
    """``async with db.transaction() as conn:`` (class-based: cheaper than ``@asynccontextmanager``)."""

    __slots__ = (
        "_conn", "_engine", "_factory", "_isolation", "_nested", "_pipeline", "_readonly", "_started", "_token",
    )  # fmt: skip

    def __init__(
        self,
        engine: AsyncEngine[Any],
        factory: type[ConnT],
        isolation: IsolationLevel | None,
        readonly: bool,
        pipeline: bool = False,
    ) -> None:
        self._engine = engine
        self._factory = factory
        self._isolation = isolation
        self._readonly = readonly
        self._pipeline = pipeline
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
        observed = engine.observed()
        if observed:
            self._started = time.perf_counter()
        raw = await engine.checkout()
        if engine.features.deferred_begin:  # BEGIN goes out with the first statement
            pending = engine.driver.begin_sql(self._isolation or engine.isolation, self._readonly)
            self._conn = conn = self._factory(engine, raw, pending)
        else:
            await engine.begin(raw, self._isolation, self._readonly)  # gives the connection back if it fails
            self._conn = conn = self._factory(engine, raw)
        if self._pipeline and engine.features.pipelining:
            conn._pipeline = AsyncPipeline(conn)
        self._token = engine.scope.enter(conn)
        if observed:
            engine.transaction_begun()
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
        if conn._copying is not None:
            await shield(conn._settle())
        if conn._streams:
            await shield(conn._close_streams())
        pipeline = conn._pipeline
        committed = False
        if pipeline is not None:
            if exc_type is None and pipeline.queue:
                try:  # the rest of the block, and its COMMIT, in one round trip
                    await pipeline.flush(end="COMMIT")
                    committed = True
                except BaseException as flush_error:
                    exc_type, error = type(flush_error), flush_error
                    await self._end(raw, exc_type, error)
                    raise
            pipeline.discard()
        begun = conn._pending is None and not committed
        await self._end(raw, exc_type, error, begun=begun)

    async def _end(
        self,
        raw: Any,
        exc_type: type[BaseException] | None,
        error: BaseException | None,
        *,
        begun: bool = True,
    ) -> None:
        engine = self._engine
        conn = self._conn
        conn._raw = None
        conn._last = None
        reset = (self._isolation is not None or self._readonly) and not engine.features.deferred_begin
        try:
            if not begun:  # no statement ran, or the pipelined COMMIT did: there is no transaction to end
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
