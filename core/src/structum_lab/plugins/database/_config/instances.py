"""Named database instances shared across an application (``set_database``/``get_database``).

FastAPI dependencies, CLI commands and tests look databases up here by name, so an
application opens each database once at startup and everything else borrows it.
"""

from __future__ import annotations

import threading

from .._contract.errors import ConfigurationError
from .._contract.protocols import AsyncDatabaseInterface, DatabaseInterface

__all__ = ["get_async_database", "get_database", "registered_databases", "remove_database", "set_database"]

DEFAULT_NAME = "default"

_databases: dict[str, DatabaseInterface | AsyncDatabaseInterface] = {}
_lock = threading.Lock()


def set_database(db: DatabaseInterface | AsyncDatabaseInterface, name: str = DEFAULT_NAME) -> None:
    """Register ``db`` under ``name`` (replacing any previous one; it is not shut down)."""
    with _lock:
        _databases[name] = db


def _lookup(name: str) -> DatabaseInterface | AsyncDatabaseInterface:
    try:
        return _databases[name]
    except KeyError:
        known = ", ".join(sorted(_databases)) or "none"
        raise ConfigurationError(
            f"no database registered under {name!r} (registered: {known}); "
            f"call set_database(db{'' if name == DEFAULT_NAME else f', {name!r}'}) at startup"
        ) from None


def get_database(name: str = DEFAULT_NAME) -> DatabaseInterface:
    """The synchronous database registered under ``name``."""
    return _lookup(name)  # type: ignore[return-value]


def get_async_database(name: str = DEFAULT_NAME) -> AsyncDatabaseInterface:
    """The asyncio database registered under ``name`` (typed for ``await``)."""
    return _lookup(name)  # type: ignore[return-value]


def remove_database(name: str = DEFAULT_NAME) -> DatabaseInterface | AsyncDatabaseInterface | None:
    """Unregister and return the database under ``name`` (not shut down)."""
    with _lock:
        return _databases.pop(name, None)


def registered_databases() -> dict[str, DatabaseInterface | AsyncDatabaseInterface]:
    """A snapshot of every registered database by name."""
    with _lock:
        return dict(_databases)
