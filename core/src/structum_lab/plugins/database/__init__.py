"""Structum Database: pooled connections, transactions and health checks over
pluggable backends (SQLAlchemy, psycopg 3), configured with Dynaconf.

The backend classes (``SQLAlchemyDatabase``, ``PostgresDatabase`` and their async
twins) live in separate distributions and are re-exported here lazily: importing
this package imports no backend, and naming a class whose backend is not installed
raises :class:`BackendNotInstalledError` with the ``pip install`` line.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._config.connect import connect, connect_async, from_config, from_config_async
from ._config.instances import get_async_database, get_database, registered_databases, remove_database, set_database
from ._config.known import KNOWN_BACKENDS
from ._config.manager import get_plugin_manager
from ._config.registry import BackendInfo, available_backends
from ._contract.errors import (
    BackendConflictError,
    BackendLoadError,
    BackendNotFoundError,
    BackendNotInstalledError,
    ConfigurationError,
    ConnectionFailedError,
    ConnectionLostError,
    DatabaseError,
    DataError,
    DeadlockError,
    IntegrityError,
    MultipleResultsFound,
    NoResultFound,
    NotSupportedError,
    OperationalError,
    ParameterError,
    PoolTimeoutError,
    ProgrammingError,
    QueryError,
    SerializationError,
    StatementTimeoutError,
    TransactionError,
    TransientError,
)
from ._contract.features import Features
from ._contract.health import HealthCheckResult, HealthStatus
from ._contract.hookspecs import hookimpl
from ._contract.notifications import Notification
from ._contract.options import COMMON_OPTIONS, Option, ReplicaOptions
from ._contract.protocols import (
    AsyncConnection,
    AsyncDatabaseInterface,
    AsyncResult,
    AsyncScalarResult,
    Connection,
    DatabaseInterface,
    IsolationLevel,
    MemberInfo,
    Params,
    PoolInfo,
    Result,
    ScalarResult,
    SupportsAsyncCopy,
    SupportsAsyncSessions,
    SupportsCopy,
    SupportsSessions,
)
from ._contract.rows import Row
from ._contract.url import DatabaseURL
from ._engine.replicas import ReplicatedDatabase
from ._engine.replicas_async import AsyncReplicatedDatabase
from ._engine.retry import retry_on_conflict, run_transaction, run_transaction_async

if TYPE_CHECKING:
    from structum_lab.plugins.database_psycopg import AsyncPostgresDatabase, PostgresDatabase
    from structum_lab.plugins.database_sqlalchemy import AsyncSQLAlchemyDatabase, SQLAlchemyDatabase

__version__ = "0.1.0"

__all__ = [
    "COMMON_OPTIONS",
    "AsyncConnection",
    "AsyncDatabaseInterface",
    "AsyncPostgresDatabase",
    "AsyncReplicatedDatabase",
    "AsyncResult",
    "AsyncScalarResult",
    "AsyncSQLAlchemyDatabase",
    "BackendConflictError",
    "BackendInfo",
    "BackendLoadError",
    "BackendNotFoundError",
    "BackendNotInstalledError",
    "ConfigurationError",
    "Connection",
    "ConnectionFailedError",
    "ConnectionLostError",
    "DataError",
    "DatabaseError",
    "DatabaseInterface",
    "DatabaseURL",
    "DeadlockError",
    "Features",
    "HealthCheckResult",
    "HealthStatus",
    "IntegrityError",
    "IsolationLevel",
    "MemberInfo",
    "MultipleResultsFound",
    "NoResultFound",
    "Notification",
    "NotSupportedError",
    "OperationalError",
    "Option",
    "ParameterError",
    "Params",
    "PoolInfo",
    "PoolTimeoutError",
    "PostgresDatabase",
    "ProgrammingError",
    "QueryError",
    "ReplicaOptions",
    "ReplicatedDatabase",
    "Result",
    "Row",
    "ScalarResult",
    "SQLAlchemyDatabase",
    "SerializationError",
    "StatementTimeoutError",
    "SupportsAsyncCopy",
    "SupportsAsyncSessions",
    "SupportsCopy",
    "SupportsSessions",
    "TransactionError",
    "TransientError",
    "__version__",
    "available_backends",
    "connect",
    "connect_async",
    "from_config",
    "from_config_async",
    "get_async_database",
    "get_database",
    "get_plugin_manager",
    "hookimpl",
    "registered_databases",
    "remove_database",
    "retry_on_conflict",
    "run_transaction",
    "run_transaction_async",
    "set_database",
]

_LAZY = {name: (known, target) for known in KNOWN_BACKENDS for name, target in known.exports}


def __getattr__(name: str) -> Any:
    # Backend classes resolve on first use so that importing core stays cheap and
    # works with any subset of backends installed.
    entry = _LAZY.get(name)
    if entry is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    known, target = entry
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise BackendNotInstalledError(
                f"{name} needs the {known.name} backend, which is not installed; install it with: {known.install}",
                install=known.install,
            ) from None
        raise
    value = getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
