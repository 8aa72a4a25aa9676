"""SQLAlchemy backend for Structum Database.

``SQLAlchemyDatabase`` is also importable from ``structum_lab.plugins.database``.
The asyncio class loads on first use, so sync users need no greenlet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._database import SQLAlchemyDatabase, SQLAlchemyPoolTimeoutError

if TYPE_CHECKING:
    from ._async import AsyncSQLAlchemyDatabase

__all__ = ["AsyncSQLAlchemyDatabase", "SQLAlchemyDatabase", "SQLAlchemyPoolTimeoutError"]


def __getattr__(name: str) -> Any:
    if name == "AsyncSQLAlchemyDatabase":
        from ._async import AsyncSQLAlchemyDatabase

        return AsyncSQLAlchemyDatabase
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
