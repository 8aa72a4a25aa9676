"""structum-database-sqlite3: a Structum Database backend on the standard library's ``sqlite3``.

Sync only (``sqlite3`` blocks; see the README). Open it through core: ``connect("sqlite3:///app.db")``,
or ``backend = "sqlite3"`` in the configuration.
"""

from __future__ import annotations

from ._database import Sqlite3Connection, Sqlite3Database
from ._driver import Sqlite3Driver, Sqlite3Rows

__all__ = ["Sqlite3Connection", "Sqlite3Database", "Sqlite3Driver", "Sqlite3Rows"]
