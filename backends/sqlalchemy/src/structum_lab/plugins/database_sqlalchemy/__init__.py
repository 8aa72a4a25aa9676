"""SQLAlchemy backend for Structum Database.

``SQLAlchemyDatabase`` and ``AsyncSQLAlchemyDatabase`` are also importable from
``structum_lab.plugins.database``. Both load on first use, so importing this package
(as the registry does to read the plugin) does not import SQLAlchemy, and sync users
need no greenlet.
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
