"""psycopg 3 backend for Structum Database: ``PostgresDatabase`` and ``AsyncPostgresDatabase``.

Both are also importable from ``structum_lab.plugins.database``. The names resolve on
first use, so that importing the package (as the registry does to reach ``_plugin``)
does not import psycopg.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from structum_lab.plugins.database.kit import lazy_exports

if TYPE_CHECKING:
    from ._database import PostgresConnection, PostgresDatabase, PostgresResult
    from ._database_async import AsyncPostgresConnection, AsyncPostgresDatabase, AsyncPostgresResult

__all__ = [
    "AsyncPostgresConnection",
    "AsyncPostgresDatabase",
    "AsyncPostgresResult",
    "PostgresConnection",
    "PostgresDatabase",
    "PostgresResult",
]

_WHERE = {name: "._database_async" if name.startswith("Async") else "._database" for name in __all__}

__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
