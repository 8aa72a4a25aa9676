"""The plugin contract: pluggy hook specifications for Structum Database.

Two kinds of hooks live here.

*Backend hooks* are implemented by a backend distribution (registered under the
``structum_database.backends`` entry point group). The registry chooses one backend
from its own table (explicit ``backend`` key, else URL scheme) and calls these hooks
on that plugin alone, so the winner never depends on registration order.

*Event hooks* are broadcast to every registered plugin (observability, metrics,
audit). A failing observer is logged and never breaks the database call.

A backend module looks like::

    from structum_lab.plugins.database import hookimpl, Option

    @hookimpl
    def structum_database_options(is_async):
        return {"my_flag": Option("my_flag", "bool", False, "What it does")}

    @hookimpl
    def structum_database_connect(url, options, is_async):
        return (MyAsyncDatabase if is_async else MyDatabase)(url.render(hide_password=False), **options)

and is declared in its ``pyproject.toml``::

    [project.entry-points."structum_database.backends"]
    mydb = "my_package._plugin"

    [project.entry-points."structum_database.schemes"]
    mydb = "my_package._plugin"          # URL scheme mydb://
    "mydb+*" = "my_package._plugin"      # any mydb+driver:// scheme
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import pluggy

if TYPE_CHECKING:
    from .events import ConnectionEvent, StatementEvent, TransactionEvent
    from .health import HealthCheckResult
    from .options import Option
    from .protocols import AsyncDatabaseInterface, DatabaseInterface, PoolInfo
    from .url import DatabaseURL

__all__ = ["PROJECT_NAME", "DatabaseBackendSpec", "DatabaseEventSpec", "hookimpl", "hookspec"]

#: The pluggy project name; hook names start with ``structum_database_``.
PROJECT_NAME = "structum_database"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class DatabaseBackendSpec:
    """Hooks a backend implements. Called on the selected backend only."""

    @hookspec
    def structum_database_options(self, is_async: bool) -> Mapping[str, Option]:
        """Options this backend accepts beyond :data:`COMMON_OPTIONS`.

        Core validates user options against the union before
        :meth:`structum_database_connect` runs, so a typo fails with a suggestion
        and values arrive already cast to their declared kind.
        """
        raise NotImplementedError

    @hookspec
    def structum_database_connect(
        self, url: DatabaseURL, options: Mapping[str, Any], is_async: bool
    ) -> DatabaseInterface | AsyncDatabaseInterface:
        """Create a ready database (pool configured) for ``url``.

        ``options`` are validated and cast; keys left at their default are absent.
        ``is_async`` asks for the asyncio flavour. Raise
        :class:`~structum_lab.plugins.database.ConfigurationError` for a URL this
        backend cannot serve (e.g. no async driver installed), with the fix.
        """
        raise NotImplementedError


class DatabaseEventSpec:
    """Hooks any plugin may implement to observe databases.

    A plugin registered with ``get_plugin_manager().register(obj)`` observes every
    database; one named in a database's ``observers`` option (an entry point of the
    ``structum_database.plugins`` group) observes that database. The engine emits each
    event once, for every backend; an observer that raises is logged once and disabled,
    and the database call goes on. Keep them fast: they run on the caller's thread.
    """

    @hookspec
    def structum_database_statement_executed(
        self, database: DatabaseInterface | AsyncDatabaseInterface, event: StatementEvent
    ) -> None:
        """A statement ran or failed (transaction control statements included)."""

    @hookspec
    def structum_database_transaction_event(
        self, database: DatabaseInterface | AsyncDatabaseInterface, event: TransactionEvent
    ) -> None:
        """A transaction or savepoint began, committed or rolled back."""

    @hookspec
    def structum_database_connection_checked_out(
        self, database: DatabaseInterface | AsyncDatabaseInterface, wait_s: float
    ) -> None:
        """A caller got a connection from the pool after waiting ``wait_s`` seconds."""

    @hookspec
    def structum_database_connection_returned(
        self, database: DatabaseInterface | AsyncDatabaseInterface, use_s: float
    ) -> None:
        """A connection went back to the pool after ``use_s`` seconds in use."""

    @hookspec
    def structum_database_connection_event(
        self, database: DatabaseInterface | AsyncDatabaseInterface, event: ConnectionEvent
    ) -> None:
        """The pool opened or closed a connection, or one was found dead."""

    @hookspec
    def structum_database_transaction_finished(
        self,
        database: DatabaseInterface | AsyncDatabaseInterface,
        outcome: Literal["commit", "rollback"],
        duration_s: float,
        error: BaseException | None,
    ) -> None:
        """A top-level transaction ended; ``error`` is the exception that rolled it back."""

    @hookspec
    def structum_database_health_checked(
        self, database: DatabaseInterface | AsyncDatabaseInterface, result: HealthCheckResult
    ) -> None:
        """``health_check()`` produced ``result`` (also called for UNHEALTHY results)."""

    @hookspec
    def structum_database_pool_exhausted(
        self, database: DatabaseInterface | AsyncDatabaseInterface, pool_info: PoolInfo, waited_s: float
    ) -> None:
        """A caller waited ``waited_s`` for a connection and got ``PoolTimeoutError``.

        ``pool_info`` holds the pool statistics at that moment.
        """
