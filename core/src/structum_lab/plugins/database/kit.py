"""Building blocks for backend authors (first-party and third-party).

A backend is a driver (:class:`AsyncDriverBase` / :class:`DriverBase`, the verbs of
:class:`AsyncDriver`) plus a database class on the engine (:class:`AsyncEngineDatabase` /
:class:`EngineDatabase`). Transactions, savepoints, checkout accounting, health, leaks,
fork safety, error mapping and secret masking are the engine's, so every backend
behaves the same; parameter translation, row shape, option validation and deadlines
are helpers here. :data:`CONTRACT_VERSION` is the version of that contract this core
implements; a backend declares the one it was built for, as a literal, in its plugin
module (``STRUCTUM_DATABASE_CONTRACT = "1.0"``). See docs/backends/authoring.md.
"""

from __future__ import annotations

from ._config.exports import backend_hooks, lazy_exports, open_database
from ._contract.driver import Driver, DriverBase, Notifier, Rows
from ._contract.driver_async import AsyncDriver, AsyncDriverBase, AsyncNotifier, AsyncRows
from ._contract.features import ALL_ISOLATION_LEVELS, BatchFailed, Features, NoRows, PoolExhausted, PoolLimits
from ._contract.health import OK_MESSAGE
from ._contract.options import COMMON_OPTIONS, Option, validate_options
from ._contract.rows import GC_PAUSE_ROWS, Row, duplicate_columns, paused_gc
from ._contract.url import DatabaseURL, mask_url
from ._contract.version import CONTRACT_ATTRIBUTE, CONTRACT_VERSION
from ._engine import leaks
from ._engine.background import AsyncBackground, Background
from ._engine.connection import EngineConnection
from ._engine.connection_async import AsyncEngineConnection
from ._engine.cursor_rows import CursorRows
from ._engine.cursor_rows_async import AsyncCursorRows
from ._engine.database import EngineDatabase
from ._engine.database_async import AsyncEngineDatabase
from ._engine.deadline import (
    DEADLINE_GRACE,
    DEFAULT_STATEMENT_DEADLINE,
    EXECUTEMANY_BATCH,
    WATCHDOG,
    deadline_message,
    executemany_batches,
    ping_budget,
    resolve_statement_deadline,
    round_trip_budget,
    round_trip_cap,
)
from ._engine.dialects import (
    ASYNC_DRIVERS,
    deadline_connect_args,
    default_driver,
    describe_driver_connection,
    dialect_features,
    driver_connect_args,
    driver_install_hint,
    is_memory_sqlite,
    isolation_name,
    lexer_for,
    merge_connect_args,
    mysql_statement_timeout_sql,
    resolve_driver,
    server_settings_from_options,
    set_mysql_statement_timeout,
    target_for,
    timeout_connect_args,
)
from ._engine.errors import REPLACEABLE_ERRORS, driver_error_code, error_classes, translate_error
from ._engine.flavour import ASYNC
from ._engine.fork import FORK, adopt
from ._engine.health import run_health_check, run_health_check_async
from ._engine.isolation import ISOLATION_SQL, normalize_isolation
from ._engine.liveness import (
    PRE_PING_WINDOW,
    SOCKET_DRIVERS,
    ConnectMonitor,
    ListenerOf,
    OpenConnections,
    driver_socket,
    forced_ping,
    needs_ping,
    ping_forced,
    readable_probe,
)
from ._engine.logs import SQL_LOG, log
from ._engine.messages import ABORTED_TRANSACTION, CONNECTION_ENDED, NESTED_OPTIONS, NO_ROWS, NOTHING_EXECUTED
from ._engine.params import (
    ASYNCPG,
    GENERIC,
    MYSQL,
    POSTGRESQL,
    PSYCOPG,
    PSYCOPG_POSITIONAL,
    PYMYSQL,
    SQLITE,
    SQLITE3,
    Bound,
    ParamTarget,
    SQLDialect,
    Statement,
    Translator,
)
from ._engine.pool_stats import PoolStats, pool_exhausted_message, pool_figures
from ._engine.prepare import (
    PSYCOPG_PREPARE_THRESHOLD,
    normalize_prepare_threshold,
    prepare_threshold_args,
    prepare_threshold_for,
)
from ._engine.result import BufferedResult, EngineResult, ListRows, ScalarResult
from ._engine.result_async import AsyncBufferedResult, AsyncEngineResult, AsyncListRows, AsyncScalarResult
from ._engine.results import AwaitableResult
from ._engine.scope import TransactionScope, current_task_id
from ._engine.secrets import DRIVER_LOGGERS, ScrubbingFilter, Secrets, collect_secrets, protect_logs

