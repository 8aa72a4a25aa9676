"""The pluggy plugin, registered under ``structum_database.backends`` (and ``.schemes``) as ``sqlite3``.

The registry imports this module to read the options; the database class is imported when a
database is created.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from structum_lab.plugins.database import ConfigurationError, DatabaseInterface, DatabaseURL, Option, hookimpl

#: The backend contract this backend was written for (core refuses another major version).
STRUCTUM_DATABASE_CONTRACT = "1.0"

#: Options beyond core's COMMON_OPTIONS.
OPTIONS: Mapping[str, Option] = {
    "busy_timeout": Option(
        "busy_timeout", "float", 5.0, "Seconds a statement waits for another connection's lock", minimum=0
    ),
}


@hookimpl
def structum_database_options(is_async: bool) -> Mapping[str, Option]:
    return OPTIONS


@hookimpl
def structum_database_connect(url: DatabaseURL, options: Mapping[str, Any], is_async: bool) -> DatabaseInterface:
    if is_async:
        raise ConfigurationError(
            "the sqlite3 backend is sync only: the standard library's sqlite3 blocks, so an asyncio version would "
            "need a thread pool; use connect(), or the sqlalchemy backend's sqlite+aiosqlite:// URLs with asyncio",
            backend="sqlite3",
        )
    from ._database import Sqlite3Database

    return Sqlite3Database(url, **options)
