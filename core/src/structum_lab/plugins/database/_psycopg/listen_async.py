"""LISTEN on a psycopg connection of its own (for ``db.listen()``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection, sql

from .._contract.notifications import Notification

__all__ = ["AsyncPsycopgNotifier"]


class AsyncPsycopgNotifier:
    """An autocommit psycopg connection that listens; what a driver's ``notifier()`` returns."""

    __slots__ = ("_conn",)

    def __init__(self, conn: AsyncConnection[Any]) -> None:
        self._conn = conn

    async def listen(self, channels: Sequence[str]) -> None:
        for channel in channels:
            await self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

    async def wait(self, seconds: float | None) -> list[Notification]:
        return [
            Notification(n.channel, n.payload, n.pid) async for n in self._conn.notifies(timeout=seconds, stop_after=1)
        ]

    async def close(self) -> None:
        await self._conn.close()
