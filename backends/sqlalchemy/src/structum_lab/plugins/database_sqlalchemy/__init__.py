"""SQLAlchemy backend for Structum Database.

``SQLAlchemyDatabase`` and ``AsyncSQLAlchemyDatabase`` are also importable from
``structum_lab.plugins.database``. Both load on first use, so importing this package
(as the registry does to read the plugin) does not import SQLAlchemy, and sync users
need no greenlet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._async import AsyncSQLAlchemyDatabase
    from ._common import SQLAlchemyPoolTimeoutError
    from ._database import SQLAlchemyDatabase

__all__ = ["AsyncSQLAlchemyDatabase", "SQLAlchemyDatabase", "SQLAlchemyPoolTimeoutError"]

_LAZY = {
    "SQLAlchemyDatabase": "._database",
    "SQLAlchemyPoolTimeoutError": "._common",
    "AsyncSQLAlchemyDatabase": "._async",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
