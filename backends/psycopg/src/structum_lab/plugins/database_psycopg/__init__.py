"""psycopg 3 backend for Structum Database: ``PostgresDatabase`` and ``AsyncPostgresDatabase``.

Both are also importable from ``structum_lab.plugins.database``. The names resolve on
first use, so that importing the package (as the registry does to reach ``_plugin``)
does not import psycopg.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
