"""The pluggy plugin registered under ``structum_database.backends`` as ``sqlalchemy``
(imported by the registry to read options: it imports no SQLAlchemy)."""

from __future__ import annotations

from collections.abc import Mapping

from structum_lab.plugins.database import Option
from structum_lab.plugins.database.kit import backend_hooks

#: The backend contract this backend was written for (core refuses another major version).
STRUCTUM_DATABASE_CONTRACT = "1.0"

OPTIONS: Mapping[str, Option] = {
    "pool_use_lifo": Option("pool_use_lifo", "bool", False, "Reuse the most recently returned connection first"),
    "isolation_level": Option(
        "isolation_level", "str", None, "Default isolation level (read_committed, repeatable_read, serializable)"
    ),
    "engine_options": Option("engine_options", "dict", None, "Extra keyword arguments for create_engine()"),
    "prepare_threshold": Option(
        "prepare_threshold",
        "any",
        5,
        "psycopg driver: executions before a statement is prepared; none/false disables (PgBouncer transaction mode)",
    ),
}


structum_database_options, structum_database_connect = backend_hooks(__package__ or "", "SQLAlchemyDatabase", OPTIONS)
