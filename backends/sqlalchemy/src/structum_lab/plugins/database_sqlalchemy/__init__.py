"""SQLAlchemy backend for Structum Database.

``SQLAlchemyDatabase`` and ``AsyncSQLAlchemyDatabase`` are also importable from
``structum_lab.plugins.database``. Both load on first use, so importing this package
(as the registry does to read the plugin) does not import SQLAlchemy, and sync users
need no greenlet.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._database import SQLAlchemyConnection, SQLAlchemyDatabase
    from ._database_async import AsyncSQLAlchemyConnection, AsyncSQLAlchemyDatabase
    from ._engine import SQLAlchemyPoolTimeoutError

__all__ = [
    "AsyncSQLAlchemyConnection",
    "AsyncSQLAlchemyDatabase",
    "SQLAlchemyConnection",
    "SQLAlchemyDatabase",
    "SQLAlchemyPoolTimeoutError",
]

_WHERE = {name: "._database_async" if name.startswith("Async") else "._database" for name in __all__}
_WHERE["SQLAlchemyPoolTimeoutError"] = "._engine"


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
