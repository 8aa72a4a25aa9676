"""The sqlite3 backend's database and connection classes: core's engine on :class:`Sqlite3Driver`."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from structum_lab.plugins.database import DatabaseURL
from structum_lab.plugins.database.kit import EngineConnection, EngineDatabase

from ._driver import Sqlite3Driver
from ._plugin import OPTIONS

__all__ = ["Sqlite3Connection", "Sqlite3Database"]


class Sqlite3Connection(EngineConnection[sqlite3.Connection]):
    """A pooled sqlite3 connection inside a transaction."""

    __slots__ = ()

    @property
    def sqlite3_connection(self) -> sqlite3.Connection:
        """The underlying ``sqlite3.Connection``, inside the same transaction (escape hatch)."""
        return self._live()


class Sqlite3Database(EngineDatabase[Sqlite3Connection]):
    """A SQLite database file through the standard library's ``sqlite3`` (sync only).

    ``url`` is ``sqlite3:///relative/path.db`` or ``sqlite3:////absolute/path.db``. A writer
    waits up to ``busy_timeout`` seconds for another connection's lock. ``connect_timeout``,
    ``statement_timeout``, ``statement_deadline`` and ``pool_recycle`` mean nothing for a
    local file: accepted, so one configuration serves every backend, and ignored.
    """

    backend_name = "sqlite3"
    backend_options = OPTIONS
    #: The driver the database runs on (a subclass may put in another, e.g. to test the kit).
    driver_class: ClassVar[type[Sqlite3Driver]] = Sqlite3Driver

    def __init__(
        self,
        url: str | DatabaseURL,
        *,
        pool_size: int = 5,
        max_overflow: int = 10,
        pool_timeout: float = 30.0,
        pool_recycle: float | None = None,
        pool_pre_ping: bool = True,
        busy_timeout: float = 5.0,
        connect_args: Mapping[str, Any] | None = None,
        connect_timeout: float | None = 10.0,
        statement_timeout: float | None = None,
        statement_deadline: float | None = None,
        health_check_timeout: float = 5.0,
        health_degraded_ms: float = 1000.0,
        name: str | None = None,
        strict_params: bool = False,
        echo: bool = False,
        observers: Sequence[str] | None = None,
        observer_options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        parsed, options = self._setup(url, locals())  # checked as connect() checks them
        self._attach(self.driver_class(parsed, options), Sqlite3Connection)
