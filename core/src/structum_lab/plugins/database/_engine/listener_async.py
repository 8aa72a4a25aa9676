"""``db.listen()``: notifications on a connection of its own, re-listening after it is lost.

The connection is outside the pool (a listener waits for as long as it likes and must
not hold a pool slot). When it is lost (server restart, ``pg_terminate_backend``) the
listener reconnects, with back-off, and LISTENs again; notifications sent while it was
down are lost, as PostgreSQL does not queue them for a listener that is gone. Each
reconnection is logged and counted in ``get_pool_info()["listener_reconnects"]``.
"""

from __future__ import annotations

from asyncio import sleep  # sync: from time import sleep
from collections.abc import Sequence
from typing import Any

from .._contract.driver_async import AsyncNotifier
from .._contract.errors import NotSupportedError, ParameterError
from .._contract.notifications import Notification
from .core_async import AsyncEngine
from .logs import log

__all__ = ["AsyncListener"]

#: Back-off between reconnection attempts, in seconds (doubling up to the last).
_RETRY_FIRST, _RETRY_MAX = 0.1, 5.0


class AsyncListener:
    """``async with db.listen("jobs") as notifications: async for note in notifications: ...``

    Iteration yields :class:`Notification` objects. With ``timeout``, iteration ends after
    that many seconds without a notification; without it, it waits for the next one.
    """

    __slots__ = ("_channels", "_closed", "_engine", "_notifier", "_timeout")

    def __init__(self, engine: AsyncEngine[Any], channels: Sequence[str], timeout: float | None) -> None:
        if not engine.features.listen_notify:
            raise NotSupportedError(
                f"the {engine.backend} backend has no LISTEN/NOTIFY on this database (db.features.listen_notify "
                "is False); PostgreSQL through psycopg has it"
            )
        if not channels or not all(isinstance(c, str) and c for c in channels):
            raise ParameterError(f"listen() needs one or more channel names, got {list(channels)!r}")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0):
            raise ParameterError(f"listen(timeout=) must be a number of seconds >= 0 or None, got {timeout!r}")
        self._engine = engine
        self._channels = tuple(channels)
        self._timeout = timeout
        self._notifier: AsyncNotifier | None = None
        self._closed = False

    async def _connect(self) -> AsyncNotifier:
        engine = self._engine
        try:
            notifier = await engine.driver.notifier()
        except engine.errors as exc:
            raise engine.translate(exc, connecting=True) from exc
        try:
            await notifier.listen(self._channels)
        except BaseException as exc:
            await notifier.close()
            if isinstance(exc, engine.errors):
                raise engine.translate(exc) from exc
            raise
        return notifier

    async def __aenter__(self) -> AsyncListener:
        self._notifier = await self._connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        notifier, self._notifier = self._notifier, None
        if notifier is not None:
            try:
                await notifier.close()
            except Exception:
                log.debug("closing the LISTEN connection failed", exc_info=True)

    def __aiter__(self) -> AsyncListener:
        return self

    async def __anext__(self) -> Notification:
        while not self._closed:
            notifier = self._notifier
            if notifier is None:
                raise ParameterError("use the listener inside its block: async with db.listen(...) as notifications")
            try:
                received = await notifier.wait(self._timeout)
            except self._engine.errors as exc:
                await self._reconnect(exc)
                continue
            if not received:
                break  # timeout seconds without a notification
            return received[0]
        raise StopAsyncIteration

    async def _reconnect(self, exc: BaseException) -> None:
        engine = self._engine
        engine.stats.listener_lost()
        log.warning(
            "database %r: the LISTEN connection was lost (%s); reconnecting - notifications sent until it is "
            "back are lost",
            engine.name,
            engine.translate(exc),
        )
        old, self._notifier = self._notifier, None
        if old is not None:
            try:
                await old.close()
            except Exception:
                log.debug("closing the lost LISTEN connection failed", exc_info=True)
        delay = _RETRY_FIRST
        while not self._closed:
            try:
                self._notifier = await self._connect()
            except Exception:
                log.debug(
                    "database %r: LISTEN reconnection failed; retrying in %g s", engine.name, delay, exc_info=True
                )
                await sleep(delay)
                delay = min(delay * 2, _RETRY_MAX)
            else:
                log.info("database %r: LISTEN connection back on %s", engine.name, ", ".join(self._channels))
                return
