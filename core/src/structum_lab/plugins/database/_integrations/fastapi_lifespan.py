"""The lifespan's bookkeeping: opening, registering and shutting down the app's databases.

Private to :mod:`structum_lab.plugins.database.fastapi`.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Any, cast

import anyio
import anyio.to_thread

from structum_lab.config import ConfigProvider

from .._config.connect import from_config, from_config_async
from .._config.instances import DEFAULT_NAME, registered_databases, remove_database, set_database
from .._contract.protocols import AsyncDatabaseInterface, DatabaseInterface
from .fastapi_health import is_async_database

__all__ = ["AppDatabases", "LifespanFactory", "as_lifespan"]

log = logging.getLogger("structum_lab.plugins.database")

AnyDatabase = DatabaseInterface | AsyncDatabaseInterface
LifespanFactory = Callable[[Any], AbstractAsyncContextManager[Any]]


def as_lifespan(lifespan: Callable[[Any], Any]) -> LifespanFactory:
    """A user's lifespan in any form FastAPI accepts, as an async context manager factory."""
    if inspect.isasyncgenfunction(lifespan):
        return asynccontextmanager(lifespan)
    if inspect.isgeneratorfunction(lifespan):
        sync_factory = contextmanager(lifespan)

        @asynccontextmanager
        async def lifted(app: Any) -> AsyncIterator[Any]:
            with sync_factory(app) as state:
                yield state

        return lifted
    return lifespan


class AppDatabases:
    """The databases one lifespan opened and the registrations it made."""

    def __init__(
        self, names: Sequence[str], default_name: str | None, *, async_: bool, provider: ConfigProvider | None
    ) -> None:
        self._names = names
        self._default = default_name
        self._async = async_
        self._provider = provider
        self._opened: list[tuple[str, AnyDatabase]] = []
        # (name, database, what was registered under the name before)
        self._registered: list[tuple[str, AnyDatabase, AnyDatabase | None]] = []

    async def _open_one(self, namespace: str) -> AnyDatabase:
        if self._async:
            # On the loop: an asyncio pool must be created where it will run.
            return from_config_async(namespace, provider=self._provider)
        opener = functools.partial(from_config, namespace, provider=self._provider)
        return await anyio.to_thread.run_sync(opener)

    def _register(self, name: str, db: AnyDatabase) -> None:
        self._registered.append((name, db, registered_databases().get(name)))
        set_database(db, name)

    async def open(self) -> None:
        for namespace in self._names:
            try:
                db = await self._open_one(namespace)
            except BaseException as exc:
                opened = [name for name, _ in self._opened]
                await self.close()
                if isinstance(exc, Exception):
                    already = f"; {', '.join(map(repr, opened))} shut down again" if opened else ""
                    exc.add_note(f"while opening database {namespace!r} at application startup{already}")
                raise
            self._opened.append((namespace, db))
            self._register(namespace, db)
            if namespace == self._default and namespace != DEFAULT_NAME:
                self._register(DEFAULT_NAME, db)
            log.debug("opened database %r at application startup: %s", namespace, db.url)

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            current = registered_databases()
            for name, db, previous in reversed(self._registered):
                if current.get(name) is db:  # leave alone what someone else registered since
                    if previous is None:
                        remove_database(name)
                        del current[name]
                    else:
                        set_database(previous, name)
                        current[name] = previous
            self._registered.clear()
            for namespace, db in reversed(self._opened):
                try:
                    if is_async_database(db):
                        await cast("AsyncDatabaseInterface", db).shutdown()
                    else:
                        await anyio.to_thread.run_sync(cast("DatabaseInterface", db).shutdown)
                except Exception:
                    log.exception("error while shutting down database %r", namespace)
            self._opened.clear()
