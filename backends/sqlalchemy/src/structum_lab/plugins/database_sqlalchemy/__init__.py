"""SQLAlchemy backend for Structum Database (also importable from ``structum_lab.plugins.database``).

The classes load on first use: importing this package, as the registry does, imports no SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from structum_lab.plugins.database.kit import lazy_exports

if TYPE_CHECKING:
    from ._database import SQLAlchemyConnection, SQLAlchemyDatabase
    from ._database_async import AsyncSQLAlchemyConnection, AsyncSQLAlchemyDatabase
    from ._engine import SQLAlchemyMultipleResultsFound, SQLAlchemyNoResultFound, SQLAlchemyPoolTimeoutError

__all__ = [
    "AsyncSQLAlchemyConnection",
    "AsyncSQLAlchemyDatabase",
    "SQLAlchemyConnection",
    "SQLAlchemyDatabase",
    "SQLAlchemyMultipleResultsFound",
    "SQLAlchemyNoResultFound",
    "SQLAlchemyPoolTimeoutError",
]

_WHERE = {name: "._database_async" if name.startswith("Async") else "._database" for name in __all__}
_WHERE.update(dict.fromkeys(__all__[-3:], "._engine"))

__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
