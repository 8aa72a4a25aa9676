"""psycopg 3 backend for Structum Database: ``PostgresDatabase`` and ``AsyncPostgresDatabase``.

Both are also importable from ``structum_lab.plugins.database``. The names resolve on
first use, so that importing the package (as the registry does to reach ``_plugin``)
does not import psycopg.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._async import AsyncPostgresDatabase
    from ._async_connection import AsyncPostgresConnection, AsyncPostgresResult
    from ._connection import PostgresConnection, PostgresResult
    from ._database import PostgresDatabase

__all__ = [
    "AsyncPostgresConnection",
    "AsyncPostgresDatabase",
    "AsyncPostgresResult",
    "PostgresConnection",
    "PostgresDatabase",
    "PostgresResult",
]

_WHERE = {
    "AsyncPostgresConnection": "._async_connection",
    "AsyncPostgresDatabase": "._async",
    "AsyncPostgresResult": "._async_connection",
    "PostgresConnection": "._connection",
    "PostgresDatabase": "._database",
    "PostgresResult": "._connection",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
