"""Building blocks for backend authors (first-party and third-party).

A backend holds only what is specific to its driver; parameter translation, row
shape, error mapping, secret masking, option validation and health timing come
from here, so every backend behaves the same.
"""

from __future__ import annotations

from . import _leaks as leaks
from ._base import DatabaseBase
from ._deadline import (
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
from ._driver_errors import driver_error_code, translate_error
from ._fork import FORK, adopt
from ._health import OK_MESSAGE, run_health_check, run_health_check_async
from ._messages import ABORTED_TRANSACTION, CONNECTION_ENDED, NESTED_OPTIONS, NO_ROWS, NOTHING_EXECUTED
from ._options import COMMON_OPTIONS, Option, validate_options
from ._params import (
    ASYNCPG,
    GENERIC,
    MYSQL,
    POSTGRESQL,
    PSYCOPG,
    PSYCOPG_POSITIONAL,
    PYMYSQL,
    SQLITE,
    SQLITE3,
    ParamTarget,
    SQLDialect,
    Statement,
    Translator,
)
from ._pool_stats import PoolStats, pool_exhausted_message
from ._prepare import PSYCOPG_PREPARE_THRESHOLD, normalize_prepare_threshold
from ._results import AsyncBufferedResult, AwaitableResult, BufferedResult
from ._rows import GC_PAUSE_ROWS, Row, paused_gc
from ._scope import TransactionScope, current_task_id
from ._secrets import DRIVER_LOGGERS, ScrubbingFilter, Secrets, collect_secrets, protect_logs
from ._transactions import ISOLATION_SQL, normalize_isolation
from ._url import DatabaseURL, mask_url

__all__ = [
    "ABORTED_TRANSACTION",
    "CONNECTION_ENDED",
    "NESTED_OPTIONS",
    "NOTHING_EXECUTED",
    "NO_ROWS",
    "ASYNCPG",
    "COMMON_OPTIONS",
    "DRIVER_LOGGERS",
    "AsyncBufferedResult",
    "AwaitableResult",
    "BufferedResult",
    "GC_PAUSE_ROWS",
    "GENERIC",
    "ISOLATION_SQL",
    "MYSQL",
    "OK_MESSAGE",
    "POSTGRESQL",
    "PSYCOPG_PREPARE_THRESHOLD",
    "PSYCOPG",
    "PSYCOPG_POSITIONAL",
    "PYMYSQL",
    "SQLITE",
    "SQLITE3",
    "FORK",
    "DEADLINE_GRACE",
    "DEFAULT_STATEMENT_DEADLINE",
    "EXECUTEMANY_BATCH",
    "DatabaseBase",
    "WATCHDOG",
    "DatabaseURL",
    "Option",
    "ParamTarget",
    "PoolStats",
    "Row",
    "SQLDialect",
    "ScrubbingFilter",
    "Secrets",
    "Statement",
    "TransactionScope",
    "Translator",
    "adopt",
    "collect_secrets",
    "current_task_id",
    "deadline_message",
    "executemany_batches",
    "driver_error_code",
    "mask_url",
    "normalize_isolation",
    "leaks",
    "normalize_prepare_threshold",
    "paused_gc",
    "protect_logs",
    "ping_budget",
    "pool_exhausted_message",
    "resolve_statement_deadline",
    "round_trip_budget",
    "round_trip_cap",
    "run_health_check",
    "run_health_check_async",
    "translate_error",
    "validate_options",
]
