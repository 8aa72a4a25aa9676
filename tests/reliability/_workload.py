"""Helpers of the load, leak, rotation and input scenarios (test_load_*.py, test_rotation_*.py,
test_input_*.py): each backend opened the same way on PostgreSQL with a unique
``application_name``, the server's own view of its connections, and latency figures."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from structum_lab.plugins.database import (
    AsyncPostgresDatabase,
    AsyncSQLAlchemyDatabase,
    PostgresDatabase,
    SQLAlchemyDatabase,
)

SYNC_KINDS = ("psycopg", "sqlalchemy")
ASYNC_KINDS = ("psycopg-async", "sqlalchemy-async")
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def app_name(prefix: str = "sdb") -> str:
    """A unique application_name, so pg_stat_activity tells this test's connections apart."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def open_db(kind: str, url: str, app: str, **options: Any) -> Any:
    """A database of ``kind`` on the plain ``postgresql://`` URL, its connections tagged ``app``."""
    if kind == "psycopg":
        return PostgresDatabase(url, application_name=app, **options)
    if kind == "psycopg-async":
        return AsyncPostgresDatabase(url, application_name=app, **options)
    sa_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    connect_args = {"application_name": app, **options.pop("connect_args", {})}
    if kind == "sqlalchemy":
        return SQLAlchemyDatabase(sa_url, connect_args=connect_args, **options)
    if kind == "sqlalchemy-async":
        return AsyncSQLAlchemyDatabase(sa_url, connect_args=connect_args, **options)
    raise ValueError(kind)


def server_connections(app: str, url: str = PG_URL) -> list[int]:
    """Backend pids the server has for ``app`` (read outside every pool)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app,)).fetchall()
    return sorted(int(row[0]) for row in rows)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> float:
    """Poll ``condition`` until true; returns the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} not met within {timeout:g} s")
        time.sleep(0.02)
    return time.monotonic() - started


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]
