"""The driver verbs that psycopg answers itself, for any driver with a psycopg connection
under its own (the psycopg backend's is one; SQLAlchemy's ``postgresql+psycopg`` holds one).

A driver mixes :class:`AsyncPsycopgVerbs` in before its base and says where the psycopg
connection is (:meth:`~AsyncPsycopgVerbs._pg`); the transaction's state, the one-round-trip
savepoint rollback, server-side cursors, COPY and pipelined batches then come from here.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from typing import Any, Final, TypeVar

from psycopg import AsyncConnection, OperationalError, pq

from .._contract.driver_async import AsyncDriverBase
from .._engine.params import Bound
from .batch_async import run_batch
from .copy_async import copy_in, copy_out
from .cursor_rows_async import AsyncPsycopgRows, open_stream

__all__ = ["AsyncPsycopgVerbs"]

RawT = TypeVar("RawT")

_IDLE: Final = pq.TransactionStatus.IDLE
_INERROR: Final = pq.TransactionStatus.INERROR


class AsyncPsycopgVerbs(AsyncDriverBase[RawT]):
    """Verbs answered by the psycopg connection under ``raw``."""

    def _pg(self, raw: RawT) -> AsyncConnection[Any] | None:
        """The psycopg connection under ``raw``, for its state; None when it is gone."""
        raise NotImplementedError

    async def _pg_io(self, raw: RawT) -> AsyncConnection[Any]:
        """The psycopg connection under ``raw``, to send something on it directly (an
        adapter that holds work back, such as a pending BEGIN, sends it first)."""
        pg = self._pg(raw)
        if pg is None:
            raise OperationalError("the connection is closed")
        return pg

    def begun(self, raw: RawT) -> bool:
        pg = self._pg(raw)
        return pg is not None and pg.pgconn.transaction_status != _IDLE

    def transaction_failed(self, raw: RawT) -> bool:
        pg = self._pg(raw)
        return pg is not None and pg.pgconn.transaction_status == _INERROR

    async def rollback_to_savepoint(self, raw: RawT, name: str) -> None:
        await self.command(raw, f"ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}")  # one round trip

    async def execute_batch(
        self, raw: RawT, begin: str | None, statements: Sequence[tuple[str, Bound]], end: str | None
    ) -> Sequence[Any]:
        return await run_batch(await self._pg_io(raw), begin, statements, end)

    async def stream(self, raw: RawT, sql: str, params: Bound, batch_size: int) -> AsyncPsycopgRows:
        return await open_stream(await self._pg_io(raw), sql, params, batch_size)

    async def copy_in(
        self,
        raw: RawT,
        table: str,
        columns: Sequence[str],
        records: Iterable[Sequence[Any]] | AsyncIterable[Sequence[Any]],
    ) -> int:
        return await copy_in(await self._pg_io(raw), table, columns, records)

    async def copy_out(self, raw: RawT, sql: str, params: Bound) -> AsyncIterator[tuple[Any, ...]]:
        async for record in copy_out(await self._pg_io(raw), sql, params):
            yield record
