"""Shared helpers of the fault scenarios (test_faults_*.py): one way to open each backend on
PostgreSQL, to find and kill its server processes, and to check afterwards from a separate
connection which transactions really committed."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from structum_lab.plugins.database import (
    AsyncPostgresDatabase,
    AsyncSQLAlchemyDatabase,
    PostgresDatabase,
    SQLAlchemyDatabase,
)

#: (name, class, URL scheme) of every sync backend on PostgreSQL.
SYNC_KINDS = ("sqlalchemy", "psycopg")
#: The async ones; "sqlalchemy-asyncpg" is SQLAlchemy on the asyncpg driver.
ASYNC_KINDS = ("sqlalchemy-async", "sqlalchemy-asyncpg", "psycopg-async")


def app_name() -> str:
    """A unique application_name, so pg_stat_activity tells this test's connections apart."""
    return f"sdb-{uuid.uuid4().hex[:10]}"


def open_db(kind: str, url: str, app: str, **options: Any) -> Any:
    """A database of ``kind`` on the PostgreSQL ``url`` (plain postgresql://), tagged ``app``."""
    if kind == "psycopg":
        return PostgresDatabase(url, application_name=app, **options)
    if kind == "psycopg-async":
        return AsyncPostgresDatabase(url, application_name=app, **options)
    if kind == "sqlalchemy":
        return SQLAlchemyDatabase(_scheme(url, "psycopg"), connect_args={"application_name": app}, **options)
    if kind == "sqlalchemy-async":
        return AsyncSQLAlchemyDatabase(_scheme(url, "psycopg"), connect_args={"application_name": app}, **options)
    if kind == "sqlalchemy-asyncpg":
        return AsyncSQLAlchemyDatabase(
            _scheme(url, "asyncpg"), connect_args={"server_settings": {"application_name": app}}, **options
        )
    raise ValueError(kind)


def _scheme(url: str, driver: str) -> str:
    return url.replace("postgresql://", f"postgresql+{driver}://", 1)


def backend_pids(admin: psycopg.Connection[Any], app: str) -> list[int]:
    rows = admin.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app,)).fetchall()
    return [int(row[0]) for row in rows]


def kill_all(admin: psycopg.Connection[Any], app: str) -> int:
    """pg_terminate_backend on every server process of ``app`` at once (one signal each, no
    waiting in between), then wait until they have all exited; returns how many were signalled."""
    found = backend_pids(admin, app)
    rows = admin.execute("SELECT p FROM unnest(%s::int[]) AS p WHERE pg_terminate_backend(p)", (found,)).fetchall()
    pids = [int(row[0]) for row in rows]
    wait_until(lambda: not set(pids) & set(backend_pids(admin, app)))
    return len(pids)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def committed_ids(url: str, table: str) -> dict[str, int]:
    """Rows per transaction id in ``table``, read from a connection outside every pool."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(f"SELECT txn, count(*) FROM {table} GROUP BY txn").fetchall()
    return {str(txn): int(count) for txn, count in rows}
