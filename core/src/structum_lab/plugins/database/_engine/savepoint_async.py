"""Savepoints: ``async with conn.transaction():`` inside a transaction, released on success,
rolled back to (alone) when its block raises. A pipelined transaction's queue goes with
the ``SAVEPOINT`` and with the ``RELEASE``, so the savepoint's errors are raised inside it.
"""

from __future__ import annotations

import time
from asyncio import shield
from typing import TYPE_CHECKING, Generic

from .._contract.driver_async import RawT
from .logs import log

if TYPE_CHECKING:
    from .connection_async import AsyncEngineConnection

__all__ = ["AsyncSavepoint"]


class AsyncSavepoint(Generic[RawT]):
    """``async with conn.transaction():`` - a SAVEPOINT released on success, rolled back to on error."""

    __slots__ = ("_began", "_conn", "_name")

    def __init__(self, conn: AsyncEngineConnection[RawT]) -> None:
        self._conn = conn
        self._name = ""
        self._began = 0.0

    async def __aenter__(self) -> AsyncEngineConnection[RawT]:
        conn = self._conn
        raw = conn._live()
        engine = conn._engine
        if conn._copying is not None:
            await conn._settle()
        conn._depth += 1
        self._name = name = f"structum_sp_{conn._depth}"
        observed = engine.observed()
        started = time.perf_counter() if observed else 0.0
        try:
            if conn._pipeline is not None:  # the queue, and BEGIN if due, go with the SAVEPOINT
                await conn._pipeline.flush(end=f"SAVEPOINT {name}")
            else:
                if conn._pending is not None:
                    await conn.start()
                await engine.driver.savepoint(raw, name)
        except BaseException as exc:
            conn._depth -= 1
            error = engine.translate(exc, raw) if isinstance(exc, engine.errors) else exc
            if observed and engine.observers.statement:
                engine.statement_done(f"SAVEPOINT {name}", started, error)
            if error is not exc:
                raise error from exc
            raise
        if observed:
            self._began = time.perf_counter()
            if engine.observers.statement:
                engine.statement_done(f"SAVEPOINT {name}", started)
            engine.transaction_begun(savepoint=True)
        return conn

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        conn = self._conn
        if conn._copying is not None and conn._raw is not None:  # a COPY left in a savepoint inside this one
            await shield(conn._settle())
        conn._depth -= 1
        raw = conn._raw
        if raw is None:  # closed inside the block: everything was rolled back
            return
        engine = conn._engine
        pipeline = conn._pipeline
        if exc_type is None:
            started = time.perf_counter() if self._began else 0.0
            try:
                if pipeline is not None and pipeline.queue:
                    # The savepoint's statements go now, so that their errors are raised inside
                    # the savepoint, with its RELEASE in the same round trip.
                    await pipeline.flush(end=f"RELEASE SAVEPOINT {self._name}")
                else:
                    await engine.driver.release_savepoint(raw, self._name)
            except BaseException as error:
                await self._rollback(raw, error)
                if isinstance(error, engine.errors):
                    raise engine.translate(error, raw) from error
                raise
            if self._began:
                if engine.observers.statement:
                    engine.statement_done(f"RELEASE SAVEPOINT {self._name}", started)
                engine.transaction_finished("commit", self._began, None, savepoint=True)
            return
        if pipeline is not None:
            pipeline.discard()  # not sent: nothing to undo on the server
        await self._rollback(raw, exc)

    async def _rollback(self, raw: RawT, cause: BaseException | None) -> None:
        conn = self._conn
        engine = conn._engine
        started = time.perf_counter() if self._began else 0.0
        failed: BaseException | None = None
        try:
            if conn._streams:
                await conn._close_streams(conn._depth + 1)  # their cursors go with the savepoint
            await engine.driver.rollback_to_savepoint(raw, self._name)
        except Exception as exc:
            # The caller's exception is the one that explains what happened.
            failed = exc
            log.debug("rollback to savepoint failed after %s", type(cause).__name__, exc_info=True)
        if self._began:
            if engine.observers.statement:
                engine.statement_done(f"ROLLBACK TO SAVEPOINT {self._name}", started, failed)
            engine.transaction_finished("rollback", self._began, cause, savepoint=True)