#: The base class of a backend's database before the engine (kept for old imports).
DatabaseBase = EngineDatabase

__all__ = [
    "ABORTED_TRANSACTION",
    "ALL_ISOLATION_LEVELS",
    "ASYNC",
    "ASYNCPG",
    "ASYNC_DRIVERS",
    "COMMON_OPTIONS",
    "CONNECTION_ENDED",
    "CONTRACT_ATTRIBUTE",
    "CONTRACT_VERSION",
    "DEADLINE_GRACE",
    "DEFAULT_STATEMENT_DEADLINE",
    "DRIVER_LOGGERS",
    "EXECUTEMANY_BATCH",
    "FORK",
    "GC_PAUSE_ROWS",
    "GENERIC",
    "ISOLATION_SQL",
    "MYSQL",
    "NESTED_OPTIONS",
    "NOTHING_EXECUTED",
    "NO_ROWS",
    "OK_MESSAGE",
    "POSTGRESQL",
    "PRE_PING_WINDOW",
    "PSYCOPG",
    "PSYCOPG_POSITIONAL",
    "PSYCOPG_PREPARE_THRESHOLD",
    "PYMYSQL",
    "REPLACEABLE_ERRORS",
    "SOCKET_DRIVERS",
    "SQLITE",
    "SQLITE3",
    "SQL_LOG",
    "WATCHDOG",
    "AsyncBackground",
    "AsyncBufferedResult",
    "AsyncCursorRows",
    "AsyncDriver",
    "AsyncDriverBase",
    "AsyncEngineConnection",
    "AsyncEngineDatabase",
    "AsyncEngineResult",
    "AsyncListRows",
    "AsyncNotifier",
    "AsyncRows",
    "AsyncScalarResult",
    "AwaitableResult",
    "Background",
    "BatchFailed",
    "Bound",
    "BufferedResult",
    "ConnectMonitor",
    "CursorRows",
    "DatabaseBase",
    "DatabaseURL",
    "Driver",
    "DriverBase",
    "EngineConnection",
    "EngineDatabase",
    "EngineResult",
    "Features",
    "ListRows",
    "ListenerOf",
    "NoRows",
    "Notifier",
    "OpenConnections",
    "Option",
    "ParamTarget",
    "PoolExhausted",
    "PoolLimits",
    "PoolStats",
    "Row",
    "Rows",
    "SQLDialect",
    "ScalarResult",
    "ScrubbingFilter",
    "Secrets",
    "Statement",
    "TransactionScope",
    "Translator",
    "adopt",
    "backend_hooks",
    "collect_secrets",
    "current_task_id",
    "deadline_connect_args",
    "deadline_message",
    "default_driver",
    "describe_driver_connection",
    "dialect_features",
    "driver_connect_args",
    "driver_error_code",
    "driver_install_hint",
    "driver_socket",
    "duplicate_columns",
    "error_classes",
    "executemany_batches",
    "forced_ping",
    "is_memory_sqlite",
    "isolation_name",
    "lazy_exports",
    "leaks",
    "lexer_for",
    "log",
    "mask_url",
    "merge_connect_args",
    "mysql_statement_timeout_sql",
    "needs_ping",
    "normalize_isolation",
    "normalize_prepare_threshold",
    "open_database",
    "paused_gc",
    "ping_budget",
    "ping_forced",
    "pool_exhausted_message",
    "pool_figures",
    "prepare_threshold_args",
    "prepare_threshold_for",
    "protect_logs",
    "readable_probe",
    "resolve_driver",
    "resolve_statement_deadline",
    "round_trip_budget",
    "round_trip_cap",
    "run_health_check",
    "run_health_check_async",
    "server_settings_from_options",
    "set_mysql_statement_timeout",
    "target_for",
    "timeout_connect_args",
    "translate_error",
    "validate_options",
]
