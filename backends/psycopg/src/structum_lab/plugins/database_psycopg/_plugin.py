"""The pluggy plugin registered under ``structum_database.backends`` as ``psycopg`` (alias ``postgres``).

Importing this module is cheap (no psycopg import): the registry imports it to read
the options, and the driver code loads only when a database is created.
"""

from __future__ import annotations

from collections.abc import Mapping

from structum_lab.plugins.database import Option
from structum_lab.plugins.database.kit import PRE_PING_WINDOW, backend_hooks

#: The backend contract this backend was written for (core refuses another major version).
STRUCTUM_DATABASE_CONTRACT = "1.0"

#: Options beyond core's COMMON_OPTIONS. The pool's own names (psycopg_pool's) win over
#: the common ones when both are given: ``min_size`` over ``pool_size``, ``max_size``
#: over ``pool_size + max_overflow``, ``timeout`` over ``pool_timeout``,
#: ``max_lifetime`` over ``pool_recycle``.
OPTIONS: Mapping[str, Option] = {
    "min_size": Option("min_size", "int", None, "Connections kept open (default: pool_size)", minimum=0),
    "max_size": Option(
        "max_size", "int", None, "Hard cap on open connections (default: pool_size + max_overflow)", minimum=1
    ),
    "timeout": Option("timeout", "float", None, "Seconds to wait for a connection (default: pool_timeout)", minimum=0),
    "max_lifetime": Option(
        "max_lifetime",
        "float",
        None,
        "Replace connections older than this (default: pool_recycle, else 3600)",
        minimum=0.001,
    ),
    "max_idle": Option("max_idle", "float", 600.0, "Close connections above min_size idle this long", minimum=0),
    "reconnect_timeout": Option(
        "reconnect_timeout",
        "float",
        300.0,
        "Seconds the pool retries in the background to reopen connections",
        minimum=0,
    ),
    "pre_ping_window": Option(
        "pre_ping_window",
        "float",
        PRE_PING_WINDOW,
        "With pool_pre_ping, connections used within this many seconds skip the ping round trip",
        minimum=0,
    ),
    "prepare_threshold": Option(
        "prepare_threshold",
        "any",
        5,
        "Executions before psycopg prepares a statement; none/false disables (PgBouncer transaction mode)",
    ),
    "application_name": Option("application_name", "str", None, "application_name reported to the server"),
    "isolation_level": Option(
        "isolation_level", "str", None, "Default isolation level (read_committed, repeatable_read, serializable)"
    ),
    "pool_use_lifo": Option(
        "pool_use_lifo",
        "bool",
        False,
        "Accepted for configs shared with the SQLAlchemy backend; psycopg_pool always reuses connections in FIFO order",
    ),
}


structum_database_options, structum_database_connect = backend_hooks(__package__ or "", "PostgresDatabase", OPTIONS)
