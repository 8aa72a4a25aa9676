"""Every backend, sync and async, on every database it serves: one fixture each.

Parameters are (backend, dialect[/driver]). A test receives a factory that opens a
database on a fresh schema/database/file, so semantics are observed with real servers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from structum_lab.plugins.database import connect, connect_async

SYNC_TARGETS = [
    ("sqlalchemy", "sqlite"),
    ("sqlalchemy", "postgresql"),
    ("sqlalchemy", "mysql"),
    ("psycopg", "postgresql"),
]
ASYNC_TARGETS = [
    ("sqlalchemy", "sqlite+aiosqlite"),
    ("sqlalchemy", "postgresql+psycopg"),
    ("sqlalchemy", "postgresql+asyncpg"),
    ("sqlalchemy", "mysql+aiomysql"),
    ("psycopg", "postgresql"),
]


def _url(request: pytest.FixtureRequest, tmp_path: Path, scheme: str) -> str:
    dialect = scheme.partition("+")[0]
    if dialect == "sqlite":
        return f"{scheme}:///{tmp_path}/semantics.db"
    if dialect == "postgresql":
        base: str = request.getfixturevalue("pg_schema_url")
        return base.replace("postgresql://", f"{scheme}://", 1)
    base = request.getfixturevalue("mysql_db_url")
    return base.replace("mysql+pymysql://", f"{scheme}://", 1)


@pytest.fixture(params=SYNC_TARGETS, ids=["-".join(t) for t in SYNC_TARGETS])
def open_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    backend, scheme = request.param
    url = _url(request, tmp_path, scheme)
    opened: list[Any] = []

    def factory(**options: Any) -> Any:
        db = connect(url, backend=backend, **options)
        opened.append(db)
        return db

    factory.dialect = scheme.partition("+")[0]  # type: ignore[attr-defined]
    yield factory
    for db in opened:
        db.shutdown()


@pytest.fixture(params=ASYNC_TARGETS, ids=["-".join(t) for t in ASYNC_TARGETS])
async def open_async_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    backend, scheme = request.param
    url = _url(request, tmp_path, scheme)
    opened: list[Any] = []

    def factory(**options: Any) -> Any:
        db = connect_async(url, backend=backend, **options)
        opened.append(db)
        return db

    factory.dialect = scheme.partition("+")[0]  # type: ignore[attr-defined]
    yield factory
    for db in opened:
        await db.shutdown()
